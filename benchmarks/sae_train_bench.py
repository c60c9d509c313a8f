"""SAE training speed and quality: this engine vs SAELens vs EleutherAI sparsify, one process.

All three train on the same synthetic activations (sparse ground-truth features) for the
same number of tokens, with Adam at the same learning rate; the script prints tokens/s of
each, the ratios, and explained variance / L0 on held-out tokens after training. Timed steps
alternate between the libraries in chunks of 5, so load changes on a shared machine hit all.

    python benchmarks/sae_train_bench.py                       # CPU: small size (see below)
    python benchmarks/sae_train_bench.py --device cuda          # GPU: the issue's size
    python benchmarks/sae_train_bench.py --size full --steps 4  # CPU at the issue's size

ReLU in the sparse regime (a ReLU SAE is ~50% dense at init, so a few steps from init cannot
show the sparse kernels; see docs/sae-engine.md, "ReLU and JumpReLU: sparse kernels on CPU"):

    python benchmarks/sae_train_bench.py --threads 1 --from-trained 300 --steps 10
    python benchmarks/sae_train_bench.py --threads 1 --size full --target-l0 100 --steps 2
    python benchmarks/sae_train_bench.py --threads 1 --crossover 25,100,400,800,1200

Matryoshka BatchTopK against BatchTopK at the same width (this engine; the step-time ratio
the issue bounds at 1.3x; levels d_sae/16, d_sae/4, d_sae unless --widths):

    python benchmarks/sae_train_bench.py --threads 1 --arch matryoshka --steps 20
    python benchmarks/sae_train_bench.py --threads 1 --arch matryoshka --steps 20 \
        --dead-fraction 0.25     # AuxK runs; also times use_matryoshka_aux_loss

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

from mistudio.hardware import cpu_summary  # noqa: E402
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


def run_ours(arch, d_in, d_sae, k, batches, warmup, device, dtype, lr, l1, compile_,
             **extra):
    cfg = TrainingConfig(activation_path="bench", architecture=arch, d_sae=d_sae, k=k, **extra,
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

    step.member = m
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

    def forward(x):
        with autocast:
            return sae.training_forward_pass(step_input=TrainStepInput(
                sae_in=x, coefficients=coeffs, dead_neuron_mask=dead, n_training_steps=0,
                is_logging_step=False))

    def step(x):  # SAETrainer._train_step, without logging
        out = forward(x)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(sae.parameters(), 1.0)
        opt.step()
        opt.zero_grad()

    step.sae, step.optimizer, step.forward = sae, opt, forward

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


# ---------------------------------------------------------------------- ReLU in the sparse regime


def _density(member, x) -> float:
    """Fraction of active (token, latent) entries of our SAE on ``x`` (L0 / d_sae)."""
    with torch.no_grad():
        return float((member.sae.encode(x) > 0).float().mean())


def _shift_to_l0(member, x, target_l0: float) -> None:
    """Lower every encoder bias by one amount so that the mean L0 on ``x`` is ~target."""
    sae = member.sae
    with torch.no_grad():
        pre = sae.pre_acts(x[:64]).flatten()
        q = pre.kthvalue(max(1, int(pre.numel() * (1 - target_l0 / sae.d_sae)))).values
        sae.b_enc -= q


def _copy_to_saelens(member, lens_step) -> None:
    """Our weights and Adam moments into SAELens's SAE and optimizer (W_enc transposed)."""
    ours, sae, opt = member.sae, lens_step.sae, lens_step.optimizer
    with torch.no_grad():
        for name, src, transpose in (("W_enc", ours.W_enc_t, True), ("b_enc", ours.b_enc, False),
                                     ("W_dec", ours.W_dec, False), ("b_dec", ours.b_dec, False)):
            dst = getattr(sae, name)
            dst.copy_(src.t() if transpose else src)
            state = member.optimizer.state.get(src)
            if state:
                opt.state[dst] = {k: (v.t() if transpose and v.ndim == 2 else v).clone()
                                  for k, v in state.items()}


