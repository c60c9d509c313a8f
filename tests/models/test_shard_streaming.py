"""Shards are streamed to disk as rows arrive (the extraction's last write stays short):
the same files, rows and statistics as computed by hand, and a half-written shard of a
killed run never shows up."""

from __future__ import annotations

import numpy as np
import pytest

from mistudio.activations.format import (ActivationSet, ActivationShardWriter,
                                         read_shard_index)


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_streamed_shards_hold_the_rows_and_exact_sums(tmp_path, dtype):
    import torch

    rng = np.random.default_rng(0)
    x = (rng.standard_normal((3000, 16)) * 3 + 1).astype(np.float32)
    w = ActivationShardWriter(tmp_path / "s", 16, {}, dtype=dtype, shard_rows=1000)
    for i in range(0, 3000, 700):  # chunks that straddle shard ends
        n = min(700, 3000 - i)
        w.append(x[i:i + n], np.stack([np.arange(i, i + n), np.zeros(n)], 1).astype(np.int32))
    w.finish()
    s = ActivationSet(tmp_path / "s")
    shards = read_shard_index(tmp_path / "s")
    stored = {"float32": torch.float32, "float16": torch.float16,
              "bfloat16": torch.bfloat16}[dtype]
    want = torch.from_numpy(x).to(stored).float().numpy()  # what the dtype can hold
    got = np.concatenate([np.load(tmp_path / "s" / sh.file) for sh in shards]) \
        if dtype != "bfloat16" else None
    assert [sh.rows for sh in shards] == [1000, 1000, 1000]
    if got is not None:
        assert np.array_equal(got.astype(np.float32), want)
    for sh in shards:
        with np.load(tmp_path / "s" / sh.sums_file) as z:
            block = want[sh.row_start:sh.row_start + sh.rows].astype(np.float64)
            assert np.allclose(z["sum"], block.sum(0), rtol=1e-12, atol=1e-9)
            assert np.allclose(z["sumsq"], (block * block).sum(0), rtol=1e-12)
            assert np.allclose(z["norms"], np.linalg.norm(block, axis=1), rtol=1e-6)
    assert np.allclose(np.asarray(s.stats["mean"]), want.astype(np.float64).mean(0), atol=1e-6)


def test_a_half_written_shard_of_a_killed_run_is_dropped_on_reopen(tmp_path):
    x = np.ones((500, 8), np.float32)
    pos = np.zeros((500, 2), np.int32)
    w = ActivationShardWriter(tmp_path / "s", 8, {}, shard_rows=400)
    w.append(x, pos)  # one complete shard (400 rows) and 100 rows streamed into the next
    partial = list((tmp_path / "s" / "shards").glob(".*.partial"))
    assert len(partial) == 1 and partial[0].stat().st_size > 100 * 8 * 4
    del w  # the process dies here
    again = ActivationShardWriter(tmp_path / "s", 8, {}, shard_rows=400)
    assert again.resumed_rows == 400
    assert not list((tmp_path / "s" / "shards").glob(".*.partial"))
