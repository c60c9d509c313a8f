"""The per-feature pass: for one block of features, everything that needs their activations.

The streaming pass left every token's sparse code on disk (:mod:`mistudio.analysis.codes`)
and the per-feature sums and maxima in memory. One read of the chunks per block of features
``[b0, b1)`` collects the block's non-zero activations (memory: the block's share of all
non-zeros) and, from the same rows, the products with every other feature for the exact
Pearson correlations (memory: ``(b1 - b0) x d_sae`` float64, never ``d_sae x d_sae``).
Then, per feature of the block:

- the 50-bin histogram of non-zero activations over (0, max] (bin i is (i w, (i+1) w]);
- the top examples (largest activation; ties: earlier token first);
- equal-width intervals over (0, max] (sae_vis; zeros are never in an interval) with each
  interval's count, and rank quantiles (delphi: the i-th of n equal-count groups of the
  feature's non-zero activations sorted by value), a few examples drawn from each;
- each example's window of activations (``context_before`` tokens, the token,
  ``context_after`` tokens of the same sequence);
- the ``n_neighbours`` most correlated features.

Sampling is reproducible by seed and independent of the block size: an example's draw order
is a hash of (seed, feature, token).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mistudio.analysis.codes import CodeSpill

HIST_BINS = 50


@dataclass
class PassConfig:
    d_sae: int
    n_rows: int  # analysed tokens
    seq_len: int
    key_space: int  # n_seq * seq_len: keys are seq * seq_len + pos
    n_top: int = 40
    n_intervals: int = 10
    n_quantiles: int = 10
    per_interval: int = 10
    n_neighbours: int = 10
    before: int = 15
    after: int = 4
    seed: int = 0

    @property
    def window(self) -> int:
        return self.before + 1 + self.after


def output_shapes(cfg: PassConfig) -> dict[str, tuple[tuple, str]]:
    """Array name -> (shape, dtype) of every file this pass fills."""
    d, W = cfg.d_sae, cfg.window
    out = {"act_hist": ((d, HIST_BINS), "int32"),
           "interval_bounds": ((d, cfg.n_intervals + 1), "float32"),
           "interval_counts": ((d, cfg.n_intervals), "int64"),
           "quantile_bounds": ((d, cfg.n_quantiles + 1), "float32"),
           "quantile_counts": ((d, cfg.n_quantiles), "int64"),
           "corr_ids": ((d, cfg.n_neighbours), "int32"),
           "corr_values": ((d, cfg.n_neighbours), "float32")}
    for group, shape in (("top", (d, cfg.n_top)),
                         ("interval", (d, cfg.n_intervals, cfg.per_interval)),
                         ("quantile", (d, cfg.n_quantiles, cfg.per_interval))):
        out[f"{group}_seq"] = (shape, "int32")
        out[f"{group}_pos"] = (shape, "int32")
        out[f"{group}_value"] = (shape, "float32")
        out[f"{group}_window"] = ((*shape, W), "float16")
    return out


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a fast, well-mixed hash of uint64s (wraps on overflow)."""
    x = np.asarray(x, dtype=np.uint64)
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def draw_keys(seed: int, features: np.ndarray, rows: np.ndarray, d_sae: int) -> np.ndarray:
    base = mix64(np.uint64(seed & 0xFFFFFFFF) + np.uint64(0x9E3779B97F4A7C15))
    return mix64((rows.astype(np.uint64) * np.uint64(d_sae) + features.astype(np.uint64)) ^ base)


