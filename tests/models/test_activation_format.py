"""The activation-set format: shards, index, resume, reader, shuffled epochs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mistudio.activations.format import (ActivationSet, ActivationShardWriter, is_complete,
                                         write_activation_set)
from mistudio.errors import UserError


def _data(n=1000, d=16, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_roundtrip_rows_and_stats(tmp_path, dtype):
    x = _data()
    write_activation_set(tmp_path / "s", x, {"hook_point": "h", "seq_len": 10}, shard_rows=128,
                         dtype=dtype)
    s = ActivationSet(tmp_path / "s")
    assert (s.num_rows, s.d_in, s.dtype, s.num_shards) == (1000, 16, dtype, 8)
    expected = torch.from_numpy(x).to(getattr(torch, dtype)).float().numpy()
    np.testing.assert_array_equal(s.rows(0, 1000), expected)
    np.testing.assert_array_equal(s.rows(120, 390), expected[120:390])
    np.testing.assert_array_equal(s.positions(0, 25)[:, 0], np.arange(25) // 10)
    np.testing.assert_array_equal(s.positions(0, 25)[:, 1], np.arange(25) % 10)
    st = s.stats
    np.testing.assert_allclose(st["mean"], expected.astype(np.float64).mean(0), rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(st["std"], expected.astype(np.float64).std(0), rtol=1e-4)
    norms = np.linalg.norm(expected.astype(np.float64), axis=1)
    assert st["mean_norm"] == pytest.approx(norms.mean(), rel=1e-5)
    assert sum(st["norm_hist"]["counts"]) == 1000
    np.testing.assert_array_equal(s.samples(), expected[:8])


def test_bf16_stored_as_uint16(tmp_path):
    write_activation_set(tmp_path / "s", _data(10), {}, dtype="bfloat16")
    arr = np.load(tmp_path / "s" / "shards" / "act_00000.npy")
    assert arr.dtype == np.uint16


def test_incomplete_set_is_refused_and_resume_continues(tmp_path):
    x = _data(1000)
    folder = tmp_path / "s"
    w = ActivationShardWriter(folder, 16, {"hook_point": "h"}, shard_rows=100)
    w.append(x[:350], np.zeros((350, 2), np.int32))
    # simulated crash: 3 complete shards, 50 buffered rows lost, a stray half-written file
    (folder / "shards" / ".act_00003.npy.deadbeef.tmp").write_bytes(b"partial")
    (folder / "shards" / "act_00003.npy").write_bytes(b"garbage from a killed process")
    del w
    with pytest.raises(UserError, match="incomplete"):
        ActivationSet(folder)
    assert not is_complete(folder)
    index = json.loads((folder / "index.json").read_text())
    assert [s["rows"] for s in index["shards"]] == [100, 100, 100]
    w2 = ActivationShardWriter(folder, 16, {"hook_point": "h"}, shard_rows=100)
    assert w2.resumed_rows == 300
    assert sorted(p.name for p in (folder / "shards").iterdir()) == sorted(
        f"{k}_{i:05d}.{e}" for i in range(3) for k, e in (("act", "npy"), ("pos", "npy"),
                                                           ("sum", "npz")))
    w2.append(x[300:], np.zeros((700, 2), np.int32))
    w2.finish()
    s = ActivationSet(folder)
    np.testing.assert_array_equal(s.rows(0, 1000), x)
    np.testing.assert_allclose(s.stats["mean"], x.astype(np.float64).mean(0), atol=1e-6)


def test_resume_refuses_other_shape(tmp_path):
    w = ActivationShardWriter(tmp_path / "s", 16, {}, shard_rows=10)
    w.append(_data(20), np.zeros((20, 2), np.int32))
    with pytest.raises(UserError, match="Cannot resume"):
        ActivationShardWriter(tmp_path / "s", 32, {}, shard_rows=10)


@pytest.mark.parametrize("buffer_rows", [50, 300, 10_000])
def test_every_row_once_per_epoch_shuffled_and_deterministic(tmp_path, buffer_rows):
    n = 1000
    x = np.arange(n, dtype=np.float32)[:, None].repeat(4, axis=1)  # row i holds value i
    write_activation_set(tmp_path / "s", x, {}, shard_rows=97)
    s = ActivationSet(tmp_path / "s")
    kw = dict(seed=3, buffer_rows=buffer_rows)
    e0 = [b[:, 0].numpy().astype(int) for b in s.iter_batches(32, epoch=0, drop_last=False, **kw)]
    seen = np.concatenate(e0)
    assert sorted(seen.tolist()) == list(range(n))  # exactly once
    assert not np.array_equal(seen, np.arange(n))  # shuffled
    assert all(len(b) == 32 for b in e0[:-1]) and len(e0[-1]) == n % 32
    again = np.concatenate([b[:, 0].numpy().astype(int)
                            for b in s.iter_batches(32, epoch=0, drop_last=False, **kw)])
    np.testing.assert_array_equal(seen, again)
    e1 = np.concatenate([b[:, 0].numpy().astype(int)
                         for b in s.iter_batches(32, epoch=1, drop_last=False, **kw)])
    assert sorted(e1.tolist()) == list(range(n)) and not np.array_equal(e1, seen)
    dropped = list(s.iter_batches(32, epoch=0, drop_last=True, **kw))
    assert len(dropped) == n // 32 == s.num_batches(32)
    # rows must keep their content (column 1..3 equal column 0)
    for b in dropped[:5]:
        assert torch.equal(b[:, 0:1].expand(-1, 4), b)


def test_start_batch_resumes_bit_for_bit(tmp_path):
    x = _data(700, 8)
    write_activation_set(tmp_path / "s", x, {}, shard_rows=64, dtype="bfloat16")
    s = ActivationSet(tmp_path / "s")
    full = list(s.iter_batches(16, seed=1, epoch=2, buffer_rows=100))
    tail = list(s.iter_batches(16, seed=1, epoch=2, buffer_rows=100, start_batch=17))
    assert len(tail) == len(full) - 17
    for a, b in zip(full[17:], tail):
        assert torch.equal(a, b)


def test_unshuffled_order_is_file_order(tmp_path):
    x = _data(200, 4)
    write_activation_set(tmp_path / "s", x, {}, shard_rows=64)
    s = ActivationSet(tmp_path / "s")
    got = torch.cat(list(s.iter_batches(50, shuffle=False, drop_last=False))).numpy()
    np.testing.assert_array_equal(got, x)


def test_gather_arbitrary_order(tmp_path):
    x = _data(300, 4)
    write_activation_set(tmp_path / "s", x, {}, shard_rows=50)
    s = ActivationSet(tmp_path / "s")
    idx = np.array([299, 0, 150, 151, 49, 50, 7])
    np.testing.assert_array_equal(s.gather(idx), x[idx])
