"""The Steering tab's two GUI stalls: its first open, and "Steer with this feature".

Each measurement runs in a fresh process (imports and the lazily built services are part of
what a user pays), with the 5 ms stall probe of ``load_bench.py`` running; the number is the
longest gap between its ticks, i.e. the longest the window could not repaint or react:

- **open**: the window shows, its tab modules are imported (as they are 3 s after start-up),
  then the Steering tab is opened first (before Features), until its models, SAEs and
  features are shown;
- **open-early**: the same, clicked 0.2 s after the window shows (its tab modules are still
  being imported one per event-loop turn, so the tab's first open imports what it needs);
- **handoff**: the Features tab is open and the Steering tab was opened once; then
  "Steer with this feature" for an analysed SAE of a model the Steering tab does not show,
  until the tab shows that SAE with the feature in its table.

``--tree`` runs another checkout's code (a baseline: ``git archive main | tar -x -C DIR``);
both trees alternate, one process each, and the medians and the ratio are printed.

    QT_QPA_PLATFORM=offscreen python benchmarks/steering_open_bench.py --folder DIR \
        [--tree BASELINE_DIR] [--repeats 5] [--modes open,open-early,handoff]

The folder is opened read-write (copy a load folder from ``scripts/make_load_folder.py``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

CHILD = r"""
import sys, time
tree, folder, mode, bench = sys.argv[1:5]
sys.path.insert(0, bench)
from load_bench import StallProbe, pump_until  # it puts its own checkout first on the path
sys.path.insert(0, tree)  # the tree measured comes first
import mistudio
assert mistudio.__file__.startswith(tree), (mistudio.__file__, tree)
from mistudio.ui.app import build_window, create_app
app = create_app([])
probe = StallProbe()
w = build_window(folder, remember_layout=False)
w.show()
if mode == "open-early":  # clicked at once: the tab modules are still being imported
    pump_until(app, lambda: False, 0.2)
else:
    pump_until(app, lambda: False, 3.0)  # the user looks at the window before clicking
    pump_until(app, w.tab_modules_imported, 60)
    pump_until(app, lambda: False, 0.3)

def steering_settled(tab):
    return tab.loaded and not tab._calls.busy()

if mode.startswith("open"):
    t = time.perf_counter()
    tab = w.show_tab("Steering")
    ok = pump_until(app, lambda: steering_settled(tab) and tab.feature_list.count() > 0, 60)
else:
    features = w.show_tab("Features")
    pump_until(app, lambda: features.table.model.rowCount() > 0, 60)
    steering = w.show_tab("Steering")
    pump_until(app, lambda: steering_settled(steering), 60)
    w.show_tab("Features")
    pump_until(app, lambda: False, 0.5)
    shown = {steering.sae_combo.itemData(i) for i in range(steering.sae_combo.count())}
    analysed = [fa.sae_id for fa in w.studio.features.list_analyses()]
    sae_id = next(s for s in analysed if s not in shown)
    t = time.perf_counter()
    w.steer_feature(sae_id, 5)
    ok = pump_until(app, lambda: steering_settled(steering) and
                    steering.sae_combo.currentData() == sae_id and
                    [r.feature for r in steering.state.rows] == [5], 60)
pump_until(app, lambda: False, 0.3)
print("RESULT", mode, ok, probe.longest(t, time.perf_counter()))
w.skip_close_confirmation = True
w.close()
"""


def measure(tree: str, folder: str, mode: str) -> float:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "PYTHONPATH": tree}
    out = subprocess.run([sys.executable, "-c", CHILD, tree, folder, mode, str(HERE)],
                         env=env, capture_output=True, text=True, cwd=tree, timeout=300)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("RESULT")), None)
    if line is None:
        raise SystemExit(f"the child failed:\n{out.stdout}\n{out.stderr[-3000:]}")
    _r, _mode, ok, stall = line.split()
    if ok != "True":
        raise SystemExit(f"{mode} never settled in {tree}")
    return float(stall)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--folder", required=True)
    ap.add_argument("--tree", help="a baseline checkout to compare against")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--modes", default="open,open-early,handoff")
    args = ap.parse_args()
    trees = {"this": str(HERE.parent)}
    if args.tree:
        trees["baseline"] = str(Path(args.tree).resolve())
    for mode in args.modes.split(","):
        got: dict[str, list[float]] = {name: [] for name in trees}
        for _ in range(args.repeats):  # interleaved: the machine's load hits both alike
            for name, tree in trees.items():
                got[name].append(measure(tree, args.folder, mode))
        med = {name: statistics.median(v) for name, v in got.items()}
        line = "  ".join(f"{name} {med[name] * 1e3:.0f} ms (max {max(got[name]) * 1e3:.0f})"
                         for name in trees)
        ratio = (f"  this/baseline {med['this'] / med['baseline']:.2f}x"
                 if "baseline" in med and med["baseline"] else "")
        print(f"{mode:8s} longest stall: {line}{ratio}", flush=True)


if __name__ == "__main__":
    main()