def _timed_chunks(steps: dict, batches, device, chunk: int, after_chunk=None) -> list[dict]:
    """Per chunk of ``chunk`` batches: seconds each library spent (interleaved)."""
    rows = []
    for start in range(0, len(batches), chunk):
        row = {}
        for name, step in steps.items():
            sync(device)
            t0 = time.perf_counter()
            for b in batches[start:start + chunk]:
                step(b)
            sync(device)
            row[name] = time.perf_counter() - t0
        if after_chunk:
            row.update(after_chunk(batches[start:start + chunk]))
        rows.append(row)
    return rows


def relu_sparse_regime(args, device, d_in, d_sae, batch, data) -> None:
    """ReLU/L1, this engine vs SAELens over a run into the sparse regime and from the same
    weights: (A) both train ``--from-trained`` steps from the same initial weights on the
    same batches (timed per segment, with the density our SAE has there), then held-out EV
    and L0 of both; (B) SAELens gets our weights and Adam moments and both train
    ``--steps`` more steps on the same new batches."""
    pre_n, timed_n = args.from_trained, args.steps or 6
    batches = list(data[:batch * (pre_n + timed_n)].split(batch))
    held_out = data[batch * (pre_n + timed_n):]
    torch.manual_seed(0)
    ours, ours_eval = run_ours("relu", d_in, d_sae, 32, batches, 0, device, "float32",
                              args.lr, args.l1, False)
    lens, lens_eval = run_saelens("relu", d_in, d_sae, 32, batches, 0, device, "float32",
                                  args.lr, args.l1, False)
    member = ours.member
    _copy_to_saelens(member, lens)  # same initial weights
    steps = {"mistudio": ours, "SAELens": lens}
    tps = {}
    if pre_n:
        chunk = 5
        rows = _timed_chunks(steps, batches[:pre_n], device, chunk,
                             lambda bs: {"density": _density(member, bs[-1])})
        print(f"(A) both from the same initial weights, {pre_n} steps on the same batches:")
        print("  steps      density   mistudio ms/step   SAELens ms/step   ratio")
        seg = max(1, len(rows) // 6)
        for i in range(0, len(rows), seg):
            part = rows[i:i + seg]
            n = min(pre_n, (i + len(part)) * chunk) - i * chunk
            a, b = sum(r["mistudio"] for r in part), sum(r["SAELens"] for r in part)
            print(f"  {i * chunk:>5}-{i * chunk + n:<5} {part[-1]['density']:7.4f}   "
                  f"{a / n * 1000:14.0f}   {b / n * 1000:15.0f}   {b / a:5.2f}x")
        for name, fn in (("mistudio", ours_eval), ("SAELens", lens_eval)):
            ev, l0 = held_out_metrics(fn, held_out)
            tps[name] = batch * pre_n / sum(r[name] for r in rows)
            print(f"  {name:<10} {tps[name]:>10,.0f} tokens/s over the run   held-out EV "
                  f"{ev:.4f}   L0 {l0:7.1f}")
        print(f"  mistudio / SAELens over the run: {tps['mistudio'] / tps['SAELens']:.2f}x")
        member.sae.train()
        lens.sae.train()
    if args.target_l0:
        _shift_to_l0(member, batches[pre_n], args.target_l0)
    _copy_to_saelens(member, lens)
    x = batches[pre_n]
    with torch.no_grad():
        ours_loss = float(member.sae.training_step(x, x).loss)
        lens_loss = float(lens.forward(x).loss)
    d0 = _density(member, x)
    print(f"(B) from the same weights (density {d0:.4f}, L0 {d0 * d_sae:.0f}"
          + (f", encoder bias shifted to L0 ~{args.target_l0:g}" if args.target_l0 else "")
          + f"; loss on the first batch: mistudio {ours_loss:.6g}, SAELens {lens_loss:.6g}), "
          f"{timed_n} steps each on the same batches:")
    rows = _timed_chunks(steps, batches[pre_n:], device, max(1, min(5, timed_n // 2)))
    d1 = _density(member, batches[-1])
    for name in steps:
        tps[name] = batch * timed_n / sum(r[name] for r in rows)
        print(f"  {name:<10} {tps[name]:>10,.0f} tokens/s   "
              f"({sum(r[name] for r in rows) / timed_n * 1000:.0f} ms/step)")
    print(f"  density at the end {d1:.4f} (L0 {d1 * d_sae:.0f}); mistudio / SAELens: "
          f"{tps['mistudio'] / tps['SAELens']:.2f}x")


def relu_crossover(args, device, d_in, d_sae, batch, data) -> None:
    """Our ReLU step, sparse kernels vs dense products, at encoder biases set for each
    target L0 (the weights are restored after every step, so the density stays put)."""
    batches = list(data[:batch * 2].split(batch))
    ours, _ = run_ours("relu", d_in, d_sae, 32, batches, 0, device, "float32", args.lr,
                       args.l1, False)
    member = ours.member
    reps = args.steps or 3
    print("  target L0   density   dense ms/step   sparse ms/step   dense / sparse")
    for target in [float(v) for v in args.crossover.split(",")]:
        _shift_to_l0(member, batches[0], target)
        saved = {k: v.clone() for k, v in member.sae.state_dict().items()}
        density = _density(member, batches[0])
        spent = {"off": 0.0, "on": 0.0}
        for rep in range(reps + 1):
            for mode in spent:
                member.sae.sparse_path = mode
                t0 = time.perf_counter()
                ours(batches[0])
                elapsed = time.perf_counter() - t0
                member.sae.load_state_dict(saved)
                spent[mode] += elapsed if rep else 0.0  # the first round warms up
        member.sae.sparse_path = "auto"
        print(f"  {target:9g}   {density:7.4f}   {spent['off'] / reps * 1000:13.0f}   "
              f"{spent['on'] / reps * 1000:14.0f}   {spent['off'] / spent['on']:10.2f}x")


def matryoshka_vs_batchtopk(args, device, d_in, d_sae, k, batches, held_out, dtype) -> None:
    widths = [int(w) for w in args.widths.split(",") if w.strip()]
    steps, evals = {}, {}
    variants = {"batchtopk": ("batchtopk", {}), "matryoshka_batchtopk": (
        "matryoshka_batchtopk", {})}
    if args.dead_fraction > 0:  # AuxK runs: also the per-level AuxK option
        variants["matryoshka, AuxK per level"] = ("matryoshka_batchtopk",
                                                  {"use_matryoshka_aux_loss": True})
    for name, (arch, extra) in variants.items():
        torch.manual_seed(0)
        steps[name], evals[name] = run_ours(arch, d_in, d_sae, k, batches, args.warmup, device,
                                            dtype, args.lr, args.l1, False,
                                            matryoshka_widths=widths, **extra)
        if args.dead_fraction > 0:
            # every variant sees the same dead latents (every n-th, so each level has
            # some), as if the firing tracker had found them dead
            dead = torch.zeros(d_sae, dtype=torch.bool, device=device)
            dead[::max(1, round(1 / args.dead_fraction))] = True
            steps[name].member.tracker.dead_mask = lambda dead=dead: dead
    levels = steps["matryoshka_batchtopk"].member.sae.widths
    spent = time_interleaved(steps, batches, args.warmup, device)
    n = len(batches) - args.warmup
    for arch, elapsed in spent.items():
        ev, l0 = held_out_metrics(evals[arch], held_out)
        print(f"{arch:<22} {batches[0].shape[0] * n / elapsed:>10,.0f} tokens/s   "
              f"{elapsed / n * 1000:6.1f} ms/step   EV {ev:.4f}   L0 {l0:6.1f}")
    ratio = spent["matryoshka_batchtopk"] / spent["batchtopk"]
    print(f"levels {levels}: matryoshka / batchtopk step time {ratio:.3f}x "
          f"(bound 1.3x: {'met' if ratio <= 1.3 else 'NOT met'})")
    if "matryoshka, AuxK per level" in spent:
        per_level = spent["matryoshka, AuxK per level"]
        print(f"with {args.dead_fraction:.0%} of the latents dead: AuxK per level / "
              f"batchtopk {per_level / spent['batchtopk']:.3f}x, / matryoshka with AuxK on the "
              f"whole SAE {per_level / spent['matryoshka_batchtopk']:.3f}x")


RUNNERS = {"mistudio": run_ours, "SAELens": run_saelens, "sparsify": run_sparsify}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--size", choices=sorted(SIZES), help="default: full on cuda, small on cpu")
    p.add_argument("--arch", choices=["topk", "relu", "both", "matryoshka"], default="both")
    p.add_argument("--widths", default="", help="--arch matryoshka: comma-separated levels")
    p.add_argument("--dead-fraction", type=float, default=0.0,
                   help="--arch matryoshka: treat this fraction of the latents as dead (AuxK "
                        "runs), and time use_matryoshka_aux_loss too")
    p.add_argument("--steps", type=int, default=0, help="timed steps (default 30 GPU / 6 CPU)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--dtype", default="auto", help="auto: bf16 autocast on GPU, fp32 on CPU")
    p.add_argument("--compile", action="store_true", help="torch.compile our dense step")
    p.add_argument("--lr", type=float, default=4e-4)
    p.add_argument("--l1", type=float, default=5.0)
    p.add_argument("--only", nargs="*", default=list(RUNNERS), help="libraries to run")
    p.add_argument("--threads", type=int, default=0,
                   help="CPU threads for every library (default: torch's choice)")
    p.add_argument("--from-trained", type=int, default=0, metavar="STEPS",
                   help="ReLU vs SAELens: train both STEPS steps from the same weights into "
                        "the sparse regime, then time --steps more from the same weights")
    p.add_argument("--target-l0", type=float, default=0.0,
                   help="with --from-trained: shift our encoder bias to this L0 before the "
                        "timed steps (for sizes too slow to train into the sparse regime)")
    p.add_argument("--crossover", default="",
                   help="comma-separated L0s: time our ReLU step sparse vs dense at each")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    size = args.size or ("full" if device.type == "cuda" else "small")
    d_in, d_sae, k, batch = SIZES[size]
    steps_n = args.steps or (30 if device.type == "cuda" else 6)
    dtype = args.dtype if args.dtype != "auto" else ("bfloat16" if device.type == "cuda"
                                                     else "float32")
    n = batch * (steps_n + args.warmup + args.from_trained)
    data, _ = sparse_features(n + 8192, d_in, d_sae // 2, seed=0, p_min=2e-4, p_max=0.02)
    data *= (d_in ** 0.5) / data.norm(dim=1).mean()  # Anthropic scaling, for every library
    data = data.to(device)
    batches = list(data[:n].split(batch))
    held_out = data[n:]
    print(f"device {device} ({torch.cuda.get_device_name() if device.type == 'cuda' else f'{torch.get_num_threads()} threads'}), "
          f"torch {torch.__version__}, size {size}: d_in {d_in}, d_sae {d_sae}, k {k}, "
          f"batch {batch}, {steps_n} timed steps after {args.warmup} warm-up, dtype {dtype}")
    print(f"CPU: {cpu_summary()}; torch kernels: {torch.backends.cpu.get_cpu_capability()}")
    if args.crossover:
        print("\n== relu: sparse vs dense kernels (this engine) ==")
        relu_crossover(args, device, d_in, d_sae, batch, data)
        return 0
    if args.from_trained or args.target_l0:
        print("\n== relu in the sparse regime: this engine vs SAELens ==")
        relu_sparse_regime(args, device, d_in, d_sae, batch, data)
        return 0
    if args.arch == "matryoshka":
        print("\n== matryoshka_batchtopk vs batchtopk (this engine, same width) ==")
        matryoshka_vs_batchtopk(args, device, d_in, d_sae, k, batches, held_out, dtype)
        return 0
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
