"""The feature table's data, sort and filter: numpy columns, no Qt (tests drive it directly).

65,536 rows must sort and filter in well under 100 ms on the GUI thread. A generic
``QSortFilterProxyModel`` calls back into Python for every comparison (~n log n ``data()``
calls, seconds at this size); here a sort is one cached ``argsort`` per column and a filter
is a few vectorised masks, so both are a few milliseconds (benchmarks/features_table_bench.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Column:
    key: str
    title: str
    kind: str  # int | float | str | bool
    tip: str = ""


COLUMNS = (
    Column("index", "#", "int", "Feature index in the SAE"),
    Column("label", "Label", "str", "Your label (Label field of the feature panel, or imported)"),
    Column("density", "Density", "float", "Fraction of tokens on which the feature fires"),
    Column("max", "Max", "float", "Largest activation seen"),
    Column("mean", "Mean", "float", "Mean of the non-zero activations"),
    Column("top_logits", "Top logit tokens", "str", "Tokens the decoder direction promotes most"),
    Column("top_token", "Top activating token", "str", "The token at the feature's largest activation"),
    Column("explanation", "Explanation", "str",
           "Auto-interpretation: the newest explanation an instruct model wrote (Feature panel)"),
    Column("favourite", "★", "bool", "Favourite"),
)
KEYS = tuple(c.key for c in COLUMNS)


@dataclass
class FeatureFilter:
    density_min: float | None = None
    density_max: float | None = None
    alive: str = "all"  # all | alive | dead
    labelled: bool = False
    favourites: bool = False
    members: np.ndarray | None = None  # feature indices of a list
    query: str = ""

    def is_empty(self) -> bool:
        return (self.density_min is None and self.density_max is None and self.alive == "all"
                and not self.labelled and not self.favourites and self.members is None
                and not self.query.strip())


@dataclass
class FeatureTable:
    """Columns of equal length, one row per feature (row i is feature ``index[i]``)."""

    columns: dict[str, np.ndarray]
    notes: np.ndarray = field(default=None)  # searched, not shown
    search_extra: np.ndarray = field(default=None)  # searched, not shown (frequent tokens)
    _sort_cache: dict = field(default_factory=dict, repr=False)
    _haystack: list | None = field(default=None, repr=False)

    def __post_init__(self):
        n = len(self.columns["index"])
        for key in KEYS:
            if key not in self.columns:
                self.columns[key] = (np.zeros(n, bool) if key == "favourite"
                                     else np.full(n, "", dtype=object) if key in ("label", "explanation", "top_logits", "top_token")
                                     else np.full(n, np.nan, np.float32))
        if self.notes is None:
            self.notes = np.full(n, "", dtype=object)
        if self.search_extra is None:
            self.search_extra = np.full(n, "", dtype=object)
        idx = np.asarray(self.columns["index"], dtype=np.int64)
        # feature index -> row, as an array (a dict of 65k ints costs a Python loop)
        self._row_of = np.full(int(idx.max()) + 1 if n else 0, -1, np.int64)
        self._row_of[idx] = np.arange(n)

    @classmethod
    def from_rows(cls, rows: list[dict]) -> "FeatureTable":
        cols = {}
        for c in COLUMNS:
            values = [r.get(c.key) for r in rows]
            if c.kind == "int":
                cols[c.key] = np.asarray(values, dtype=np.int64)
            elif c.kind == "float":
                cols[c.key] = np.asarray([np.nan if v is None else v for v in values], np.float64)
            elif c.kind == "bool":
                cols[c.key] = np.asarray([bool(v) for v in values])
            else:
                cols[c.key] = np.asarray([v or "" for v in values], dtype=object)
        return cls(cols)

    def __len__(self) -> int:
        return len(self.columns["index"])

    def row_of(self, feature_index: int) -> int | None:
        f = int(feature_index)
        if not 0 <= f < len(self._row_of) or self._row_of[f] < 0:
            return None
        return int(self._row_of[f])

    def rows_of(self, feature_indices) -> np.ndarray:
        """Rows of the features (those not in the table left out), vectorised."""
        f = np.asarray(feature_indices, dtype=np.int64).ravel()
        f = f[(f >= 0) & (f < len(self._row_of))]
        r = self._row_of[f]
        return r[r >= 0]

    # -------------------------------------------------------- user edits

    def set_annotation(self, feature_index: int, *, label=None, notes=None, favourite=None):
        r = self.row_of(feature_index)
        if r is None:
            return
        if label is not None:
            self.columns["label"][r] = label
            self._sort_cache.pop("label", None)
        if notes is not None:
            self.notes[r] = notes
        if favourite is not None:
            self.columns["favourite"][r] = bool(favourite)
            self._sort_cache.pop("favourite", None)
        self._haystack = None

    def set_annotations(self, labels: dict[int, str], notes: dict[int, str], favourites: set[int]):
        """Replace every row's label/notes/favourite (rows not named are cleared)."""
        n = len(self)
        self.columns["label"] = self._text_column(labels)
        self.notes = self._text_column(notes)
        fav = np.zeros(n, bool)
        fav[self.rows_of(np.fromiter(favourites, np.int64, len(favourites)))] = True
        self.columns["favourite"] = fav
        for key in ("label", "favourite"):
            self._sort_cache.pop(key, None)
        self._haystack = None

    def _text_column(self, texts: dict[int, str]) -> np.ndarray:
        """A text column from {feature index: text}; "" for the rest (loops over the dict
        only: a few labelled features, not every row)."""
        col = np.full(len(self), "", dtype=object)
        for f, text in texts.items():
            r = self.row_of(f)
            if r is not None:
                col[r] = text
        return col

    def set_explanations(self, texts: dict[int, str]) -> None:
        """Replace every row's explanation (rows not named are cleared)."""
        self.columns["explanation"] = self._text_column(texts)
        self._sort_cache.pop("explanation", None)
        self._haystack = None

    def set_explanation(self, feature_index: int, text: str) -> None:
        r = self.row_of(feature_index)
        if r is not None:
            self.columns["explanation"][r] = text
            self._sort_cache.pop("explanation", None)
            self._haystack = None

    # -------------------------------------------------------- sort & filter

    def sort_rank(self, key: str) -> np.ndarray:
        """Row positions in ascending order of ``key`` (stable; NaN and empty strings last)."""
        rank = self._sort_cache.get(key)
        if rank is None:
            col = self.columns[key]
            if col.dtype == object:
                low = np.array([s.lower() for s in col], dtype=str)
                # empty last: sort (is_empty, text) with one lexsort
                rank = np.lexsort((low, low == ""))
            elif col.dtype.kind == "f":
                rank = np.argsort(np.where(np.isnan(col), np.inf, col), kind="stable")
            else:
                rank = np.argsort(col, kind="stable")
            self._sort_cache[key] = rank
        return rank

    def haystack(self) -> list[str]:
        if self._haystack is None:
            c = self.columns
            self._haystack = [f"{a}\x00{b}\x00{t}\x00{k}\x00{e}\x00{x}".lower()
                              for a, b, t, k, e, x in
                              zip(c["label"], self.notes, c["top_logits"], c["top_token"],
                                  self.search_extra, c["explanation"])]
        return self._haystack

    def mask(self, flt: FeatureFilter) -> np.ndarray:
        c = self.columns
        m = np.ones(len(self), bool)
        dens = c["density"]
        if flt.density_min is not None:
            m &= dens >= flt.density_min
        if flt.density_max is not None:
            m &= dens <= flt.density_max
        if flt.alive == "alive":
            m &= dens > 0
        elif flt.alive == "dead":
            m &= ~(dens > 0)
        if flt.labelled:
            m &= c["label"] != ""
        if flt.favourites:
            m &= c["favourite"]
        if flt.members is not None:
            m &= np.isin(c["index"], flt.members)
        q = flt.query.strip().lower()
        if q:
            hits = np.fromiter((q in h for h in self.haystack()), bool, len(self))
            if q.lstrip("#").isdigit():  # a number, with or without a leading hash, finds that feature
                hits |= c["index"] == int(q.lstrip("#"))
            m &= hits
        return m

    def view(self, flt: FeatureFilter, sort_key: str = "index", descending: bool = False
             ) -> np.ndarray:
        """Row positions to show, filtered and sorted."""
        rank = self.sort_rank(sort_key)
        if descending:
            # reverse, but keep NaN / empty at the end as in ascending order
            col = self.columns[sort_key]
            missing = (col == "") if col.dtype == object else (
                np.isnan(col) if col.dtype.kind == "f" else np.zeros(len(col), bool))
            miss = missing[rank]
            rank = np.concatenate([rank[~miss][::-1], rank[miss]])
        if flt.is_empty():
            return rank
        return rank[self.mask(flt)[rank]]