def _first_per_group(groups: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """For ``groups`` sorted ascending: (indices of the first ``m`` of each group, their rank)."""
    if len(groups) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    change = np.ones(len(groups), dtype=bool)
    change[1:] = groups[1:] != groups[:-1]
    starts = np.flatnonzero(change)
    run = np.repeat(starts, np.diff(np.append(starts, len(groups))))
    rank = np.arange(len(groups)) - run
    keep = np.flatnonzero(rank < m)
    return keep, rank[keep]


class BlockCollector:
    """Reads every chunk once for features ``[b0, b1)``: their entries and co-products."""

    def __init__(self, b0: int, b1: int, d_sae: int, device: str = "cpu"):
        import torch

        self.b0, self.b1, self.d_sae = b0, b1, d_sae
        self.device = device
        size = (b1 - b0) * d_sae
        if torch.device(device).type == "cpu":
            # numpy's zeros come from calloc: pages no pair touches are never written
            self.co = torch.from_numpy(np.zeros(size, dtype=np.float64))
        else:
            self.co = torch.zeros(size, dtype=torch.float64, device=device)
        self.parts: list[tuple[np.ndarray, ...]] = []

    def add(self, chunk) -> None:
        import torch

        f = chunk.features
        sel = np.flatnonzero((f >= self.b0) & (f < self.b1))
        if len(sel) == 0:
            return
        local_rows = np.searchsorted(chunk.offsets, sel, side="right") - 1
        self.parts.append((f[sel].astype(np.int64) - self.b0, local_rows + chunk.first_row,
                           chunk.values[sel], chunk.keys[local_rows]))
        # every (selected entry, entry of the same token) pair, for the co-products
        if self.co.device.type == "cpu":
            from mistudio.analysis.kernels import add_coproducts

            add_coproducts(self.co.numpy(), chunk.offsets, f, chunk.values, sel, local_rows,
                           self.b0, self.b1 - self.b0, self.d_sae)
            return
        dev = self.device
        offs = torch.from_numpy(chunk.offsets).to(dev)
        lr = torch.from_numpy(local_rows).to(dev)
        starts, lens = offs[lr], offs[lr + 1] - offs[lr]
        sel_t = torch.from_numpy(sel).to(dev)
        total = int(lens.sum())
        first = torch.repeat_interleave(torch.cumsum(lens, 0) - lens, lens, output_size=total)
        partner = (torch.arange(total, device=dev) - first
                   + torch.repeat_interleave(starts, lens, output_size=total))
        mine = torch.repeat_interleave(sel_t, lens, output_size=total)
        ft = torch.from_numpy(f).to(dev)
        vt = torch.from_numpy(chunk.values).to(dev).double()
        index = (ft[mine].long() - self.b0) * self.d_sae + ft[partner].long()
        self.co.index_add_(0, index, vt[mine] * vt[partner])

    def entries(self) -> tuple[np.ndarray, ...]:
        """(local feature, row, value, key) sorted by (feature, row)."""
        if not self.parts:
            z = np.zeros(0, dtype=np.int64)
            return z, z, np.zeros(0, dtype=np.float32), z
        f, r, v, k = (np.concatenate([p[i] for p in self.parts]) for i in range(4))
        order = np.argsort(f, kind="stable")  # rows are ascending within each chunk
        return f[order], r[order], v[order], k[order]


def correlations(co, b0: int, b1: int, sums: np.ndarray, sumsqs: np.ndarray, n_rows: int,
                 k: int, use_kernel: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` Pearson r over all tokens (zeros included) for features ``[b0, b1)``.

    ``co`` holds the block's sums of products ``S_ij`` (zero where i and j never fire on the
    same token). Pearson r is exact but computed for few pairs: where ``S_ij = 0``,
    ``r_ij = -(mu_i / sd_i) (mu_j / sd_j)``, so among the features that never fire with i the
    order is that of ``mu_j / sd_j`` alone, the same for every row. The top ``k`` of row i
    are therefore among (a) the features that fire with i (the non-zeros of its row of
    ``co``) and (b) the ``k + 1`` alive features of smallest ``mu / sd`` overall: each of (b)
    has r at least that of any feature outside (a) and (b). Ties aside, the same ``k`` as a
    dense ``(b1 - b0) x d_sae`` Pearson matrix, at the cost of the co-firing pairs.

    On the CPU a numba kernel reads each row of ``co`` once (``use_kernel``); elsewhere
    torch ops gather the non-zeros and sort them."""
    import torch

    d, nb = len(sums), b1 - b0
    dev = co.device
    n = float(max(n_rows, 1))
    mu_np = np.asarray(sums, dtype=np.float64) / n
    sd_np = np.sqrt(np.clip(np.asarray(sumsqs, dtype=np.float64) / n - mu_np * mu_np, 0, None))
    alive_np = sd_np > 0
    ratio_np = np.where(alive_np, mu_np / np.where(alive_np, sd_np, 1.0), np.inf)
    low_np = np.argsort(ratio_np, kind="stable")[:min(k + 1, int(alive_np.sum()))]
    if use_kernel is None:
        use_kernel = dev.type == "cpu"
    if use_kernel:
        from mistudio.analysis.kernels import top_correlations

        ids, vals = top_correlations(co.view(nb, d).cpu().numpy(), b0, n_rows, mu_np, sd_np,
                                     low_np, k)
        vals = vals.astype(np.float32)
        vals[ids < 0] = np.nan
        return ids, vals
    mu = torch.from_numpy(mu_np).to(dev)
    sd = torch.from_numpy(sd_np).to(dev)
    alive = sd > 0
    co2 = co.view(nb, d)

    def pearson(rows, cols, s):
        return (s / n - mu[b0 + rows] * mu[cols]) / (sd[b0 + rows] * sd[cols])

    # (a) pairs that fire together
    rows_a, cols_a = co2.nonzero(as_tuple=True)
    keep = (cols_a != rows_a + b0) & alive[cols_a] & alive[b0 + rows_a]
    rows_a, cols_a = rows_a[keep], cols_a[keep]
    r_a = pearson(rows_a, cols_a, co2[rows_a, cols_a])
    # (b) the k + 1 alive features of smallest mu / sd, for the rows they never fire with
    low = torch.from_numpy(low_np).to(dev)
    n_low = len(low_np)
    grid_r = torch.arange(nb, device=dev).repeat_interleave(n_low)
    grid_c = low.repeat(nb)
    s_b = co2[grid_r, grid_c]
    keep = (s_b == 0) & (grid_c != grid_r + b0) & alive[b0 + grid_r]
    rows_b, cols_b = grid_r[keep], grid_c[keep]
    r_b = pearson(rows_b, cols_b, s_b[keep])
    rows, cols, vals = (torch.cat(p) for p in ((rows_a, rows_b), (cols_a, cols_b), (r_a, r_b)))
    ids = np.full((nb, k), -1, dtype=np.int32)
    out = np.full((nb, k), np.nan, dtype=np.float32)
    if len(rows) == 0:
        return ids, out
    order = torch.sort(vals, descending=True, stable=True).indices
    order = order[torch.sort(rows[order], stable=True).indices]
    rows, cols, vals = (t[order].cpu().numpy() for t in (rows, cols, vals))
    sel, rank = _first_per_group(rows, k)
    ids[rows[sel], rank] = cols[sel]
    out[rows[sel], rank] = vals[sel]
    return ids, out


def run_block(spill: CodeSpill, n_chunks: int, b0: int, b1: int, cfg: PassConfig,
              stats: dict[str, np.ndarray], out: dict[str, np.ndarray], device: str = "cpu",
              check_cancelled=None) -> None:
    """Fill ``out[name][b0:b1]`` for every array of :func:`output_shapes`."""
    col = BlockCollector(b0, b1, cfg.d_sae, device)
    for i in range(n_chunks):
        if check_cancelled:
            check_cancelled()
        col.add(spill.read(i))
    F, R, V, K = col.entries()
    nb = b1 - b0
    ids, vals = correlations(col.co, b0, b1, stats["sum_act"], stats["sumsq_act"], cfg.n_rows,
                             cfg.n_neighbours)
    del col
    out["corr_ids"][b0:b1] = ids
    out["corr_values"][b0:b1] = vals
    counts = np.bincount(F, minlength=nb).astype(np.int64)
    maxv = np.asarray(stats["max_act"][b0:b1], dtype=np.float64)
    fglob = F + b0

    def equal_width_bins(n_bins):
        width = np.where(maxv > 0, maxv / n_bins, 1.0)[F]
        return np.clip(np.ceil(V / width).astype(np.int64) - 1, 0, n_bins - 1)

    hist_bin = equal_width_bins(HIST_BINS)
    out["act_hist"][b0:b1] = np.bincount(F * HIST_BINS + hist_bin, minlength=nb * HIST_BINS
                                         ).reshape(nb, HIST_BINS)
    ni, nq, per = cfg.n_intervals, cfg.n_quantiles, cfg.per_interval
    ibin = equal_width_bins(ni)
    out["interval_counts"][b0:b1] = np.bincount(F * ni + ibin, minlength=nb * ni).reshape(nb, ni)
    out["interval_bounds"][b0:b1] = (maxv[:, None] * np.linspace(0, 1, ni + 1)[None, :])
    draw = draw_keys(cfg.seed, fglob, R, cfg.d_sae)
    examples: dict[str, tuple] = {}
    # top examples: by value, descending; ties by row
    order = np.lexsort((R, -V, F))
    keep, rank = _first_per_group(F[order], cfg.n_top)
    sel = order[keep]
    examples["top"] = (F[sel], rank, sel, (nb, cfg.n_top))
    # equal-width intervals: a hashed draw within each (feature, interval)
    g = F * ni + ibin
    order = np.lexsort((draw, g))
    keep, rank = _first_per_group(g[order], per)
    sel = order[keep]
    examples["interval"] = (g[sel], rank, sel, (nb * ni, per))
    # rank quantiles: value order within the feature, equal-count groups
    order = np.lexsort((R, V, F))
    Fs = F[order]
    _, first_idx = np.unique(Fs, return_index=True) if len(Fs) else (None, np.zeros(0, int))
    start = np.zeros(nb, dtype=np.int64)
    start[np.unique(Fs)] = first_idx
    qrank = np.arange(len(Fs)) - start[Fs]
    q = (qrank * nq) // np.maximum(counts[Fs], 1)
    qg = Fs * nq + q
    qcounts = np.bincount(qg, minlength=nb * nq).reshape(nb, nq)
    out["quantile_counts"][b0:b1] = qcounts
    lows = np.full(nb * nq, np.nan, dtype=np.float32)
    is_first = np.ones(len(qg), dtype=bool)
    is_first[1:] = qg[1:] != qg[:-1]
    lows[qg[is_first]] = V[order][is_first]
    bounds = np.concatenate([lows.reshape(nb, nq), maxv[:, None].astype(np.float32)], axis=1)
    bounds[counts == 0] = np.nan
    out["quantile_bounds"][b0:b1] = bounds
    o2 = np.lexsort((draw[order], qg))
    keep, rank = _first_per_group(qg[o2], per)
    sel = order[o2[keep]]
    examples["quantile"] = (qg[o2[keep]], rank, sel, (nb * nq, per))
    # windows: the feature's activation on the tokens around each example
    combined = F * cfg.key_space + K  # ascending (rows ascending within a feature)
    for group, (slot_group, slot_rank, sel, shape) in examples.items():
        seq = np.full(shape, -1, dtype=np.int32)
        pos = np.full(shape, -1, dtype=np.int32)
        val = np.zeros(shape, dtype=np.float32)
        win = np.zeros((*shape, cfg.window), dtype=np.float16)
        seq[slot_group, slot_rank] = K[sel] // cfg.seq_len
        pos[slot_group, slot_rank] = K[sel] % cfg.seq_len
        val[slot_group, slot_rank] = V[sel]
        if len(sel):
            offsets = np.arange(-cfg.before, cfg.after + 1)
            qpos = (K[sel] % cfg.seq_len)[:, None] + offsets[None, :]
            inside = (qpos >= 0) & (qpos < cfg.seq_len)
            query = F[sel][:, None] * cfg.key_space + K[sel][:, None] + offsets[None, :]
            at = np.searchsorted(combined, query).clip(0, max(len(combined) - 1, 0))
            hit = inside & (combined[at] == query)
            win[slot_group, slot_rank] = np.where(hit, V[at], 0).astype(np.float16)
        full = (nb,) + ((ni if group == "interval" else nq, per) if group != "top"
                        else (cfg.n_top,))
        out[f"{group}_seq"][b0:b1] = seq.reshape(full)
        out[f"{group}_pos"][b0:b1] = pos.reshape(full)
        out[f"{group}_value"][b0:b1] = val.reshape(full)
        out[f"{group}_window"][b0:b1] = win.reshape(*full, cfg.window)
