"""Time from process start to the main window being shown, next to `import torch`.

Each measurement is a fresh process (cold interpreter; the OS file cache is warm after the
first run, so the first of the repeats is reported separately). Run:

    QT_QPA_PLATFORM=offscreen python benchmarks/startup_bench.py [--repeats 5]

``--baseline-tree DIR`` also times another checkout's window (``PYTHONPATH=DIR``), the two
interleaved run by run, and prints the ratio this tree / that tree (a change's before/after).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile

WINDOW = r"""
import time, sys
t0 = time.perf_counter()
from mistudio.ui.app import build_window, create_app
app = create_app()
w = build_window(sys.argv[1])
w.show()
app.processEvents()
t1 = time.perf_counter()
print(f"SHOWN {t1 - t0:.4f} torch_loaded={'torch' in sys.modules}")
w.skip_close_confirmation = True
w.close()
"""

TORCH = r"""
import time
t0 = time.perf_counter()
import torch
print(f"TORCH {time.perf_counter() - t0:.4f}")
"""


def _measure(code: str, key: str, *args: str, tree: str | None = None
             ) -> tuple[float, float, str]:
    env = dict(os.environ, QT_QPA_PLATFORM=os.environ.get("QT_QPA_PLATFORM", "offscreen"),
               MISTUDIO_NO_KEYRING="1")
    if tree:
        env["PYTHONPATH"] = tree
    import time

    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                         env=env, check=True)
    wall = time.perf_counter() - t0
    line = next(l for l in out.stdout.splitlines() if l.startswith(key))
    return float(line.split()[1]), wall, line


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--baseline-tree", default="",
                    help="another checkout's root: time its window too and print the ratio")
    args = ap.parse_args()
    shown, shown_wall, torch_t, torch_wall = [], [], [], []
    base, base_wall = [], []
    extra = ""
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as d:
            t, wall, line = _measure(WINDOW, "SHOWN", d)
            shown.append(t)
            shown_wall.append(wall)
            extra = line.split()[-1]
        if args.baseline_tree:
            with tempfile.TemporaryDirectory() as d:
                t, wall, _ = _measure(WINDOW, "SHOWN", d, tree=args.baseline_tree)
                base.append(t)
                base_wall.append(wall)
        t, wall, _ = _measure(TORCH, "TORCH")
        torch_t.append(t)
        torch_wall.append(wall)
    med = statistics.median
    print(f"main window shown (in-process, from first import): median {med(shown):.3f} s "
          f"(first run {shown[0]:.3f} s); {extra}")
    print(f"main window shown (whole process incl. interpreter start): median "
          f"{med(shown_wall):.3f} s")
    print(f"`import torch` alone:                               median {med(torch_t):.3f} s "
          f"(process {med(torch_wall):.3f} s)")
    print(f"ratio window / import torch: {med(shown_wall) / med(torch_wall):.2f}")
    if base:
        print(f"baseline tree {args.baseline_tree}: window shown median {med(base):.3f} s "
              f"in-process, {med(base_wall):.3f} s whole process")
        print(f"ratio this tree / baseline: in-process {med(shown) / med(base):.3f}, "
              f"whole process {med(shown_wall) / med(base_wall):.3f}")


if __name__ == "__main__":
    main()
