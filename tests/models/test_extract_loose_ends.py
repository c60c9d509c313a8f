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
    assert studio.jobs.wait(job.id, 120).status == "completed"
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
        studio.templates.save("bad", {"batch_size": 0}, kind="extraction")
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
    done = studio.jobs.wait(job.id, 120)
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
        assert studio.jobs.wait(job.id, 120).status == "cancelled"
    finally:
        studio.jobs.remove_listener(cancel_on_load)
    assert studio.activations.list() == [] and not studio.activations.folder(sets[0].id).exists()


@pytest.mark.parametrize("store_dtype", ["float32", "bfloat16"])
def test_writer_keeps_rows_from_reused_pinned_buffers(tmp_path, store_dtype):
    """On CUDA each batch lands in one of a few reusable pinned buffers, and a shard spans
    several batches: the writer must keep a copy, not a view the next batch overwrites.
    (Plain CPU tensors stand in for pinned memory; the reuse pattern is the same.)"""
    import queue

    import torch

    from mistudio.activations.extract import _BackgroundWriter
    from mistudio.activations.format import ActivationSet, ActivationShardWriter

    d, per_batch, slots = 8, 10, 2
    writer = ActivationShardWriter(tmp_path / "set", d, {"hook_point": "h"}, dtype=store_dtype,
                                   shard_rows=35)
    free: queue.Queue = queue.Queue()
    for i in range(slots):
        free.put(i)
    buffers = [torch.empty(per_batch, d, dtype=getattr(torch, store_dtype))
               for _ in range(slots)]
    bg = _BackgroundWriter({"h": writer}, free, on_shard=lambda _r: None)
    want = []
    for b in range(9):
        slot = free.get(timeout=10)
        data = torch.arange(per_batch * d, dtype=torch.float32).reshape(per_batch, d) + 100 * b
        buffers[slot].copy_(data)
        want.append(data)
        pos = np.stack([np.full(per_batch, b), np.arange(per_batch)], 1).astype(np.int32)
        bg.put(("batch", None, slot, {"h": buffers[slot]}, pos,
                {"next_seq": b + 1, "rows": per_batch * (b + 1)}, True))
    bg.flush()
    bg.close()
    writer.finish({"num_tokens": 90})
    got = ActivationSet(tmp_path / "set")
    assert got.num_rows == 90
    expected = torch.cat(want).to(getattr(torch, store_dtype)).float().numpy()
    np.testing.assert_array_equal(got.rows(0, 90), expected)
    assert got.positions()[:, 0].tolist() == [b for b in range(9) for _ in range(per_batch)]
