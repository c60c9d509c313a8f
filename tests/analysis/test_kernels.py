"""The CPU kernels against numpy: per-row logit-lens statistics and top correlations."""

from __future__ import annotations

import numpy as np
import pytest

# the torch paths' matmuls (and so the compared values) depend on the CPU's kernels
pytestmark = pytest.mark.numerics


def test_row_stats_equal_numpy_sorts_and_histograms():
    from mistudio.analysis.kernels import row_stats

    rng = np.random.default_rng(0)
    x = rng.normal(size=(37, 501)).astype(np.float32)
    x[3] = 1.5  # a constant row: every value in the first bin
    got = row_stats(x, 10, 50, threads=2)
    for r in range(len(x)):
        np.testing.assert_array_equal(got["top_values"][r], np.sort(x[r])[::-1][:10])
        np.testing.assert_array_equal(got["bottom_values"][r], np.sort(x[r])[:10])
        np.testing.assert_array_equal(x[r, got["top_ids"][r]], got["top_values"][r])
        np.testing.assert_array_equal(x[r, got["bottom_ids"][r]], got["bottom_values"][r])
        assert got["range"][r].tolist() == [x[r].min(), x[r].max()]
        if r == 3:
            assert got["hist"][r, 0] == x.shape[1] and got["hist"][r, 1:].sum() == 0
            continue
        want, _ = np.histogram(x[r], bins=50, range=(x[r].min(), x[r].max()))
        assert got["hist"][r].sum() == x.shape[1]
        assert np.abs(got["hist"][r] - want).sum() <= 2  # float32 vs float64 bin edges


@pytest.mark.parametrize("use_kernel", [True, False])
def test_top_correlations_equal_corrcoef_including_features_that_never_fire_together(
        use_kernel):
    """A block's top-k Pearson r from its co-firing sums, the numba kernel and the torch
    path, against numpy's dense corrcoef; rare features' lists reach features they never
    fire with (r < 0 from the means alone)."""
    import torch

    from mistudio.analysis.per_feature import correlations

    rng = np.random.default_rng(1)
    n, d, k = 500, 70, 10
    density = np.geomspace(0.4, 0.002, d)
    acts = (rng.random((n, d)) < density) * rng.gamma(2.0, 1.0, size=(n, d))
    acts[:, 5] = 0  # dead
    b0, b1 = 20, 55
    co = torch.from_numpy((acts[:, b0:b1].T @ acts).ravel())
    ids, vals = correlations(co, b0, b1, acts.sum(0), (acts ** 2).sum(0), n, k,
                             use_kernel=use_kernel)
    alive = acts.any(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.corrcoef(acts, rowvar=False)
    reached_never_together = 0
    for f in range(b0, b1):
        row = r[f].copy()
        row[f] = -np.inf
        row[~alive] = -np.inf
        want = np.sort(row[np.isfinite(row)])[::-1][:k]
        got_ids = ids[f - b0][ids[f - b0] >= 0]
        np.testing.assert_allclose(vals[f - b0][:len(want)], want, rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(r[f, got_ids], vals[f - b0][:len(got_ids)], rtol=1e-6,
                                   atol=1e-9)
        assert len(got_ids) == len(want) and 5 not in got_ids and f not in got_ids
        reached_never_together += int(((acts[:, f] > 0) & (acts[:, got_ids] > 0).T).any(1)
                                      .__invert__().sum())
    assert reached_never_together > 0


def test_logit_lens_torch_path_equals_the_kernel():
    """The torch ops used on accelerators give the kernel's numbers (run here on the CPU)."""
    import torch

    from mistudio.analysis.kernels import row_stats
    from mistudio.analysis.weights import _row_stats_torch

    rng = np.random.default_rng(2)
    x = rng.normal(size=(23, 777)).astype(np.float32)
    want = row_stats(x, 10, 50)
    got = _row_stats_torch(torch.from_numpy(x.copy()), 10)
    for name in ("top_values", "bottom_values", "range"):
        np.testing.assert_array_equal(got[name], want[name])
    np.testing.assert_array_equal(np.take_along_axis(x, got["top_ids"].astype(np.int64), 1),
                                  want["top_values"])
    assert np.abs(got["hist"] - want["hist"]).sum() <= 2


@pytest.mark.parametrize("bias", [5.0, -5.0])  # every top-k value positive / some not
def test_sparse_encode_equals_the_dense_encode(bias):
    import torch

    from mistudio.analysis.codes import encode_csr
    from tests.analysis.conftest import random_sae

    sae = random_sae(d_in=16, d_sae=40, k=5)
    with torch.no_grad():
        sae.b_enc.fill_(bias)
    x = torch.randn(30, 16, generator=torch.Generator().manual_seed(0)) * 0.1
    dense = sae.encode(x).detach().numpy()
    with torch.no_grad():
        offsets, feats, vals = (t.numpy() for t in encode_csr(sae, x))
    got = np.zeros_like(dense)
    rows = np.repeat(np.arange(len(x)), np.diff(offsets))
    got[rows, feats] = vals
    np.testing.assert_allclose(got, dense, rtol=1e-6, atol=1e-7)
    assert (vals > 0).all()
    assert len(vals) == 5 * len(x) if bias > 0 else 0 < len(vals) < 5 * len(x)
