"""The window under load: open time, each tab's first paint, and the longest GUI stall.

A data folder of realistic size (``scripts/make_load_folder.py``: 100 datasets, 50 models,
200 activation sets, 500 trainings of 2,000 metric points, 20 analyses) against an empty one,
in the same process, interleaved, with the stall probe of ``runs_table_bench.py`` running (a
5 ms ``QTimer``; the longest gap between its ticks is the longest the window could not repaint
or react). For each folder and each repeat:

- **open**: ``build_window`` + ``show`` until the first paint of the window (in-process; the
  first round is a warm-up that pays the imports, then discarded);
- **per tab**, in the tab bar's order: from ``setCurrentIndex`` to the first paint of the tab's
  page (the target: 100 ms), then until its list holds its rows ("rows"; loaded in the
  background, so the window stays live meanwhile), and the longest stall over both;
- **cold open**: a fresh process per folder (``startup_bench.py``'s measurement), the time a
  user waits from launch (the target: 1 s).

Targets: the window opens in <= 1 s and each tab paints within 100 ms. Ratios load/empty are
printed; absolute numbers on a shared machine are noisy.

    QT_QPA_PLATFORM=offscreen python benchmarks/load_bench.py --folder DIR [--repeats 3]
    (without --folder a folder of the default size is generated first, a few minutes)
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TARGET_OPEN_S = 1.0
PAGE_SIZE = 50  # the Training tab's first page of cards (ui/training/card_pages.py)
TARGET_PAINT_S = 0.100


def rows_shown(title: str, page) -> int | None:
    """How many rows a tab's main list shows now (None: the tab has no such list)."""
    inner = page.inner
    if inner is None:
        return None
    if title == "Datasets":
        return inner.list_model.rowCount()
    if title == "Models":
        return inner.models_list.count()
    if title == "Training":
        return len(inner.cards.cards)
    if title == "Features":
        return inner.table.model.rowCount()
    if title == "Steering":
        return inner.model_combo.count()
    if title == "Templates":
        return inner.cards.count()
    return None


class StallProbe:
    """Ticks every 5 ms on the GUI thread; ``longest(t0, t1)`` is the longest gap between
    ticks in that span (the ends count as ticks)."""

    def __init__(self):
        from PySide6.QtCore import QTimer

        self.ticks: list[float] = []
        self.timer = QTimer()
        self.timer.setInterval(5)
        self.timer.timeout.connect(lambda: self.ticks.append(time.perf_counter()))
        self.timer.start()

    def longest(self, t0: float, t1: float) -> float:
        ts = [t0] + [t for t in self.ticks if t0 < t < t1] + [t1]
        return max(b - a for a, b in zip(ts, ts[1:]))

    def stop(self) -> None:
        self.timer.stop()


class FirstPaint:
    """Records the time of the first paint event a widget gets."""

    def __init__(self, widget):
        from PySide6.QtCore import QEvent, QObject

        outer = self

        class Filter(QObject):
            def eventFilter(self, obj, event):
                if event.type() == QEvent.Type.Paint and outer.at is None:
                    outer.at = time.perf_counter()
                return False

        self.at: float | None = None
        self.widget = widget
        self.filter = Filter()
        widget.installEventFilter(self.filter)

    def remove(self) -> None:
        self.widget.removeEventFilter(self.filter)


def pump_until(app, cond, timeout: float) -> bool:
    deadline = time.perf_counter() + timeout
    while not cond():
        if time.perf_counter() > deadline:
            return False
        app.processEvents()
        time.sleep(0.001)  # the probe's resolution; the loop itself never blocks longer
    return True


GC_FREEZE = [True]  # as the app's window does (MainWindow.freeze_startup_objects); --no-gc-freeze


