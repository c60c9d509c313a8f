"""``mistudio datasets ...`` end to end, in-process, on a temporary data folder."""

from __future__ import annotations

import json

from tests.data.data_samples import DOCS

from mistudio.cli import main


def cli(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_add_list_show_docs_tokenize_delete(data_dir, corpus_files, tiny_tokenizer_dir, capsys):
    code, out, err = cli(capsys, "datasets", "add", str(corpus_files["jsonl"]), "--name", "Docs")
    assert code == 0, err
    ds_id = out.split()[0]
    assert ds_id.startswith("ds_") and f"{len(DOCS)} documents" in out

    code, out, _ = cli(capsys, "datasets", "list", "--json")
    listed = json.loads(out)
    assert [d["id"] for d in listed] == [ds_id] and listed[0]["n_docs"] == len(DOCS)

    code, out, _ = cli(capsys, "datasets", "docs", ds_id, "--search", "capital")
    assert code == 0 and "Paris is the capital" in out and "[1]" in out
    code, out, _ = cli(capsys, "datasets", "docs", ds_id, "--where", "topic=Technology")
    assert out.count("topic=Technology") == 2

    code, out, err = cli(capsys, "datasets", "tokenize", ds_id, "--tokenizer",
                         str(tiny_tokenizer_dir), "--seq-len", "16", "--packing", "padded")
    assert code == 0, err
    tok_id = out.split(":")[0]
    assert f"{len(DOCS)} sequences x 16" in out
    code, out, _ = cli(capsys, "datasets", "tokenize", ds_id, "--tokenizer",
                       str(tiny_tokenizer_dir), "--seq-len", "16", "--packing", "padded")
    assert "already tokenized" in out

    code, out, _ = cli(capsys, "datasets", "show", ds_id)
    assert code == 0 and tok_id in out and "topic" in out and "top tokens" in out
    code, out, _ = cli(capsys, "datasets", "rename", ds_id, "New name")
    assert "New name" in out

    code, _, err = cli(capsys, "datasets", "delete", ds_id)  # stdin is not a terminal
    assert code == 2 and "--yes" in err
    code, out, _ = cli(capsys, "datasets", "delete", ds_id, "--yes")
    assert code == 0 and "deleted dataset" in out
    code, out, _ = cli(capsys, "datasets", "list")
    assert "no datasets" in out


def test_cli_errors_are_short_and_clear(data_dir, tmp_path, capsys):
    code, _, err = cli(capsys, "datasets", "add", str(tmp_path / "nope.txt"))
    assert code == 2 and "does not exist" in err
    code, _, err = cli(capsys, "datasets", "add")
    assert code == 2 and "exactly one source" in err
    bad = tmp_path / "bad.csv"
    bad.write_text("")
    code, _, err = cli(capsys, "datasets", "add", str(bad))
    assert code == 2 and "is empty" in err  # refused before any job
    code, _, err = cli(capsys, "datasets", "show", "ds_missing")
    assert code == 2 and "No dataset" in err


def test_cli_refuses_a_format_that_does_not_match_the_file(data_dir, tmp_path, capsys):
    txt = tmp_path / "story.txt"
    txt.write_text("Once upon a time, a fox.\n")
    code, _, err = cli(capsys, "--data-dir", str(data_dir), "datasets", "add", str(txt),
                       "--format", "csv")
    assert code != 0 and "plain-text file" in err and "format csv" in err
    code, out, _ = cli(capsys, "--data-dir", str(data_dir), "datasets", "list", "--json")
    assert code == 0 and json.loads(out) == []


def test_a_name_used_twice_matches_several_datasets(data_dir, corpus_files, capsys):
    ids = []
    for _ in range(2):
        code, out, err = cli(capsys, "datasets", "add", str(corpus_files["jsonl"]),
                             "--name", "austen")
        assert code == 0, err
        ids.append(out.split()[0])
    code, out, err = cli(capsys, "datasets", "show", "austen")
    assert code == 2 and "matches several datasets" in err and "No dataset" not in err
    assert all(i in err for i in ids) and "Traceback" not in err
    code, out, err = cli(capsys, "datasets", "show", ids[1])
    assert code == 0 and ids[1] in out
    code, out, err = cli(capsys, "datasets", "show", "nothing-like-it")
    assert code == 2 and "No dataset 'nothing-like-it'" in err
