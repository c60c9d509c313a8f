"""Regression tests from the bad-input QA pass over the Datasets area."""

from __future__ import annotations

import threading

import pytest

from mistudio.errors import UserError
from tests.data.test_service import add_ok, wait_ok


def test_dataset_cannot_be_deleted_while_an_extraction_reads_its_tokenization(
        studio, corpus_files, tiny_gpt2_dir):
    model, mjob = studio.models.add_local(str(tiny_gpt2_dir))
    wait_ok(studio, mjob)
    ds = add_ok(studio, corpus_files["jsonl"])
    tok, job = studio.datasets.tokenize(ds.id, model.id, {"seq_len": 16})
    wait_ok(studio, job)
    tok = studio.datasets.get_tokenization(tok.id)

    release = threading.Event()

    def hold_extraction(job_id, kind, payload):  # the only job now: keep it running meanwhile
        if kind == "progress":
            release.wait(30)

    studio.add_job_listener(hold_extraction)
    try:
        sets, ejob = studio.activations.start_extraction(model.id, tok.id, layers=[1],
                                                         batch_size=1, max_tokens=0)
        with pytest.raises(UserError, match="reading a tokenization"):
            studio.datasets.delete(ds.id)
        with pytest.raises(UserError, match="reading that tokenization"):
            studio.datasets.delete_tokenization(tok.id)
        assert studio.datasets.get(ds.id).status == "ready"
        assert (studio.datasets.folder(ds.id)).is_dir()
    finally:
        release.set()
        studio.jobs.remove_listener(hold_extraction)
    assert studio.jobs.wait(ejob.id, 60).status == "completed"
    assert studio.activations.get(sets[0].id).status == "ready"
    studio.datasets.delete(ds.id)  # once the reader is done, the dataset goes
    assert not studio.datasets.folder(ds.id).exists()
    assert studio.activations.get(sets[0].id).status == "ready"  # extracted sets are kept


def test_model_without_tokenizer_files_is_refused_before_tokenizing(studio, corpus_files,
                                                                   tiny_gpt2_dir, tmp_path):
    """transformers builds an empty tokenizer from config.json alone; we must not use it."""
    import shutil

    from mistudio.data.tokenize import TOKENIZER_FILES, load_tokenizer

    bare = tmp_path / "weights_only"
    shutil.copytree(tiny_gpt2_dir, bare)
    model, mjob = studio.models.add_local(str(bare), name="weights only")  # linked, not copied
    wait_ok(studio, mjob)
    for name in TOKENIZER_FILES:  # its tokenizer files removed after the import
        (bare / name).unlink(missing_ok=True)
    ds = add_ok(studio, corpus_files["jsonl"])
    with pytest.raises(UserError, match="'weights only' has no tokenizer files"):
        studio.datasets.tokenize(ds.id, model.id, {"seq_len": 16})
    assert studio.datasets.tokenizations(ds.id) == []
    with pytest.raises(UserError, match="holds no tokenizer files"):
        load_tokenizer(str(bare))  # the job's own check, for folders given directly


def test_fake_gguf_is_refused_before_a_tokenize_job(studio, corpus_files, tmp_path):
    fake = tmp_path / "model.gguf"
    fake.write_text("this is not a GGUF file")
    ds = add_ok(studio, corpus_files["jsonl"])
    with pytest.raises(UserError, match="not a GGUF file"):
        studio.datasets.tokenize(ds.id, str(fake), {"seq_len": 16})
    assert studio.datasets.tokenizations(ds.id) == []
    assert studio.list_jobs(status=("queued", "running")) == []


def test_cancelled_forced_retokenization_keeps_the_finished_one(studio, tmp_path,
                                                                tiny_tokenizer_dir):
    import numpy as np

    text = tmp_path / "many.txt"
    text.write_text("\n\n".join(f"Document {i} about cats, dogs and rivers number {i}."
                                for i in range(6000)))
    ds = add_ok(studio, text)
    tok, job = studio.datasets.tokenize(ds.id, str(tiny_tokenizer_dir),
                                        {"seq_len": 16, "batch_docs": 64})
    wait_ok(studio, job)
    before = np.array(studio.datasets.open_tokenization(tok.id).tokens)

    def cancel_midway(job_id, kind, payload):
        if kind == "progress" and payload.get("total") and payload["done"] < payload["total"]:
            studio.cancel_job(job_id)

    studio.add_job_listener(cancel_midway)
    try:
        again, job2 = studio.datasets.tokenize(ds.id, str(tiny_tokenizer_dir),
                                               {"seq_len": 16, "batch_docs": 64}, force=True)
        assert again.id == tok.id
        assert studio.jobs.wait(job2.id, 60).status == "cancelled"
    finally:
        studio.jobs.remove_listener(cancel_midway)
    kept = studio.datasets.get_tokenization(tok.id)
    assert kept.status == "ready"
    assert np.array_equal(np.array(studio.datasets.open_tokenization(tok.id).tokens), before)
