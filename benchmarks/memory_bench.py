"""Memory stays bounded: extraction and SAE training at 1x and 4x the data, same process.

Both issues ask that memory stays bounded whatever the data's size (extractions far larger
than RAM; training bounded by the shuffle buffer). This benchmark runs each job twice, on a
small and on a 4x larger input, and prints the peak growth of the process's anonymous
resident memory (what it really holds; memory-mapped file pages the OS can drop are not
counted) next to the size of the data. Bounded means the growth at 4x stays about the
growth at 1x (ratio ~1), while the data grows 4x.

    python benchmarks/memory_bench.py                 # both, ~0.8 GB extracted, ~0.5 GB trained on
    python benchmarks/memory_bench.py --what train --train-rows 2000000
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from tokenize_bench import PeakRSS, anon_rss  # noqa: E402

MB = 2 ** 20


def measure(fn) -> tuple[int, float]:
    """(peak anonymous memory growth in bytes, seconds) while ``fn`` runs."""
    gc.collect()
    base = anon_rss()
    mon = PeakRSS()
    t0 = time.perf_counter()
    fn()
    dt = time.perf_counter() - t0
    mon.stop()
    return mon.peak_anon - base, dt


def report(what: str, rows: list[tuple[str, int, int, float]]) -> None:
    (n1, d1, g1, t1), (n4, d4, g4, t4) = rows
    print(f"{what}:")
    for label, data, growth, dt in rows:
        print(f"  {label:<22} data {data / MB:>8,.0f} MB   peak memory growth "
              f"{growth / MB:>7,.0f} MB   ({dt:,.1f} s)")
    print(f"  data x{d4 / d1:.1f} -> memory growth x{g4 / max(g1, 1):.2f} "
          f"(bounded: about 1; proportional would be {d4 / d1:.1f})")


def bench_extraction(root: Path, args) -> None:
    from extract_bench import build_assets, extraction

    from mistudio.models.pool import MODEL_POOL

    rows = []
    runs = (("warm-up", 4), ("1x", args.extract_batches), ("4x", 4 * args.extract_batches))
    for label, batches in runs:  # the warm-up run takes the one-time allocations
        spec = SimpleNamespace(d_model=512, n_layers=2, heads=8, layer=1, batch=16, seq=128,
                               batches=batches, dtype="float32", store_dtype="float32")
        work = root / f"extract_{label}"
        work.mkdir()
        model_dir, tok_dir = build_assets(work, spec)
        MODEL_POOL.get(model_dir, dtype="float32", device="cpu")  # load outside the measure
        growth, dt = measure(lambda: extraction(model_dir, tok_dir, work / "out", spec, "cpu"))
        data = sum(f.stat().st_size for f in (work / "out" / "set").rglob("*.npy"))
        MODEL_POOL.release()
        if label != "warm-up":
            rows.append((f"{label} ({batches * 16 * 128:,} tokens)", data, growth, dt))
    report("activation extraction (GPT-2 shape d512, stored fp32)", rows)


def bench_training(root: Path, args) -> None:
    from mistudio.activations.format import write_activation_set
    from mistudio.sae.config import TrainingConfig
    from mistudio.sae.data import ActivationSetSource
    from mistudio.sae.trainer import Trainer

    d_in, buffer_rows = 256, args.buffer_rows

    def make_set(label: str, n: int) -> Path:
        folder = root / f"acts_{label}"
        rng = np.random.default_rng(0)
        chunks = (rng.standard_normal((65_536, d_in), dtype=np.float32)
                  for _ in range(max(1, n // 65_536)))
        return write_activation_set(folder, chunks, {"model": "synthetic", "hook_point": "x"},
                                    dtype="float16")

    def trainer_for(folder: Path, tokens: int | None = None) -> Trainer:
        source = ActivationSetSource(folder, buffer_rows=buffer_rows)
        cfg = TrainingConfig(activation_id=str(folder), architecture="topk", d_sae=1024, k=32,
                             batch_size=4096, total_tokens=tokens or source.num_rows,
                             device="cpu", dtype="float32", eval_tokens=0,
                             metrics_every_steps=50, normalization_tokens=20_000)
        return Trainer(cfg, source, None, device="cpu")

    sets = {"1x": make_set("1x", args.train_rows), "4x": make_set("4x", 4 * args.train_rows)}
    trainer_for(sets["1x"], tokens=10 * 4096).run()  # warm-up: one-time allocations
    rows = []
    for label, folder in sets.items():
        trainer = trainer_for(folder)
        growth, dt = measure(trainer.run)
        data = sum(f.stat().st_size for f in folder.rglob("*.npy"))
        rows.append((f"{label} ({trainer.source.num_rows:,} rows)", data, growth, dt))
        del trainer
    report(f"SAE training over one epoch (TopK d{d_in}->1024, shuffle buffer "
           f"{buffer_rows:,} rows = {buffer_rows * d_in * 2 / MB:,.0f} MB stored)", rows)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--what", choices=("extract", "train", "both"), default="both")
    p.add_argument("--extract-batches", type=int, default=50,
                   help="batches of 16x128 tokens at 1x (default 50 = 102,400 tokens)")
    p.add_argument("--train-rows", type=int, default=262_144, help="rows at 1x")
    p.add_argument("--buffer-rows", type=int, default=131_072)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="memory_bench_") as tmp:
        if args.what in ("extract", "both"):
            bench_extraction(Path(tmp), args)
        if args.what in ("train", "both"):
            bench_training(Path(tmp), args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