def measure_window(app, folder: str, probe: StallProbe) -> dict:
    from mistudio.ui.app import build_window

    t0 = time.perf_counter()
    window = build_window(folder, remember_layout=False)
    window.freeze_startup_objects = GC_FREEZE[0]
    first = FirstPaint(window)
    window.show()
    pump_until(app, lambda: first.at is not None, 30)
    out = {"open": first.at - t0, "tabs": {}}
    first.remove()
    pump_until(app, lambda: False, 0.3)  # what the window does right after it shows
    out["open_stall"] = probe.longest(first.at, time.perf_counter())
    tabs = window.tabs
    for i in range(tabs.count()):
        page = tabs.widget(i)
        title = tabs.tabText(i)
        if i == tabs.currentIndex():  # the tab the window opens on is built by the open
            t, painted = t0, first.at
        else:
            paint = FirstPaint(page)
            t = time.perf_counter()
            tabs.setCurrentIndex(i)
            paint_inner = FirstPaint(page.inner) if page.inner is not None else paint
            pump_until(app, lambda: paint_inner.at is not None or paint.at is not None, 30)
            painted = min(x for x in (paint.at, paint_inner.at) if x is not None)
            paint.remove()
            paint_inner.remove()
        expected = EXPECTED.get(folder, {}).get(title)
        done = pump_until(app, lambda: expected is None or (rows_shown(title, page) or 0)
                          >= expected, 60)
        t_rows = time.perf_counter()
        pump_until(app, lambda: False, 0.2)  # anything the tab does after its rows arrive
        out["tabs"][title] = {"paint": painted - t, "rows": (t_rows - t) if done else None,
                              "stall": probe.longest(t, time.perf_counter()),
                              "n": rows_shown(title, page)}
    window.skip_close_confirmation = True
    window.close()
    pump_until(app, lambda: False, 0.05)
    window.deleteLater()
    app.processEvents()
    return out


EXPECTED: dict[str, dict[str, int]] = {}  # folder -> tab -> rows its list must show


def cold_open(folder: str) -> float:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from startup_bench import WINDOW, _measure

    t, _wall, _line = _measure(WINDOW, "SHOWN", folder,
                               tree=str(Path(__file__).resolve().parents[1]))  # this checkout
    return t


FIRST_OPEN = r"""
import sys, time
sys.path.insert(0, sys.argv[3])
from load_bench import FirstPaint, StallProbe, pump_until
import mistudio.ui.main_window as mw
if sys.argv[2] == "off":  # the window as before: no tab module imported ahead of the click
    mw.import_tab_module = lambda name: None
from mistudio.ui.app import build_window, create_app
app = create_app([])
probe = StallProbe()
w = build_window(sys.argv[1], remember_layout=False)
w.show()
pump_until(app, lambda: False, 3.0)  # the user looks at the window before clicking
page = w.lazy_tabs["Features"]
paint = FirstPaint(page)
t = time.perf_counter()
w.show_tab("Features")
pump_until(app, lambda: paint.at is not None, 60)
pump_until(app, lambda: False, 0.3)
print("FIRST", paint.at - t, probe.longest(t, time.perf_counter()), "pyqtgraph" in sys.modules)
w.skip_close_confirmation = True
w.close()
"""


def first_open(repeats: int) -> None:
    """The Features tab's first open 3 s after the window shows, in a fresh process each:
    with the tab modules imported on a thread at start-up (now) and without (before)."""
    import subprocess

    here = Path(__file__).resolve()
    env = dict(os.environ, PYTHONPATH=str(here.parents[1]))
    out = {"on": [], "off": []}
    for _ in range(repeats):
        for mode in ("off", "on"):
            with tempfile.TemporaryDirectory() as d:
                proc = subprocess.run([sys.executable, "-c", FIRST_OPEN, d, mode,
                                       str(here.parent)], capture_output=True, text=True,
                                      env=env, check=True)
            line = next(x for x in proc.stdout.splitlines() if x.startswith("FIRST"))
            out[mode].append((float(line.split()[1]), float(line.split()[2])))
    med = statistics.median
    for mode, label in (("off", "imported on the click (before)"),
                        ("on", "imported at start-up on a thread")):
        print(f"Features tab first open, {label}: paint {med(p for p, _ in out[mode]) * 1000:.0f}"
              f" ms, longest stall {med(s for _, s in out[mode]) * 1000:.0f} ms")
    print(f"ratio before/after: paint x{med(p for p, _ in out['off']) / med(p for p, _ in out['on']):.1f}, "
          f"stall x{med(s for _, s in out['off']) / med(s for _, s in out['on']):.1f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--folder", default="", help="a folder made by scripts/make_load_folder.py")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--cold", type=int, default=3, help="fresh-process opens per folder")
    ap.add_argument("--no-gc-freeze", action="store_true",
                    help="windows do not freeze their start-up objects (the app's window does)")
    ap.add_argument("--first-open", type=int, default=0, metavar="N",
                    help="only time the Features tab's first open, N fresh processes per mode")
    args = ap.parse_args()
    GC_FREEZE[0] = not args.no_gc_freeze
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ.setdefault("MISTUDIO_NO_KEYRING", "1")
    if args.first_open:
        first_open(args.first_open)
        return
    from PySide6.QtWidgets import QApplication

    from mistudio.ui.app import create_app

    load = args.folder
    if not load:
        from scripts.make_load_folder import make_load_folder

        load = tempfile.mkdtemp(prefix="load-bench-")
        make_load_folder(load)
    empty = tempfile.mkdtemp(prefix="load-bench-empty-")
    counts = _counts(load)
    EXPECTED[load] = {"Datasets": counts["datasets"], "Models": counts["models"],
                      "Training": min(counts["trainings"], PAGE_SIZE),
                      "Features": counts["newest_d_sae"], "Steering": counts["models"]}
    app = QApplication.instance() or create_app([])
    probe = StallProbe()
    measure_window(app, empty, probe)  # warm-up: imports, fonts, first-use caches
    results = {"empty": [], "load": []}
    for _ in range(args.repeats):
        for name, folder in (("empty", empty), ("load", load)):
            results[name].append(measure_window(app, folder, probe))
    probe.stop()
    cold = {name: [cold_open(f) for _ in range(args.cold)] for name, f in
            (("empty", empty), ("load", load))}
    report(counts, results, cold)


