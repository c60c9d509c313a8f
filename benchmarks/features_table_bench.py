"""Feature table: sort and filter 65,536 analysis rows, and how long the GUI thread stalls.

Ours (``FeatureTableModel`` over ``FeatureTable`` numpy columns) against a plain
``QSortFilterProxyModel`` over a plain ``QAbstractTableModel`` of the same rows, both shown
in a ``QTableView`` in the same process. Each operation is posted to the event loop while a
5 ms ``QTimer`` probe ticks (the probe of ``runs_table_bench.py``): the longest gap between
ticks is the longest the window could not repaint or react.

Also UMAP cold/warm for the feature map (``--umap``): a fresh process with an empty numba
cache (cold: compile + run), then a fresh process with that cache (warm), on random
decoder rows of 24,576 and 65,536 x 768.

    QT_QPA_PLATFORM=offscreen python benchmarks/features_table_bench.py [--rows 65536] [--umap]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np

WORDS = ("the capital city river French numbers dates code Python html quote comma year "
         "name king war music cell gene protein star planet energy law court vote church "
         "film song team goal ball").split()


def synthetic_rows(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    density = np.exp(rng.normal(-7, 2, n)).clip(0, 1)
    density[rng.random(n) < 0.05] = 0.0
    mx = np.where(density > 0, rng.gamma(2.0, 3.0, n), np.nan)
    labels = np.full(n, "", dtype=object)
    lab = rng.random(n) < 0.1
    labels[lab] = [" ".join(rng.choice(WORDS, 3)) for _ in range(int(lab.sum()))]
    return {
        "index": np.arange(n, dtype=np.int64),
        "label": labels,
        "density": density,
        "max": mx,
        "mean": mx * rng.uniform(0.2, 0.6, n),
        "top_logits": np.array([" ".join(rng.choice(WORDS, 5)) for _ in range(n)], dtype=object),
        "top_token": np.array([str(rng.choice(WORDS)) for _ in range(n)], dtype=object),
        "favourite": rng.random(n) < 0.01,
        # auto-interp explanations on a fifth of the features (a run over the live ones)
        "explanation": np.array([f"{' '.join(rng.choice(WORDS, 2))} tokens in "
                                 f"{' '.join(rng.choice(WORDS, 3))} contexts"
                                 if rng.random() < 0.2 else "" for _ in range(n)], dtype=object),
    }


def plain_model(cols):
    from PySide6.QtCore import QAbstractTableModel, QModelIndex, Qt

    from mistudio.ui.features.table_data import COLUMNS

    keys = [c.key for c in COLUMNS]
    rows = [tuple(v.item() if hasattr(v, "item") else v for v in r)
            for r in zip(*(cols[k] for k in keys))]

    class PlainModel(QAbstractTableModel):
        def rowCount(self, parent=QModelIndex()):
            return 0 if parent.isValid() else len(rows)

        def columnCount(self, parent=QModelIndex()):
            return 0 if parent.isValid() else len(keys)

        def data(self, index, role=Qt.ItemDataRole.DisplayRole):
            if role == Qt.ItemDataRole.DisplayRole:
                return rows[index.row()][index.column()]
            return None

    return PlainModel()


def density_proxy():
    from PySide6.QtCore import QSortFilterProxyModel

    class DensityProxy(QSortFilterProxyModel):
        lo, hi = None, None

        def filterAcceptsRow(self, row, parent):
            if self.lo is None:
                return super().filterAcceptsRow(row, parent)
            d = self.sourceModel().index(row, 2, parent).data()
            return d is not None and self.lo <= d <= self.hi

    return DensityProxy()


def stalled(app, op) -> tuple[float, float]:
    """(longest gap between 5 ms probe ticks, seconds op took) for ``op`` run from the loop."""
    from PySide6.QtCore import QTimer

    ticks, done = [], []
    probe = QTimer()
    probe.setInterval(5)
    probe.timeout.connect(lambda: ticks.append(time.perf_counter()))

    def run():
        t = time.perf_counter()
        op()
        done.append(time.perf_counter() - t)

    probe.start()
    t0 = time.perf_counter()
    ticks.append(t0)
    QTimer.singleShot(0, run)
    while not done or time.perf_counter() - t0 < done[0] + 0.03:
        app.processEvents()
        time.sleep(0.001)
    probe.stop()
    ticks.append(time.perf_counter())
    return max(b - a for a, b in zip(ticks, ticks[1:])), done[0]


def table_bench(n: int, repeat: int) -> None:
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QApplication, QTableView

    from mistudio.ui.features.table_data import COLUMNS, FeatureFilter, FeatureTable
    from mistudio.ui.features.table_model import FeatureTableModel

    app = QApplication.instance() or QApplication([])
    cols = synthetic_rows(n)
    ours = FeatureTableModel()
    ours.set_table(FeatureTable(dict(cols)))
    base_src = plain_model(cols)
    proxy = density_proxy()
    proxy.setSourceModel(base_src)
    proxy.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
    proxy.setFilterKeyColumn(1)
    views = []
    for model in (ours, proxy):
        v = QTableView()
        v.setModel(model)
        v.resize(900, 600)
        v.show()
        views.append(v)
    app.processEvents()
    desc = Qt.SortOrder.DescendingOrder
    asc = Qt.SortOrder.AscendingOrder
    label_rows = cols["label"] != ""
    want_search = {i for i, s in enumerate(cols["label"]) if "capital" in s}
    want_explained = {i for i, s in enumerate(cols["explanation"]) if "river" in s}
    keys = [c.key for c in COLUMNS]

    ops = [
        ("sort by density (desc)",
         lambda: ours.sort(2, desc), lambda: proxy.sort(2, desc)),
        ("sort by label", lambda: ours.sort(1, asc), lambda: proxy.sort(1, asc)),
        ("search 'capital' in labels",
         lambda: ours.apply(FeatureFilter(query="capital")),
         lambda: proxy.setFilterFixedString("capital")),
        ("search 'river' (explanations)",
         lambda: ours.apply(FeatureFilter(query="river")),
         lambda: (proxy.setFilterKeyColumn(keys.index("explanation")),
                  proxy.setFilterFixedString("river"))),
        ("density in [1e-4, 1e-2]",
         lambda: ours.apply(FeatureFilter(density_min=1e-4, density_max=1e-2)),
         lambda: (proxy.setFilterFixedString(""), setattr(proxy, "lo", 1e-4),
                  setattr(proxy, "hi", 1e-2), proxy.invalidateFilter())),
        ("clear filters", lambda: ours.apply(FeatureFilter()),
         lambda: (setattr(proxy, "lo", None), proxy.invalidateFilter())),
    ]
    print(f"{n:,} feature rows in a shown QTableView; ms. 'ours' = first call (a column's first "
          f"sort builds its cached order) / median of {repeat}; 'stall' = longest GUI-thread "
          "gap, worst of the runs; ratio = QSFPM stall / our stall")
    print(f"{'operation':32s} {'ours first/median':>18s} {'stall':>7s} {'QSFPM':>9s} "
          f"{'stall':>9s} {'ratio':>7s}")
    for name, ours_op, base_op in ops:
        o_t, o_s, b_t, b_s = [], [], [], []
        for _ in range(repeat):
            s, t = stalled(app, ours_op)
            o_t.append(t), o_s.append(s)
        for _ in range(max(1, repeat // 2)):
            s, t = stalled(app, base_op)
            b_t.append(t), b_s.append(s)
        if name.startswith("search"):  # same rows either way (ours also searches other columns)
            want = want_search if "capital" in name else want_explained
            got = {int(ours.table.columns["index"][r]) for r in ours.order}
            assert want <= got and proxy.rowCount() == len(want)
        mo, bo = statistics.median(o_t), statistics.median(b_t)
        so, sb = max(o_s), statistics.median(b_s)
        print(f"{name:32s} {o_t[0] * 1e3:8.1f} /{mo * 1e3:7.1f} {so * 1e3:7.1f} "
              f"{bo * 1e3:9.1f} {sb * 1e3:9.1f} {sb / so:6.0f}x")
    print(f"(labelled rows: {int(label_rows.sum()):,}; explained rows: "
          f"{int((cols['explanation'] != '').sum()):,}; shown now: ours {ours.rowCount():,}, "
          f"proxy {proxy.rowCount():,})")
    for v in views:
        v.close()
    map_bench(app, cols, repeat)


def map_bench(app, cols, repeat: int) -> None:
    """The feature map with every feature as a point: showing it, colouring it, panning."""
    from mistudio.ui.features.map_view import FeatureMapPlot

    n = len(cols["index"])
    coords = np.random.default_rng(1).normal(size=(n, 2)).astype(np.float32)
    plot = FeatureMapPlot()
    plot.resize(900, 700)
    plot.show()
    app.processEvents()
    ops = [("map: set 65k points", lambda: (plot.set_points(coords), app.processEvents())),
           ("map: colour by density", lambda: (plot.colour_by_density(cols["density"]),
                                               app.processEvents())),
           ("map: colour by label", lambda: (plot.colour_by_mask(cols["label"] != "", "label"),
                                             app.processEvents())),
           ("map: pan (one step, repaint)", lambda: (plot.viewbox.translateBy(x=0.05),
                                                     plot.viewport().repaint()))]
    print(f"{'map view (' + format(n, ',') + ' points)':32s} {'first/median ms':>18s} {'stall':>7s}")
    for name, op in ops:
        times, stalls = [], []
        for _ in range(repeat):
            s, t = stalled(app, op)
            times.append(t), stalls.append(s)
        print(f"{name:32s} {times[0] * 1e3:8.1f} /{statistics.median(times) * 1e3:7.1f} "
              f"{max(stalls) * 1e3:7.1f}")
    plot.close()


UMAP_CHILD = """
import json, sys, time
t0, c0 = time.perf_counter(), time.process_time()
from mistudio.feature_map.projection import configure_numba_cache, project
configure_numba_cache(sys.argv[2])
import numpy as np
rows = np.random.default_rng(0).normal(size=(int(sys.argv[1]), 768)).astype(np.float32)
t1 = time.perf_counter()
import umap  # noqa: F401  (numba compiles or loads its kernels here and on first call)
t2 = time.perf_counter()
coords = project(rows, "umap")
t3 = time.perf_counter()
print(json.dumps({"import_s": t2 - t1, "fit_s": t3 - t2, "total_s": t3 - t0,
                  "cpu_s": time.process_time() - c0}))
