"""numba kernels for the CPU: one pass where torch would need several full-size temporaries.

:func:`row_stats`: per-row top/bottom-k, min, max and equal-width histogram of a float32
matrix. The logit lens needs, for each feature's row of ``vocab`` logits, the 10 largest and 10
smallest entries and a 50-bin histogram between the row's min and max. Done with torch ops
that is a top-k, a bottom-k, a min/max, four element-wise passes building bin indices and a
``bincount`` over ``rows x vocab`` elements: on a CPU several times the cost of the GEMM that
made the logits. The numba kernel below reads each row twice (min/max, then bins and the two
running top-k lists) and writes nothing the size of the input.


:func:`add_coproducts`: a block's sums of products with every feature, straight from the
sparse codes (no pair arrays). :func:`top_correlations`: each row's top-k Pearson r from a block of co-firing sums (see
:func:`mistudio.analysis.per_feature.correlations`), one read of the block, no temporaries.

Rows are split over ``torch.get_num_threads()`` Python threads (the kernel releases the
GIL), so no numba threading layer competes with torch's OpenMP pool.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

_KERNELS: dict = {}
_KERNEL_LOCK = threading.Lock()


def _row_stats_kernel(x, r0, r1, k, n_bins, top_v, top_i, bot_v, bot_i, hist, rng):
    """Rows ``r0 .. r1`` of ``x`` into the output arrays (see :func:`row_stats`); the bottom
    list is kept as the top list of ``-x`` and negated at the end."""
    n = x.shape[1]
    for r in range(r0, r1):
        row = x[r]
        lo = row[0]
        hi = row[0]
        for j in range(1, n):
            v = row[j]
            if v < lo:
                lo = v
            elif v > hi:
                hi = v
        rng[r, 0] = lo
        rng[r, 1] = hi
        width = (hi - lo) / np.float32(n_bins)
        if width < np.float32(1e-12):
            width = np.float32(1e-12)
        tv = top_v[r]
        ti = top_i[r]
        bv = bot_v[r]
        bi = bot_i[r]
        ti[:] = -1
        bi[:] = -1
        h = hist[r]
        for j in range(n):
            v = row[j]
            b = int(np.floor((v - lo) / width))
            if b > n_bins - 1:
                b = n_bins - 1
            elif b < 0:
                b = 0
            h[b] += 1
            _insert_desc(tv, ti, v, j)
            _insert_desc(bv, bi, -v, j)
        for s in range(k):
            bv[s] = -bv[s]


def _insert_desc(tv, ti, v, j):
    """Insert (v, j) into the descending top list (tv, ti) if it belongs there; ids -1 are
    empty slots. Equal values keep the earlier entry first."""
    last = len(tv) - 1
    if v > tv[last] or ti[last] < 0:
        s = last
        while s > 0 and (v > tv[s - 1] or ti[s - 1] < 0):
            tv[s] = tv[s - 1]
            ti[s] = ti[s - 1]
            s -= 1
        tv[s] = v
        ti[s] = j


def _correlation_kernel(co, r0, r1, b0, n, mu, sd, low, top_v, top_i):
    """Rows ``r0 .. r1`` of the block: see :func:`top_correlations`."""
    d = co.shape[1]
    for r in range(r0, r1):
        i = b0 + r
        if sd[i] <= 0:
            continue
        tv = top_v[r]
        ti = top_i[r]
        row = co[r]
        for j in range(d):
            s = row[j]
            if s != 0.0 and j != i and sd[j] > 0:
                _insert_desc(tv, ti, (s / n - mu[i] * mu[j]) / (sd[i] * sd[j]), j)
        for q in range(len(low)):
            j = low[q]
            if row[j] == 0.0 and j != i:
                _insert_desc(tv, ti, (0.0 - mu[i] * mu[j]) / (sd[i] * sd[j]), j)


def _coproduct_kernel(offsets, features, values, sel, local_rows, b0, lo, hi, d, co):
    """``co[(f_e - b0) * d + f_q] += v_e v_q`` for each selected entry ``e`` whose local
    feature ``f_e - b0`` is in ``[lo, hi)``, over the entries ``q`` of its token."""
    for t in range(len(sel)):
        e = sel[t]
        m = np.int64(features[e]) - b0
        if m < lo or m >= hi:
            continue
        r = local_rows[t]
        v = np.float64(values[e])
        base = m * d
        for q in range(offsets[r], offsets[r + 1]):
            co[base + features[q]] += v * np.float64(values[q])


def _compile(name: str):
    """A numba kernel: compiled on first use (a few seconds), then loaded from numba's
    on-disk cache (``__pycache__`` beside this file, or numba's user cache folder)."""
    with _KERNEL_LOCK:
        if not _KERNELS:
            import numba

            jit = numba.njit(nogil=True, cache=True)
            # the kernels find their helper in this module's globals when they compile
            globals()["_insert_desc"] = jit(_insert_desc)
            _KERNELS["row_stats"] = jit(_row_stats_kernel)
            _KERNELS["correlations"] = jit(_correlation_kernel)
            _KERNELS["coproducts"] = jit(_coproduct_kernel)
        return _KERNELS[name]


def _split_rows(rows: int, threads: int | None, run) -> None:
    """``run(r0, r1)`` over ``rows`` split among threads (the kernels release the GIL)."""
    if threads is None:
        import torch

        threads = torch.get_num_threads()
    threads = max(1, min(int(threads), rows))
    if threads == 1:
        run(0, rows)
        return
    cuts = np.linspace(0, rows, threads + 1).astype(int)
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda i: run(cuts[i], cuts[i + 1]), range(threads)))


