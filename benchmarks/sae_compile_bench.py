"""Is ``torch.compile`` worth it for an SAE training step? Eager vs compiled, one process.

For each architecture, two copies of the same SAE train on the same batches: one runs
``training_step`` eagerly, the other through ``torch.compile`` (default backend: inductor;
on CPU it needs a C++ compiler). Timed steps alternate between the two in chunks of 5, so
load changes on a shared machine hit both. Prints the compile time (first call), tokens/s
of each, the ratio, and the largest weight difference after the timed steps.

    python benchmarks/sae_compile_bench.py                      # CPU, d_in 256, d_sae 4096
    python benchmarks/sae_compile_bench.py --device cuda --size full
    python benchmarks/sae_compile_bench.py --archs topk batchtopk --threads 1

The trainer compiles only where this says it pays off (dense architectures: ``relu``,
``jumprelu``); TopK-style steps run their sparse kernels eagerly.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from mistudio.sae.config import TrainingConfig  # noqa: E402
from mistudio.sae.architectures import build_sae  # noqa: E402
from mistudio.sae.trainer import make_optimizer  # noqa: E402

SIZES = {"full": (768, 24576, 32, 4096), "small": (256, 4096, 32, 1024)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--size", choices=SIZES, default="small")
    ap.add_argument("--archs", nargs="+", default=["relu", "jumprelu", "topk", "batchtopk"])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--backend", default="inductor")
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    d_in, d_sae, k, batch = SIZES[args.size]
    gen = torch.Generator().manual_seed(0)
    batches = [torch.randn(batch, d_in, generator=gen).to(device) for _ in range(8)]
    print(f"device {device}, d_in {d_in}, d_sae {d_sae}, k {k}, batch {batch}, "
          f"{args.steps} timed steps, backend {args.backend}, torch {torch.__version__}")
    for arch in args.archs:
        cfg = TrainingConfig(activation_path="mem", architecture=arch, d_sae=d_sae, k=k,
                             batch_size=batch, l1_coefficient=1.0)
        sae = build_sae(cfg, d_in).to(device)
        copies = {"eager": sae, "compiled": copy.deepcopy(sae)}
        opts = {n: make_optimizer(m.parameters(), cfg, device) for n, m in copies.items()}
        fns = {"eager": sae.training_step,
               "compiled": torch.compile(copies["compiled"].training_step,
                                         backend=args.backend)}
        dead = torch.zeros(d_sae, dtype=torch.bool, device=device)

        def step(name, x):
            m = copies[name]
            out = fns[name](x, x, sparsity_scale=1.0,
                            dead_mask=dead if arch in ("topk", "batchtopk") else None)
            opts[name].zero_grad(set_to_none=True)
            out.loss.backward()
            m.constrain_gradients()
            opts[name].step()
            m.after_step()

        def sync():
            if device.type == "cuda":
                torch.cuda.synchronize()

        t0 = time.perf_counter()
        try:
            step("compiled", batches[0])
            sync()
        except Exception as exc:  # noqa: BLE001 - report and go on with the next one
            print(f"{arch:10s} compile failed: {type(exc).__name__}: {str(exc)[:200]}")
            continue
        compile_s = time.perf_counter() - t0
        step("eager", batches[0])
        for b in batches[1:3]:  # warm-up (recompiles, caches)
            step("compiled", b)
            step("eager", b)
        spent = {"eager": 0.0, "compiled": 0.0}
        for start in range(0, args.steps, 5):
            for name in ("eager", "compiled"):
                sync()
                t = time.perf_counter()
                for i in range(start, min(start + 5, args.steps)):
                    step(name, batches[i % len(batches)])
                sync()
                spent[name] += time.perf_counter() - t
        tps = {n: args.steps * batch / s for n, s in spent.items()}
        diff = max((p - q).abs().max().item() for p, q in
                   zip(copies["eager"].parameters(), copies["compiled"].parameters()))
        print(f"{arch:10s} compile {compile_s:6.1f} s | eager {tps['eager']:10,.0f} tok/s | "
              f"compiled {tps['compiled']:10,.0f} tok/s | compiled/eager "
              f"{tps['compiled'] / tps['eager']:.2f}x | max weight diff {diff:.2e}")


if __name__ == "__main__":
    main()
