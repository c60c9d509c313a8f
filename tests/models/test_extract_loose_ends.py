"""Extraction settings are validated in the service (UI and CLI alike), and an extraction
that stops before saving anything leaves no activation set behind."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from mistudio.cli import main
from mistudio.errors import UserError


def _model(studio, folder):
    rec, job = studio.models.add_local(str(folder))
    assert studio.queue.wait(job.id, 120).status == "completed"
    return rec.id


def test_batch_size_and_max_tokens_are_validated(studio, tiny_gpt2_dir, packed_tokenization):
    mid = _model(studio, tiny_gpt2_dir)
    start = studio.activations.start_extraction
    for bad in (0, -3, 5000):
        with pytest.raises(UserError, match=r"batch size is .*between 1 and 4096"):
            start(mid, str(packed_tokenization), layers=[0], batch_size=bad, device="cpu")
    with pytest.raises(UserError, match="batch size must be a whole number"):
        start(mid, str(packed_tokenization), layers=[0], batch_size=2.5, device="cpu")
    with pytest.raises(UserError, match=r"max tokens is -1: it must be 0 \(all"):
        start(mid, str(packed_tokenization), layers=[0], max_tokens=-1, device="cpu")
    with pytest.raises(UserError, match="batch size"):
        studio.activations.save_template("bad", {"batch_size": 0})
    assert studio.activations.list() == [] and studio.list_jobs(kind="activations.extract") == []


def test_cli_batch_size_zero_is_refused(data_dir, tiny_gpt2_dir, packed_tokenization, capsys):
    base = ["--data-dir", str(data_dir)]
    assert main(base + ["models", "add", str(tiny_gpt2_dir), "--name", "tiny"]) == 0
    capsys.readouterr()
    for flag, value, words in (("--batch-size", "0", "batch size is 0"),
                               ("--max-tokens", "-5", "max tokens is -5")):
        rc = main(base + ["extract", "run", "tiny", str(packed_tokenization), "--layers", "0",
                          "--device", "cpu", flag, value])
        err = capsys.readouterr().err
        assert rc != 0 and words in err, err
    assert main(base + ["extract", "list"]) == 0
    assert "no activation sets" in capsys.readouterr().out


def test_failed_extraction_without_a_shard_leaves_no_set(studio, tiny_gpt2_dir,
                                                         packed_tokenization, tmp_path):
    mid = _model(studio, tiny_gpt2_dir)
    # same tokenizer fingerprint, but a token id past the vocabulary: the first forward fails
    broken = tmp_path / "broken_tok"
    shutil.copytree(packed_tokenization, broken)
    tokens = np.load(broken / "tokens.npy")
    tokens[0, 5] = 100_000
    np.save(broken / "tokens.npy", tokens)
    sets, job = studio.activations.start_extraction(
        mid, str(broken), layers=[0, 1], batch_size=2, device="cpu", model_dtype="float32")
    done = studio.queue.wait(job.id, 120)
    assert done.status == "failed"
    for s in sets:
        assert studio.activations.repo.get(s.id) is None
        assert not studio.activations.folder(s.id).exists()
        with pytest.raises(UserError, match="stopped before any rows were saved|No activation"):
            studio.activations.get(s.id)
    assert studio.activations.list() == []

    # cancelled before the first batch: nothing saved either, so nothing stays
    def cancel_on_load(job_id, kind, payload):
        if kind == "progress" and "Loading the model" in (payload.get("message") or ""):
            studio.cancel_job(job_id)

    studio.add_job_listener(cancel_on_load)
    try:
        sets, job = studio.activations.start_extraction(
            mid, str(packed_tokenization), layers=[0], batch_size=2, device="cpu")
        assert studio.queue.wait(job.id, 120).status == "cancelled"
    finally:
        studio.queue.remove_listener(cancel_on_load)
    assert studio.activations.list() == [] and not studio.activations.folder(sets[0].id).exists()
