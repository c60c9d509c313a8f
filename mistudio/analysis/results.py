"""The files of one feature analysis and :class:`AnalysisResults`, their reader.

An analysis (id ``fa_...``) owns the folder ``features/<fa_id>/`` of the data folder. Every
array is a plain ``.npy`` file (memory-mapped when read, so a 65,536-feature analysis opens
in milliseconds); ``d`` is ``d_sae``, ``W = context_before + 1 + context_after``:

==============================  ==========================  ====================================
file                            shape, dtype                what
==============================  ==========================  ====================================
``meta.json``                   JSON                        :data:`META_FIELDS`, conventions
``COMPLETE``                    marker                      written last; no marker: unfinished
``tokens.npy``                  [n_seq, seq_len] int32      the tokenization rows analysed
``vocab.json``                  JSON list of str            display string of every token id
``firing_count.npy``            [d] int64                   tokens on which the feature is > 0
``sum_act.npy``/``sumsq_act``   [d] float64                 sums of activations / of squares
``max_act.npy``                 [d] float32                 largest activation
``act_hist.npy``                [d, 50] int32               non-zero activations, 50 equal bins
                                                            over (0, max_act]
``top_{seq,pos}.npy``           [d, n_top] int32            top examples (-1: none), by value
``top_value.npy``               [d, n_top] float32          activation at the example's token
``top_window.npy``              [d, n_top, W] float16       the feature's activation on the
                                                            window's tokens (0: BOS/pad/none)
``interval_*`` (same 4 files)   [d, n_intervals, per, ..]   sae_vis equal-width intervals
``interval_bounds.npy``         [d, n_intervals + 1] f32    ``linspace(0, max_act)``; interval
                                                            i is (b_i, b_i+1] (zeros excluded)
``interval_counts.npy``         [d, n_intervals] int64      active tokens in each interval
``quantile_*`` (same 4 files)   [d, n_quantiles, per, ..]   delphi rank quantiles
``quantile_bounds.npy``         [d, n_quantiles + 1] f32    smallest value of each group (NaN:
                                                            empty), then max_act
``quantile_counts.npy``         [d, n_quantiles] int64      tokens in each rank group
``corr_{ids,values}.npy``       [d, n_neighbours]           Pearson-correlated features
``cos_{ids,values}.npy``        [d, n_neighbours]           decoder-cosine nearest neighbours
``logit_{top,bottom}_{ids,values}_{raw,folded}.npy``  [d, 10]  logit lens (see conventions)
``logit_hist_{raw,folded}.npy`` [d, 50] int32               logit lens over the vocabulary,
``logit_range_{raw,folded}``    [d, 2] float32              50 equal bins over [min, max]
``neuron_{ids,values,l1_pct}``  [d, 5]                      MLP-neuron alignment (mlp hooks)
``random_{seq,pos}.npy``        [R] int32                   random contexts (centre tokens)
``random_codes_*.npy``          CSR over [R, W] tokens      their sparse codes: ``offsets``
                                                            [R*W+1] int64, ``features`` int32,
                                                            ``values`` float32
==============================  ==========================  ====================================

Missing entries in id arrays are ``-1`` (a dead feature has no examples; fewer active
tokens than asked leave the rest empty). Per-feature scalars are also rows of the SQLite table
``analysis_features`` (sortable/filterable by the Features tab; see
:mod:`mistudio.store.schema_features`).

Reading::

    res = AnalysisResults(folder)
    res.columns["density"]            # numpy column over all features
    res.examples(7, "top")            # [Example(seq, pos, value, token_ids, tokens, values)]
    res.intervals(7, "interval")      # [IntervalGroup(lo, hi, count, share, examples)]
    res.logit_lens(7, "folded")       # LogitLens(top, bottom, hist_counts, hist_edges)
    res.correlated(7), res.decoder_neighbours(7), res.neurons(7), res.density_histogram()

This module is numpy-only (no torch), so the UI can read results on any thread quickly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from mistudio.errors import UserError

COMPLETE_MARKER = "COMPLETE"
META_FILE = "meta.json"
VOCAB_FILE = "vocab.json"
#: Example groups: the top examples and the two interval-sampling schemes.
EXAMPLE_GROUPS = ("top", "interval", "quantile")
#: Logit-lens conventions: ``raw`` = the decoder direction through W_U as stored (sae_vis);
#: ``folded`` = the final norm's gain folded into W_U first (TransformerLens).
LOGIT_CONVENTIONS = ("raw", "folded")
HIST_BINS = 50
#: Keys of ``meta.json`` (the analysis records what it read and how).
META_FIELDS = (
    "analysis_id", "sae_id", "sae_folder", "architecture", "d_in", "d_sae", "hook_name",
    "hook_type", "model_id", "model_name", "model_folder", "tokenization", "activation_path",
    "n_tokens", "n_seq", "seq_len", "max_tokens", "seed", "context_before", "context_after",
    "n_top", "n_intervals", "n_quantiles", "per_interval", "n_neighbours", "n_random",
    "excluded_token_ids", "mean_l0", "dead", "logit_lens", "density_histogram", "versions",
    "elapsed_s", "tokens_per_s", "created_at",
)


@dataclass
class Example:
    """One context window around an analysed token."""

    seq: int  # tokenization row
    pos: int  # position of the centre token in the row
    value: float  # the feature's activation at the centre token
    token_ids: list[int]  # window tokens (positions before the row's start are dropped)
    tokens: list[str]  # their display strings
    values: list[float]  # the feature's activation on each window token
    centre: int  # index of the centre token in ``token_ids``


@dataclass
class IntervalGroup:
    lo: float  # exclusive lower bound (interval scheme) / smallest value (quantiles)
    hi: float  # inclusive upper bound / largest value
    count: int  # active tokens in the group
    share: float  # count / firing count: "contains x% of active tokens"
    examples: list[Example] = field(default_factory=list)


@dataclass
class LogitLens:
    convention: str
    top: list[tuple[int, str, float]]  # (token id, string, logit), largest first
    bottom: list[tuple[int, str, float]]  # smallest first
    hist_counts: np.ndarray  # [50]
    hist_edges: np.ndarray  # [51]


class AnalysisResults:
    """Read-only view of a completed analysis folder (see the module docstring)."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        if not (self.folder / COMPLETE_MARKER).exists():
            raise UserError(f"The feature analysis in {self.folder} is not complete.",
                            hint="Run the analysis again (it resumes where it stopped).")
        self.meta: dict = json.loads((self.folder / META_FILE).read_text(encoding="utf-8"))
        self._arrays: dict[str, np.ndarray] = {}

    # ------------------------------------------------------------------ basics

    @property
    def analysis_id(self) -> str:
        return str(self.meta.get("analysis_id", ""))

    @property
    def d_sae(self) -> int:
        return int(self.meta["d_sae"])

    @property
    def n_tokens(self) -> int:
        return int(self.meta["n_tokens"])

    def array(self, name: str) -> np.ndarray:
        """A named array file (memory-mapped), e.g. ``array("max_act")``."""
        arr = self._arrays.get(name)
        if arr is None:
            path = self.folder / f"{name}.npy"
            if not path.exists():
                raise KeyError(f"the analysis has no array {name!r}")
            arr = np.load(path, mmap_mode="r")
            self._arrays[name] = arr
        return arr

    def has(self, name: str) -> bool:
        return (self.folder / f"{name}.npy").exists()

    @cached_property
    def vocab(self) -> list[str]:
        return json.loads((self.folder / VOCAB_FILE).read_text(encoding="utf-8"))

    def token_string(self, token_id: int) -> str:
        vocab = self.vocab
        return vocab[token_id] if 0 <= token_id < len(vocab) else f"<{token_id}>"

    @cached_property
    def columns(self) -> dict[str, np.ndarray]:
        """Per-feature numbers as numpy columns (in memory): ``firing_count``, ``density``,
        ``log10_density`` (-inf when dead), ``max_act``, ``mean_act`` (of non-zero
        activations, 0 when dead), ``dead`` (bool)."""
        count = np.asarray(self.array("firing_count"), dtype=np.int64)
        n = max(self.n_tokens, 1)
        density = count / n
        with np.errstate(divide="ignore"):
            log_density = np.log10(density)
        mean = np.divide(np.asarray(self.array("sum_act")), count,
                         out=np.zeros(len(count)), where=count > 0)
        return {"feature": np.arange(len(count)), "firing_count": count, "density": density,
                "log10_density": log_density, "max_act": np.asarray(self.array("max_act")),
                "mean_act": mean, "dead": count == 0}

    @property
    def dead_features(self) -> np.ndarray:
        return np.flatnonzero(self.columns["dead"])

    def check_feature(self, feature: int) -> int:
        f = int(feature)
        if not 0 <= f < self.d_sae:
            raise UserError(f"Feature {f} does not exist: the SAE has {self.d_sae:,} features "
                            f"(0..{self.d_sae - 1}).", hint="Pick an index in range.")
        return f

    # ------------------------------------------------------------------ histograms

    def histogram(self, feature: int) -> tuple[np.ndarray, np.ndarray]:
        """(counts [50], edges [51]) of the feature's non-zero activations over (0, max]."""
        f = self.check_feature(feature)
        counts = np.asarray(self.array("act_hist")[f])
        return counts, np.linspace(0.0, float(self.array("max_act")[f]), HIST_BINS + 1)

    def density_histogram(self) -> tuple[np.ndarray, np.ndarray]:
        """(counts, edges) of log10(density) over the features that fired."""
        h = self.meta.get("density_histogram") or {"counts": [], "edges": []}
        return np.asarray(h["counts"], dtype=np.int64), np.asarray(h["edges"], dtype=float)

    # ------------------------------------------------------------------ examples

    @property
    def window(self) -> tuple[int, int]:
        return int(self.meta["context_before"]), int(self.meta["context_after"])

    def _example(self, seq: int, pos: int, value: float, window_values) -> Example:
        before, after = self.window
        tokens = self.array("tokens")
        row = tokens[seq]
        lo, hi = pos - before, pos + after + 1
        start, end = max(lo, 0), min(hi, len(row))
        ids = [int(t) for t in row[start:end]]
        vals = [float(v) for v in np.asarray(window_values[start - lo:end - lo], dtype=np.float32)]
        return Example(seq=int(seq), pos=int(pos), value=float(value), token_ids=ids,
                       tokens=[self.token_string(t) for t in ids], values=vals,
                       centre=pos - start)

    def examples(self, feature: int, group: str = "top", index: int | None = None
                 ) -> list[Example]:
        """Examples of ``group`` ('top', 'interval', 'quantile'); for the two schemes
        ``index`` picks one interval (None: all, lowest interval first)."""
        f = self.check_feature(feature)
        if group not in EXAMPLE_GROUPS:
            raise UserError(f"Unknown example group {group!r}.",
                            hint=f"Use one of {', '.join(EXAMPLE_GROUPS)}.")
        seq = np.asarray(self.array(f"{group}_seq")[f])
        pos = np.asarray(self.array(f"{group}_pos")[f])
        val = np.asarray(self.array(f"{group}_value")[f])
        win = self.array(f"{group}_window")[f]
        if group != "top":
            if index is not None:
                seq, pos, val, win = seq[index], pos[index], val[index], win[index]
            else:
                seq, pos, val = seq.reshape(-1), pos.reshape(-1), val.reshape(-1)
                win = np.asarray(win).reshape(-1, win.shape[-1])
        return [self._example(int(s), int(p), float(v), win[i])
                for i, (s, p, v) in enumerate(zip(seq, pos, val)) if s >= 0]

    def intervals(self, feature: int, scheme: str = "interval") -> list[IntervalGroup]:
        """The interval groups of one scheme, lowest first. ``interval``: sae_vis's equal
        widths over (0, max], zeros excluded, with each interval's share of active tokens;
        ``quantile``: delphi's equal-count rank groups."""
        f = self.check_feature(feature)
        if scheme not in ("interval", "quantile"):
            raise UserError(f"Unknown interval scheme {scheme!r}.",
                            hint="Use 'interval' (equal widths) or 'quantile' (ranks).")
        bounds = np.asarray(self.array(f"{scheme}_bounds")[f], dtype=float)
        fired = int(self.array("firing_count")[f])
        n = len(bounds) - 1
        counts = np.asarray(self.array(f"{scheme}_counts")[f], dtype=np.int64)
        groups = []
        for i in range(n):
            share = counts[i] / fired if fired else 0.0
            groups.append(IntervalGroup(float(bounds[i]), float(bounds[i + 1]), int(counts[i]),
                                        float(share), self.examples(f, scheme, i)))
        return groups

    # ------------------------------------------------------------------ weights-based

    def logit_lens(self, feature: int, convention: str = "raw") -> LogitLens:
        f = self.check_feature(feature)
        if convention not in LOGIT_CONVENTIONS:
            raise UserError(f"Unknown logit-lens convention {convention!r}.",
                            hint="Use 'raw' (W_U as stored, sae_vis) or 'folded' (final-norm "
                            "gain folded into W_U, TransformerLens).")

        def pairs(which):
            ids = self.array(f"logit_{which}_ids_{convention}")[f]
            vals = self.array(f"logit_{which}_values_{convention}")[f]
            return [(int(i), self.token_string(int(i)), float(v)) for i, v in zip(ids, vals)]

        lo, hi = (float(x) for x in self.array(f"logit_range_{convention}")[f])
        return LogitLens(convention, pairs("top"), pairs("bottom"),
                         np.asarray(self.array(f"logit_hist_{convention}")[f]),
                         np.linspace(lo, hi, HIST_BINS + 1))

    def _neighbours(self, prefix: str, feature: int) -> list[tuple[int, float]]:
        f = self.check_feature(feature)
        ids = self.array(f"{prefix}_ids")[f]
        vals = self.array(f"{prefix}_values")[f]
        return [(int(i), float(v)) for i, v in zip(ids, vals) if i >= 0]

    def correlated(self, feature: int) -> list[tuple[int, float]]:
        """(feature, Pearson r over the analysed tokens), largest first."""
        return self._neighbours("corr", feature)

    def decoder_neighbours(self, feature: int) -> list[tuple[int, float]]:
        """(feature, cosine of the decoder directions), largest first."""
        return self._neighbours("cos", feature)

    def neurons(self, feature: int) -> list[tuple[int, float, float]]:
        """(MLP neuron, decoder entry, % of the row's L1 norm), largest |entry| first; empty
        for SAEs whose hook is not in the MLP-neuron basis."""
        f = self.check_feature(feature)
        if not self.has("neuron_ids"):
            return []
        return [(int(i), float(v), float(p)) for i, v, p in
                zip(self.array("neuron_ids")[f], self.array("neuron_values")[f],
                    self.array("neuron_l1_pct")[f]) if i >= 0]

    # ------------------------------------------------------------------ random contexts

    def random_contexts(self, feature: int | None = None) -> list[Example]:
        """The random contexts (the same for every feature); with ``feature``, each window's
        values are that feature's activations (0 mostly), else each token's L0 is shown."""
        seqs, poss = self.array("random_seq"), self.array("random_pos")
        offsets = np.asarray(self.array("random_codes_offsets"))
        feats = self.array("random_codes_features")
        vals = self.array("random_codes_values")
        W = sum(self.window) + 1
        out = []
        for r, (s, p) in enumerate(zip(seqs, poss)):
            win = np.zeros(W, dtype=np.float32)
            for w in range(W):
                a, b = offsets[r * W + w], offsets[r * W + w + 1]
                if feature is None:
                    win[w] = b - a
                else:
                    hit = np.flatnonzero(np.asarray(feats[a:b]) == feature)
                    win[w] = float(vals[a + hit[0]]) if len(hit) else 0.0
            centre = win[self.window[0]]
            out.append(self._example(int(s), int(p), float(centre), win))
        return out


def is_complete(folder: str | Path) -> bool:
    return (Path(folder) / COMPLETE_MARKER).exists()