"""


def umap_bench(sizes: list[int]) -> None:
    print("\nUMAP feature map (PCA to 50 dims, then UMAP), fresh process each (CPU time is the "
          "figure to trust on a shared machine):", flush=True)
    for n in sizes:
        cache = tempfile.mkdtemp(prefix="numba-cache-")
        out = {}
        for label in ("cold", "warm"):
            proc = subprocess.run([sys.executable, "-c", UMAP_CHILD, str(n), cache],
                                  capture_output=True, text=True, check=True)
            out[label] = json.loads(proc.stdout.strip().splitlines()[-1])
        c, w = out["cold"], out["warm"]
        print(f"{n:>6,} rows: cold {c['total_s']:6.1f} s wall, {c['cpu_s']:6.1f} s CPU "
              f"(import {c['import_s']:.1f} s, fit incl. compile {c['fit_s']:.1f} s) | warm "
              f"{w['total_s']:6.1f} s wall, {w['cpu_s']:6.1f} s CPU (import {w['import_s']:.1f} s, "
              f"fit {w['fit_s']:.1f} s) | cold/warm x{c['total_s'] / w['total_s']:.2f} wall, "
              f"x{c['cpu_s'] / w['cpu_s']:.2f} CPU", flush=True)


def main() -> None:
    warnings.filterwarnings("ignore", category=DeprecationWarning)  # invalidateFilter (Qt 6.10)
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=65536)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--umap", action="store_true", help="also time UMAP cold/warm")
    ap.add_argument("--umap-only", action="store_true")
    ap.add_argument("--umap-sizes", default="24576,65536")
    args = ap.parse_args()
    if not args.umap_only:
        table_bench(args.rows, args.repeat)
    if args.umap or args.umap_only:
        umap_bench([int(s) for s in args.umap_sizes.split(",")])


if __name__ == "__main__":
    main()
