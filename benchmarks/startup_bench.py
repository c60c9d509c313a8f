"""Time from process start to the main window being shown, next to `import torch`.

Each measurement is a fresh process (cold interpreter; the OS file cache is warm after the
first run, so the first of the repeats is reported separately). Run:

    QT_QPA_PLATFORM=offscreen python benchmarks/startup_bench.py [--repeats 5]
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


def _measure(code: str, key: str, *args: str) -> tuple[float, float, str]:
    env = dict(os.environ, QT_QPA_PLATFORM=os.environ.get("QT_QPA_PLATFORM", "offscreen"),
               MISTUDIO_NO_KEYRING="1")
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
    args = ap.parse_args()
    shown, shown_wall, torch_t, torch_wall = [], [], [], []
    extra = ""
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as d:
            t, wall, line = _measure(WINDOW, "SHOWN", d)
            shown.append(t)
            shown_wall.append(wall)
            extra = line.split()[-1]
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


if __name__ == "__main__":
    main()
