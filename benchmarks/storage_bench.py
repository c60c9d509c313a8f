"""Storage: the cost of a cleanup plan and of a verified data-folder move, against plain
baselines run in the same process on the same synthetic data folder.

- plan: ``StorageService.cleanup_plan`` with every rule on (it walks tmp/, cache/, the
  entity folders, reads the records) vs one bare ``os.walk`` + ``lstat`` of the whole folder
  (the least any size-aware plan must do). Printed: both times and the ratio.
- move: ``move.copy_tree`` + ``move.verify`` as the service runs them (each file hashed while
  it is copied, then the copy read back and hashed; the service adds one ``os.sync()`` before
  the switch) vs ``shutil.copytree`` alone (no hashing, kernel-side copy). The ratio is the price of the verification; target
  under 3x. From a page-cached source to a RAM-backed /tmp the hashing dominates; between real
  disks the copy does and the ratio falls.

    python benchmarks/storage_bench.py                 # 2,000 files, 400 MB
    python benchmarks/storage_bench.py --files 500 --mb 100
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _fill(root: Path, files: int, total_mb: int) -> None:
    size = max(1, total_mb * 1024 * 1024 // files)
    cats = ["datasets", "activations", "trainings", "features", "cache/hub", "cache/numba"]
    chunk = os.urandom(size)
    for i in range(files):
        folder = root / cats[i % len(cats)] / f"item_{i % 97:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{i}.bin").write_bytes(chunk[: size - (i % 7)])


def _best(fn, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=2000)
    ap.add_argument("--mb", type=int, default=400)
    args = ap.parse_args()
    os.environ.setdefault("MISTUDIO_NO_KEYRING", "1")
    from mistudio.app.storage_cleanup import CleanupPolicy
    from mistudio.jobs.context import JobContext
    from mistudio.secrets_test_support import MemorySecrets
    from mistudio.storage import move
    from mistudio.studio import Studio

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        studio = Studio(root, secrets=MemorySecrets(), setup_logs=False)
        _fill(root, args.files, args.mb)
        policy = CleanupPolicy(cache_limit_gb=args.mb / 4 / 1024, keep_activation_sets=1,
                               thin_checkpoints=True)

        def walk():
            n = 0
            for d, _, fs in os.walk(root):
                for f in fs:
                    n += os.lstat(os.path.join(d, f)).st_size
            return n

        t_walk = _best(walk)
        t_plan = _best(lambda: studio.storage.cleanup_plan(policy))
        print(f"plan: {t_plan * 1000:.1f} ms, bare walk {t_walk * 1000:.1f} ms "
              f"-> {t_plan / t_walk:.2f}x ({args.files} files)")
        studio.close(timeout=5)

        def plain():
            shutil.rmtree(Path(tmp) / "plain", ignore_errors=True)
            shutil.copytree(root, Path(tmp) / "plain", symlinks=True)

        def verified():
            dest = Path(tmp) / "verified"
            shutil.rmtree(dest, ignore_errors=True)
            ctx, digests = JobContext.standalone(), {}
            move.copy_tree(root, dest, ctx, digests=digests)
            move.verify(root, dest, ctx, digests=digests)

        t_plain = _best(plain, 2)
        t_move = _best(verified, 2)
        mb = args.mb
        print(f"move: copy+verify {t_move:.2f} s ({mb / t_move:.0f} MB/s), shutil.copytree "
              f"{t_plain:.2f} s ({mb / t_plain:.0f} MB/s) -> {t_move / t_plain:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
