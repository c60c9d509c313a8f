"""The Datasets service through the real job queue: import, tokenize, manage, recover."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest
from tests.data.data_samples import DOCS, TOPICS, wait_failed, wait_ok

from mistudio.errors import UserError


def add_ok(studio, path, **opts):
    rec, job = studio.datasets.add_local(str(path), **opts)
    wait_ok(studio, job)
    return studio.datasets.get(rec.id)


def test_import_local_registers_ready_dataset_with_stats(studio, corpus_files):
    rec, job = studio.datasets.add_local(str(corpus_files["jsonl"]), name="  My   corpus ")
    assert rec.status == "importing" and rec.name == "My corpus" and job.target == rec.id
    wait_ok(studio, job)
    ds = studio.datasets.get(rec.id)
    assert ds.status == "ready" and ds.n_docs == len(DOCS)
    assert ds.n_chars == sum(len(d) for d in DOCS)
    assert ds.size_bytes > 0 and ds.source["format"] == "jsonl"
    assert ds.source["path"] == str(corpus_files["jsonl"].resolve())
    lengths = sorted(len(d) for d in DOCS)
    assert ds.stats["char_length"]["median"] == float(np.median(lengths))
    assert ds.stats["char_length"]["min"] == lengths[0]
    assert dict(map(tuple, ds.stats["categories"]["topic"])) == {t: TOPICS.count(t)
                                                                 for t in set(TOPICS)}
    assert [d.id for d in studio.datasets.list()] == [ds.id]
    # browsing: pages and search
    page = studio.datasets.documents(ds.id, offset=2, limit=3)
    assert [r["index"] for r in page] == [2, 3, 4] and page[0]["text"] == DOCS[2]
    idx, complete = studio.datasets.search(ds.id, "capital")
    assert idx.tolist() == [i for i, d in enumerate(DOCS) if "capital" in d] and complete
    idx, _ = studio.datasets.search(ds.id, "THE", column_equals={"topic": "Geography"})
    assert idx.tolist() == [i for i, (d, t) in enumerate(zip(DOCS, TOPICS))
                            if "the" in d.lower() and t == "Geography"]
    idx, complete = studio.datasets.search(ds.id, "e", limit=2)
    assert len(idx) == 2 and not complete


def test_failed_import_leaves_nothing_and_keeps_existing(studio, corpus_files, tmp_path):
    good = add_ok(studio, corpus_files["csv"])
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\nnot json\n')
    rec, job = studio.datasets.add_local(str(bad))
    failed = wait_failed(studio, job)
    assert "line 2" in failed.error
    assert [d.id for d in studio.datasets.list()] == [good.id]
    assert not studio.datasets.folder(rec.id).exists()
    assert not any(studio.paths.tmp.iterdir())
    assert studio.datasets.documents(good.id, 0, 1)[0]["text"] == DOCS[0]
    with pytest.raises(UserError, match="does not exist"):
        studio.datasets.add_local(str(tmp_path / "missing.csv"))
    assert len(studio.datasets.list()) == 1


def test_full_disk_is_refused_before_writing(studio, corpus_files, monkeypatch):
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**9, 10**9 - 10, 10))
    rec, job = studio.datasets.add_local(str(corpus_files["parquet"]))
    failed = wait_failed(studio, job)
    assert "Not enough disk space" in failed.error
    assert studio.datasets.list() == []


def test_cancelled_import_is_removed(studio, tmp_path):
    big = tmp_path / "big.txt"
    line = "word " * 40 + "\n"
    big.write_text(line * 400_000, encoding="utf-8")  # ~80 MB, one document per line
    started = threading.Event()
    studio.add_job_listener(lambda jid, kind, p: kind == "progress" and p["done"] > 0
                            and started.set())
    rec, job = studio.datasets.add_local(str(big), txt_mode="lines")
    assert started.wait(30)
    studio.cancel_job(job.id)
    final = studio.jobs.wait(job.id, 30)
    assert final.status == "cancelled"
    assert studio.datasets.list() == []
    assert not studio.datasets.folder(rec.id).exists()
    assert not any(studio.paths.tmp.iterdir())


def test_killed_import_is_swept_at_next_start(data_dir, corpus_files):
    from mistudio.secrets_test_support import MemorySecrets
    from mistudio.studio import Studio

    s = Studio(data_dir, secrets=MemorySecrets())
    ds = add_ok(s, corpus_files["txt"])
    # What a killed process leaves: a row still "importing" whose job was running.
    s.datasets.repos.datasets.insert(id="ds_dead0001", name="half", status="importing",
                                     source_kind="local", job_id="job_dead0001")
    s.store.db["jobs"].insert({"id": "job_dead0001", "kind": "datasets.import",
                                         "status": "running", "created_at": "2024"})
    s.paths.entity_dir("datasets", "ds_dead0001").mkdir()
    s.close()
    s2 = Studio(data_dir, secrets=MemorySecrets())  # marks the job interrupted
    try:
        assert [d.id for d in s2.datasets.list()] == [ds.id]
        assert not s2.paths.entity_dir("datasets", "ds_dead0001").exists()
    finally:
        s2.close()


def test_tokenize_reuse_force_and_manage(studio, corpus_files, tiny_tokenizer_dir):
    ds = add_ok(studio, corpus_files["parquet"])
    tok, job = studio.datasets.tokenize(ds.id, str(tiny_tokenizer_dir), {"seq_len": 16})
    assert tok.status == "running"
    wait_ok(studio, job)
    tok = studio.datasets.get_tokenization(tok.id)
    assert tok.status == "ready" and tok.n_seq > 0 and tok.tokenizer_fingerprint
    meta = json.loads((studio.datasets.tokenization_folder(tok.id) / "meta.json").read_text())
    assert meta["dataset_id"] == ds.id and meta["tokenization_id"] == tok.id
    td = studio.datasets.open_tokenization(tok.id)
    assert td.n_seq == tok.n_seq and int(td.lengths.sum()) == tok.n_tokens
    # identical settings: reused; force: rebuilt under the same id; other settings: new one
    again, job2 = studio.datasets.tokenize(ds.id, str(tiny_tokenizer_dir), {"seq_len": 16})
    assert again.id == tok.id and job2 is None
    again, job3 = studio.datasets.tokenize(ds.id, str(tiny_tokenizer_dir), {"seq_len": 16},
                                           force=True)
    wait_ok(studio, job3)
    assert studio.datasets.get_tokenization(tok.id).status == "ready"
    other, job4 = studio.datasets.tokenize(ds.id, str(tiny_tokenizer_dir),
                                           {"seq_len": 8, "packing": "padded"})
    wait_ok(studio, job4)
    assert {t.id for t in studio.datasets.tokenizations(ds.id)} == {tok.id, other.id}
    seqs = studio.datasets.sequences(other.id, 0, 2)
    assert seqs[0]["ids"] == td_row(studio, other.id, 0)
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(str(tiny_tokenizer_dir))
    assert seqs[0]["text"] == [hf.decode([i]) for i in seqs[0]["ids"]]
    assert seqs[0]["raw"] == hf.convert_ids_to_tokens(seqs[0]["ids"])
    # stats job recomputes what was stored at tokenization time
    before = studio.datasets.get_tokenization(tok.id).stats
    wait_ok(studio, studio.datasets.compute_stats(ds.id))
    after = studio.datasets.get_tokenization(tok.id).stats
    assert after["top_tokens"] == before["top_tokens"]
    assert after["vocab_coverage"] == before["vocab_coverage"]
    assert studio.datasets.get(ds.id).stats["categories"] == ds.stats["categories"]
    # rename, delete a tokenization, delete the dataset with its files
    assert studio.datasets.rename(ds.id, "Renamed").name == "Renamed"
    with pytest.raises(UserError):
        studio.datasets.rename(ds.id, "   ")
    # a job reading a tokenization (an extraction names its folder) keeps it from deletion
    reader = studio.submit_job("demo.sleep", {"seconds": 30, "tokenization": other.path})
    with pytest.raises(UserError, match="A job is reading that tokenization"):
        studio.datasets.delete_tokenization(other.id)
    studio.cancel_job(reader.id)
    studio.jobs.wait(reader.id, 10)
    studio.datasets.delete_tokenization(other.id)
    assert [t.id for t in studio.datasets.tokenizations(ds.id)] == [tok.id]
    assert not Path(other.path).exists()
    folder = studio.datasets.folder(ds.id)
    studio.datasets.delete(ds.id)
    assert not folder.exists() and studio.datasets.list() == []
    assert corpus_files["parquet"].exists()  # the user's original is never touched
    with pytest.raises(UserError, match="No dataset"):
        studio.datasets.get(ds.id)


def td_row(studio, tok_id, i):
    return studio.datasets.open_tokenization(tok_id).tokens[i].tolist()


def test_tokenize_bad_inputs(studio, corpus_files, tmp_path, tiny_tokenizer_dir):
    ds = add_ok(studio, corpus_files["txt"])
    with pytest.raises(UserError, match="neither a registered model nor a folder"):
        studio.datasets.tokenize(ds.id, "m_doesnotexist")
    (tmp_path / "no_tok").mkdir()
    with pytest.raises(UserError, match="no tokenizer files"):
        studio.datasets.tokenize(ds.id, str(tmp_path / "no_tok"))
    with pytest.raises(UserError, match="context length"):
        studio.datasets.tokenize(ds.id, str(tiny_tokenizer_dir), {"seq_len": 0})
    tok, job = studio.datasets.tokenize(ds.id, str(tiny_tokenizer_dir),
                                        {"seq_len": 16, "min_doc_tokens": 100_000})
    failed = wait_failed(studio, job)
    assert "no sequences" in failed.error
    assert studio.datasets.tokenizations(ds.id) == []
    assert not (studio.datasets.folder(ds.id) / "tokenizations" / tok.id).exists()


def test_tokenize_with_a_registered_model(studio, corpus_files, tiny_gpt2_dir):
    """The tokenizer of a model registered in the Models area, by its id."""
    from mistudio.data.tokenized import tokenizer_fingerprint
    from mistudio.data.tokenize import load_tokenizer

    model, mjob = studio.models.add_local(str(tiny_gpt2_dir))
    wait_ok(studio, mjob)
    ds = add_ok(studio, corpus_files["jsonl"])
    tok, job = studio.datasets.tokenize(ds.id, model.id, {"seq_len": 32})
    wait_ok(studio, job)
    tok = studio.datasets.get_tokenization(tok.id)
    assert tok.model_id == model.id
    assert tok.tokenizer_fingerprint == tokenizer_fingerprint(load_tokenizer(str(tiny_gpt2_dir)))
    meta = studio.datasets.open_tokenization(tok.id).meta
    assert meta["model_id"] == model.id