def _counts(folder: str) -> dict:
    import sqlite3

    con = sqlite3.connect(Path(folder) / "mistudio.db")
    try:
        q = lambda t: con.execute(f"select count(*) from {t}").fetchone()[0]  # noqa: E731
        return {"datasets": q("datasets"), "models": q("models"), "sets": q("activation_sets"),
                "trainings": q("trainings"), "analyses": q("feature_analyses"),
                "metric_rows": q("job_metrics"), "jobs": q("jobs"),
                "newest_d_sae": con.execute("select d_sae from saes order by created_at desc "
                                            "limit 1").fetchone()[0]}
    finally:
        con.close()


def report(counts: dict, results: dict, cold: dict) -> None:
    med = statistics.median
    ms = lambda s: "-" if s is None else f"{s * 1000:7.1f}"  # noqa: E731
    print("load folder: " + ", ".join(f"{v:,} {k}" for k, v in counts.items()
                                      if k != "newest_d_sae"))
    e_open = med(r["open"] for r in results["empty"])
    l_open = med(r["open"] for r in results["load"])
    print(f"window open (in-process, warm): empty {ms(e_open)} ms, load {ms(l_open)} ms, "
          f"ratio x{l_open / e_open:.2f}   (target <= {TARGET_OPEN_S * 1000:.0f} ms)")
    if cold["empty"] and cold["load"]:  # --cold 0 skips the fresh-process opens
        e_cold, l_cold = med(cold["empty"]), med(cold["load"])
        print(f"window open (fresh process):    empty {ms(e_cold)} ms, load {ms(l_cold)} ms, "
              f"ratio x{l_cold / e_cold:.2f}")
    print(f"longest stall in the 0.3 s after the window shows: empty "
          f"{ms(med(r['open_stall'] for r in results['empty']))} ms, load "
          f"{ms(med(r['open_stall'] for r in results['load']))} ms")
    print(f"{'tab':<10} {'paint empty':>11} {'paint load':>10} {'ratio':>6} "
          f"{'rows load':>9} {'stall empty':>11} {'stall load':>10}  rows")
    fails = []
    for title in results["load"][0]["tabs"]:
        col = lambda name, key: [r["tabs"][title][key] for r in results[name]]  # noqa: E731
        pe, pl = med(col("empty", "paint")), med(col("load", "paint"))
        rows = [x for x in col("load", "rows") if x is not None]
        se, sl = med(col("empty", "stall")), med(col("load", "stall"))
        n = results["load"][-1]["tabs"][title]["n"]
        print(f"{title:<10} {ms(pe):>11} {ms(pl):>10} {pl / pe:6.2f} "
              f"{ms(med(rows) if rows else None):>9} {ms(se):>11} {ms(sl):>10}  {n}")
        if pl > TARGET_PAINT_S:
            fails.append(f"{title} paints in {pl * 1000:.0f} ms")
    if l_open > TARGET_OPEN_S:
        fails.append(f"window opens in {l_open * 1000:.0f} ms")
    print("targets: " + ("all met" if not fails else "NOT met: " + "; ".join(fails)))


if __name__ == "__main__":
    main()
