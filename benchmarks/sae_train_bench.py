"""SAE training speed and quality: this engine vs SAELens vs EleutherAI sparsify, one process.

All three train on the same synthetic activations (sparse ground-truth features) for the
same number of tokens, with Adam at the same learning rate; the script prints tokens/s of
each, the ratios, and explained variance / L0 on held-out tokens after training. Timed steps
alternate between the libraries in chunks of 5, so load changes on a shared machine hit all.

    python benchmarks/sae_train_bench.py                       # CPU: small size (see below)
    python benchmarks/sae_train_bench.py --device cuda          # GPU: the issue's size
    python benchmarks/sae_train_bench.py --size full --steps 4  # CPU at the issue's size

Sizes: ``full`` = d_in 768, d_sae 24576, k 32, batch 4096; ``small`` = d_in 256, d_sae 4096,
k 32, batch 1024 (the CPU default: the full size takes minutes per SAELens step on 2 cores).
SAELens and sparsify are benchmark-only dependencies (``pip install sae-lens eai-sparsify``,
best in a separate venv that can see this one); a library that is missing is skipped.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from mistudio.sae.config import TrainingConfig  # noqa: E402
from mistudio.sae.data import TensorSource  # noqa: E402
from mistudio.sae.synthetic import sparse_features  # noqa: E402
from mistudio.sae.trainer import Trainer  # noqa: E402

SIZES = {"full": (768, 24576, 32, 4096), "small": (256, 4096, 32, 1024)}


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def held_out_metrics(encode_decode, x):
    with torch.no_grad():
        recon, acts = encode_decode(x)
        err = (recon.float() - x).pow(2).sum(-1).mean()
        var = (x - x.mean(0)).pow(2).sum(-1).mean()
        return float(1 - err / var), float((acts > 0).float().sum(-1).mean())


def time_interleaved(steps: dict, batches, warmup, device, chunk: int = 5) -> dict:
    """Seconds spent in the timed steps of each library, run in alternating chunks so that
    a change of machine load (shared machines) hits every library alike."""
    for b in batches[:warmup]:
        for step in steps.values():
            step(b)
    spent = {name: 0.0 for name in steps}
    timed = batches[warmup:]
    for start in range(0, len(timed), chunk):
        for name, step in steps.items():
            sync(device)
            t0 = time.perf_counter()
            for b in timed[start:start + chunk]:
                step(b)
            sync(device)
            spent[name] += time.perf_counter() - t0
    return spent


# ---------------------------------------------------------------------- this engine


def run_ours(arch, d_in, d_sae, k, batches, warmup, device, dtype, lr, l1, compile_):
    cfg = TrainingConfig(activation_path="bench", architecture=arch, d_sae=d_sae, k=k,
                         batch_size=batches[0].shape[0], total_tokens=10 ** 12, lr=lr,
                         l1_coefficient=l1, l1_warmup_fraction=0.0, dtype=dtype,
                         normalize_activations="none", device=str(device), compile=compile_,
                         dead_window_tokens=10 ** 12)
    tr = Trainer(cfg, TensorSource(batches[0][:2].cpu().repeat(cfg.batch_size, 1)), None,
                 device=device)
    m = tr.members[0]

    def step(x):
        tr._train_member(m, x, x, 1.0, x.shape[0])
        tr.step += 1

    return step, lambda x: (m.sae.eval()(x), m.sae.encode(x))


# ---------------------------------------------------------------------- SAELens


def run_saelens(arch, d_in, d_sae, k, batches, warmup, device, dtype, lr, l1, compile_):
    from sae_lens.saes.sae import TrainStepInput
    from sae_lens.saes.standard_sae import StandardTrainingSAE, StandardTrainingSAEConfig
    from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig

    if arch == "topk":
        sae = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=d_in, d_sae=d_sae, k=k,
                                                    device=str(device)))
        coeffs = {}
    else:
        sae = StandardTrainingSAE(StandardTrainingSAEConfig(d_in=d_in, d_sae=d_sae,
                                                            l1_coefficient=l1, device=str(device)))
        coeffs = {"l1": l1}
    opt = torch.optim.Adam(sae.parameters(), lr=lr)
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if dtype == "bfloat16"
                else torch.autocast(device.type, enabled=False))
    dead = torch.zeros(d_sae, dtype=torch.bool, device=device)

    def step(x):  # SAETrainer._train_step, without logging
        with autocast:
            out = sae.training_forward_pass(step_input=TrainStepInput(
                sae_in=x, coefficients=coeffs, dead_neuron_mask=dead, n_training_steps=0,
                is_logging_step=False))
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(sae.parameters(), 1.0)
        opt.step()
        opt.zero_grad()

    return step, lambda x: (sae.eval()(x), sae.encode(x))


# ---------------------------------------------------------------------- sparsify


def run_sparsify(arch, d_in, d_sae, k, batches, warmup, device, dtype, lr, l1, compile_):
    if arch != "topk":
        return None
    from sparsify import SparseCoder, SparseCoderConfig

    sae = SparseCoder(d_in, SparseCoderConfig(num_latents=d_sae, k=k), device=device)
    opt = torch.optim.Adam(sae.parameters(), lr=lr)
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if dtype == "bfloat16"
                else torch.autocast(device.type, enabled=False))

    def step(x):  # sparsify's Trainer step: FVU loss, decoder constraints, Adam
        with autocast:
            out = sae(x)
        out.fvu.backward()
        sae.remove_gradient_parallel_to_decoder_directions()
        opt.step()
        opt.zero_grad()
        sae.set_decoder_norm_to_unit_norm()

    def encode_decode(x):
        out = sae(x)
        acts = torch.zeros(x.shape[0], d_sae, device=x.device).scatter_(
            1, out.latent_indices, out.latent_acts.float())
        return out.sae_out, acts
    return step, encode_decode


RUNNERS = {"mistudio": run_ours, "SAELens": run_saelens, "sparsify": run_sparsify}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--size", choices=sorted(SIZES), help="default: full on cuda, small on cpu")
    p.add_argument("--arch", choices=["topk", "relu", "both"], default="both")
    p.add_argument("--steps", type=int, default=0, help="timed steps (default 30 GPU / 6 CPU)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--dtype", default="auto", help="auto: bf16 autocast on GPU, fp32 on CPU")
    p.add_argument("--compile", action="store_true", help="torch.compile our dense step")
    p.add_argument("--lr", type=float, default=4e-4)
    p.add_argument("--l1", type=float, default=5.0)
    p.add_argument("--only", nargs="*", default=list(RUNNERS), help="libraries to run")
    p.add_argument("--threads", type=int, default=0,
                   help="CPU threads for every library (default: torch's choice)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    size = args.size or ("full" if device.type == "cuda" else "small")
    d_in, d_sae, k, batch = SIZES[size]
    steps_n = args.steps or (30 if device.type == "cuda" else 6)
    dtype = args.dtype if args.dtype != "auto" else ("bfloat16" if device.type == "cuda"
                                                     else "float32")
    n = batch * (steps_n + args.warmup)
    data, _ = sparse_features(n + 8192, d_in, d_sae // 2, seed=0, p_min=2e-4, p_max=0.02)
    data *= (d_in ** 0.5) / data.norm(dim=1).mean()  # Anthropic scaling, for every library
    data = data.to(device)
    batches = list(data[:n].split(batch))
    held_out = data[n:]
    print(f"device {device} ({torch.cuda.get_device_name() if device.type == 'cuda' else f'{torch.get_num_threads()} threads'}), "
          f"torch {torch.__version__}, size {size}: d_in {d_in}, d_sae {d_sae}, k {k}, "
          f"batch {batch}, {steps_n} timed steps after {args.warmup} warm-up, dtype {dtype}")
    archs = ["topk", "relu"] if args.arch == "both" else [args.arch]
    for arch in archs:
        print(f"\n== {arch} ==")
        steps, evals = {}, {}
        for name in args.only:
            torch.manual_seed(0)
            try:
                got = RUNNERS[name](arch, d_in, d_sae, k, batches, args.warmup, device, dtype,
                                    args.lr, args.l1, args.compile)
            except ImportError as exc:
                print(f"{name:<10} skipped ({exc})")
                continue
            if got is not None:
                steps[name], evals[name] = got
        spent = time_interleaved(steps, batches, args.warmup, device)
        results = {}
        for name, elapsed in spent.items():
            tps = batch * steps_n / elapsed
            ev, l0 = held_out_metrics(evals[name], held_out)
            results[name] = tps
            print(f"{name:<10} {tps:>12,.0f} tokens/s   EV {ev:.4f}   L0 {l0:7.1f}   "
                  f"({elapsed / steps_n * 1000:.0f} ms/step)")
        if device.type == "cuda":
            torch.cuda.empty_cache()
        if "mistudio" in results:
            for name, tps in results.items():
                if name != "mistudio":
                    print(f"mistudio / {name}: {results['mistudio'] / tps:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