def add_coproducts(co: np.ndarray, offsets: np.ndarray, features: np.ndarray,
                   values: np.ndarray, sel: np.ndarray, local_rows: np.ndarray, b0: int, nb: int,
                   d: int, threads: int | None = None) -> None:
    """Add the products of each selected entry of a chunk (CSR ``offsets``, ``features``,
    ``values``; ``sel`` entries in tokens ``local_rows``, features ``b0 .. b0 + nb``) with
    every entry of its token into ``co [nb * d]`` (float64). Threads take disjoint ranges of
    the block's features, so each sum keeps the token order."""
    kernel = _compile("coproducts")
    _split_rows(nb, threads, lambda lo, hi: kernel(offsets, features, values, sel, local_rows,
                                                   b0, lo, hi, d, co))


def top_correlations(co: np.ndarray, b0: int, n_rows: int, mu: np.ndarray, sd: np.ndarray,
                     low: np.ndarray, k: int, threads: int | None = None
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` Pearson r of features ``b0 .. b0 + len(co)`` from ``co [rows, d]`` (float64
    sums of products over the tokens, 0 where never together), the means ``mu`` and
    standard deviations ``sd`` over all ``n_rows`` tokens, and ``low``: the alive features
    of smallest ``mu / sd``, whose r with a feature they never fire with is taken from the
    formula. Returns (ids [rows, k] int32, -1 where fewer, values [rows, k] float64)."""
    co = np.ascontiguousarray(co, dtype=np.float64)
    rows = co.shape[0]
    top_v = np.full((rows, k), -np.inf)
    top_i = np.full((rows, k), -1, np.int32)
    if rows and k:
        kernel = _compile("correlations")
        args = (b0, float(max(n_rows, 1)), np.ascontiguousarray(mu, np.float64),
                np.ascontiguousarray(sd, np.float64), np.ascontiguousarray(low, np.int64),
                top_v, top_i)
        _split_rows(rows, threads, lambda r0, r1: kernel(co, r0, r1, *args))
    return top_i, top_v


def row_stats(x: np.ndarray, k: int, n_bins: int, threads: int | None = None
              ) -> dict[str, np.ndarray]:
    """For each row of ``x [rows, n]`` (float32): ``top_values/top_ids`` (largest first),
    ``bottom_values/bottom_ids`` (smallest first), ``hist [rows, n_bins]`` (bin ``i`` is
    ``[lo + i w, lo + (i+1) w)`` with ``w = (hi - lo) / n_bins``, the max in the last bin)
    and ``range [rows, 2]`` (min, max)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    rows, n = x.shape
    k = min(k, n)
    out = {"top_values": np.empty((rows, k), np.float32), "top_ids": np.empty((rows, k), np.int32),
           "bottom_values": np.empty((rows, k), np.float32),
           "bottom_ids": np.empty((rows, k), np.int32),
           "hist": np.zeros((rows, n_bins), np.int32), "range": np.empty((rows, 2), np.float32)}
    if rows == 0 or n == 0:
        return out
    kernel = _compile("row_stats")
    args = (k, n_bins, out["top_values"], out["top_ids"], out["bottom_values"],
            out["bottom_ids"], out["hist"], out["range"])
    _split_rows(rows, threads, lambda r0, r1: kernel(x, r0, r1, *args))
    return out


def warm_up() -> None:
    """Compile (or load from numba's cache) every kernel on tiny inputs."""
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    row_stats(x, 2, 4, threads=1)
    co = np.ones(2 * 3)
    add_coproducts(co, np.array([0, 2], np.int64), np.array([0, 2], np.int32),
                   np.ones(2, np.float32), np.array([0], np.int64), np.array([0], np.int64),
                   0, 2, 3, threads=1)
    top_correlations(co.reshape(2, 3), 0, 4, np.full(3, 0.5), np.full(3, 0.5),
                     np.array([0], np.int64), 2, threads=1)
