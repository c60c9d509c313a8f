"""Screenshots of every tab from two checkouts, compared pixel by pixel.

    QT_QPA_PLATFORM=offscreen python scripts/compare_screenshots.py BEFORE_TREE AFTER_TREE OUT

Each tree (a checkout's root) takes ``mistudio screenshot`` of a fresh data directory in its
own process (PYTHONPATH points at that tree), into OUT/before and OUT/after; then each pair of
same-named PNGs is compared: a pixel differs when a channel moves by more than --tolerance
(0-255). For every pair it prints the share of differing pixels and the box holding them, and
writes OUT/diff-<name>.png (differing pixels in red over a faded copy). Exit 1 when a pair
differs in more than --max-share of its pixels or a screen is missing on one side.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

SHOOT = ("import sys; from pathlib import Path; from mistudio.ui.screenshots import "
         "take_screenshots; take_screenshots(Path(sys.argv[1]), sys.argv[2])")


def shoot(tree: Path, out: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(tree), QT_QPA_PLATFORM="offscreen",
               MISTUDIO_NO_KEYRING="1", HF_HUB_OFFLINE="1")
    with tempfile.TemporaryDirectory() as data_dir:
        env["MISTUDIO_DATA_DIR"] = data_dir
        subprocess.run([sys.executable, "-c", SHOOT, str(out), data_dir], env=env, check=True,
                       cwd=tree)


def load(path: Path) -> np.ndarray:
    from PySide6.QtGui import QImage

    img = QImage(str(path)).convertToFormat(QImage.Format.Format_RGBA8888)
    arr = np.frombuffer(img.constBits(), np.uint8).reshape(img.height(), img.bytesPerLine())
    return arr[:, : img.width() * 4].reshape(img.height(), img.width(), 4).copy()


def save(arr: np.ndarray, path: Path) -> None:
    from PySide6.QtGui import QImage

    h, w, _ = arr.shape
    QImage(arr.tobytes(), w, h, 4 * w, QImage.Format.Format_RGBA8888).save(str(path))


def compare(a: np.ndarray, b: np.ndarray, tolerance: int) -> tuple[float, tuple | None,
                                                                      np.ndarray]:
    if a.shape != b.shape:
        return 1.0, None, b
    moved = (np.abs(a.astype(np.int16) - b.astype(np.int16)) > tolerance).any(axis=2)
    share = float(moved.mean())
    box = None
    if moved.any():
        ys, xs = np.nonzero(moved)
        box = (int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max()))
    diff = (b.astype(np.float32) * 0.3 + 178).astype(np.uint8)
    diff[moved] = (220, 0, 0, 255)
    diff[..., 3] = 255
    return share, box, diff


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("before", type=Path)
    ap.add_argument("after", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--tolerance", type=int, default=8, help="per-channel change ignored")
    ap.add_argument("--max-share", type=float, default=0.01,
                    help="share of moved pixels above which a pair counts as different")
    ap.add_argument("--reuse", action="store_true", help="compare PNGs already in OUT")
    args = ap.parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtWidgets import QApplication

    _app = QApplication.instance() or QApplication([])
    dirs = {side: args.out / side for side in ("before", "after")}
    if not args.reuse:
        shoot(args.before.resolve(), dirs["before"])
        shoot(args.after.resolve(), dirs["after"])
    names = sorted({p.name for d in dirs.values() for p in d.glob("*.png")})
    worst = 0
    for name in names:
        a, b = dirs["before"] / name, dirs["after"] / name
        if not (a.exists() and b.exists()):
            print(f"{name:<44} only {'before' if a.exists() else 'after'}")
            worst = 1
            continue
        share, box, diff = compare(load(a), load(b), args.tolerance)
        save(diff, args.out / f"diff-{name}")
        flag = "DIFFERENT" if share > args.max_share else ("same" if not box else "close")
        print(f"{name:<44} {share * 100:7.3f}% moved  box={box}  {flag}")
        worst = max(worst, int(share > args.max_share))
    return worst


if __name__ == "__main__":
    sys.exit(main())
