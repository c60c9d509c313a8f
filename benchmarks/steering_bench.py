"""Steered generation speed vs plain cached generation, and the batched pair vs two runs.

One process, one model (the offline demo model SmolLM2-135M when its package is installed,
else a random model of the same shape), greedy decoding of a fixed number of tokens with the
KV cache (EOS ignored so every run makes the same number of tokens):

- plain: ``model.generate(do_sample=False, min_new_tokens=N, max_new_tokens=N)`` (transformers'
  own cached generation), and our loop with no hook (for reference);
- additive: one steered row, ``x += a * W_dec[f]`` at every position;
- clamp (TopK SAE, and ReLU SAE), d_sae 24,576: one feature clamped with the error term kept;
  for TopK also a feature moved to the top-k boundary (its encoder bias raised to the median
  k-th pre-activation over the prompt), so its pre-activation is mostly > 0 and the screen
  of the whole encoder runs on most steps (the worst case; the counts are printed);
- pair: baseline + additive steered in one batch, vs the two generated one after the other.

Our loop runs as the app runs it: on the CPU with oneDNN-prepacked linear weights
(mistudio/steering/packed.py). The same loop with MKL's plain ``F.linear`` (``packed=False``,
the engine before packing) runs beside it for one row and for the pair, so the table has the
before and the after of the same run.

Runs rotate in rounds so a change of load on the shared machine hits every variant alike.
Each run is timed by the wall clock and by the process's CPU time (on a machine shared with
other work the CPU time is the steadier measure of what the run itself costs: time spent
waiting for a core is not in it). Ratios are paired within a round (variant / plain of the
same round) and the median over rounds is reported, with the ratios of the median and of the
best rounds. Targets: steered >= 0.9 x plain (additive and clamp); pair >= 1.5 x two
sequential runs.

    python benchmarks/steering_bench.py                 # CPU, demo model
    python benchmarks/steering_bench.py --device cuda   # GPU figure
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
print = functools.partial(print, flush=True)  # noqa: A001 - progress shows while it runs


def load_model(args):
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    from mistudio.models.sources import demo_gguf_path

    gguf = demo_gguf_path()
    if gguf is not None and not args.random:
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name,
                                                     dtype=torch.float32)
        what = "SmolLM2-135M-Instruct (demo GGUF, dequantized to float32)"
    else:
        torch.manual_seed(0)
        cfg = LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536,
                          num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
                          tie_word_embeddings=True)
        model = AutoModelForCausalLM.from_config(cfg)
        what = "random model of SmolLM2-135M's shape (demo package not installed)"
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[args.dtype]
    return model.to(args.device, dtype).eval().requires_grad_(False), what


def make_sae(arch, d_in, d_sae, device, dtype):
    import torch

    from mistudio.sae.architectures import ReluSAE, TopKSAE

    sae = (TopKSAE(d_in, d_sae, k=64, seed=0) if arch == "topk"
           else ReluSAE(d_in, d_sae, seed=0))
    with torch.no_grad():
        sae.b_enc.fill_(-0.05 if arch == "relu" else 0.0)
    return sae.to(device).eval().requires_grad_(False)


def boundary_sae(sae, model, target, prompt, feature):
    """A copy of ``sae`` whose ``feature`` sits at the top-k boundary on this prompt."""
    import copy

    import torch

    from mistudio.steering.engine import hook_inputs

    x = hook_inputs(model, target, [prompt])[0][0].float()
    pre = sae.pre_acts(x)
    kth = pre.topk(sae.k, dim=-1).values[:, -1]
    out = copy.deepcopy(sae)
    with torch.no_grad():
        out.b_enc[feature] += float((kth - pre[:, feature]).median())
    return out


def main() -> int:
    import torch

    from mistudio.models import hooks
    from mistudio.steering import packed as packing
    from mistudio.steering.generate import Sampling, generate_rows
    from mistudio.steering.hook import RowPlan, SteeringHook

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--prompt-tokens", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--d-sae", type=int, default=24576)
    ap.add_argument("--layer", type=int, default=15)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--random", action="store_true", help="random weights even if the demo "
                    "model is installed")
    ap.add_argument("--step-table", action="store_true", help="also print the CPU time of one "
                    "decoding step by batch rows, packed weights vs MKL's F.linear")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model, what = load_model(args)
    cfg = model.config
    d = cfg.hidden_size
    hook_name = f"blocks.{args.layer}.hook_resid_post"
    target = hooks.resolve(hook_name, cfg.model_type, cfg.num_hidden_layers)
    dtype = next(model.parameters()).dtype
    saes = {a: make_sae(a, d, args.d_sae, args.device, torch.float32) for a in ("topk", "relu")}
    gen = torch.Generator().manual_seed(1)
    prompt = torch.randint(100, cfg.vocab_size - 100, (args.prompt_tokens,), generator=gen).tolist()
    s = Sampling(max_new_tokens=args.tokens)
    n = args.tokens
    feature = 123
    saes["boundary"] = boundary_sae(saes["topk"], model, target, prompt, feature)
    direction = 8.0 * saes["topk"].W_dec[feature]
    cuda = args.device.startswith("cuda")

    def timed(fn):
        if cuda:
            torch.cuda.synchronize()
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - t0, time.process_time() - c0

    def hf_plain():
        with torch.inference_mode():
            out = model.generate(torch.tensor([prompt], device=args.device),
                                 attention_mask=torch.ones(1, len(prompt), dtype=torch.long,
                                                           device=args.device),
                                 do_sample=False, max_new_tokens=n, min_new_tokens=n,
                                 pad_token_id=0)
        assert out.shape[1] == len(prompt) + n

    hooks_made = {}

    def rows(plans, sae=None, name=None, packed=None):
        hook = SteeringHook(target, plans, sae=sae, scope="all", prompt_len=len(prompt),
                            dtype=dtype, device=args.device)
        if name:
            hooks_made[name] = hook
        with hook.attached(model):
            out = generate_rows(model, prompt, len(plans), s, hook=hook, eos_ids=None,
                                packed=packed)
        assert all(len(o) == n for o in out)
        return out

    # the packed weights are built on the first generation of a loaded model: time that once
    t_pack = timed(lambda: packing.prepare(model))
    packed_used = packing.is_packed(model)
    steered_add = [None, RowPlan(add=direction)]
    assert rows(steered_add) == rows(steered_add, packed=False), "packed != plain F.linear"

    clamp = [RowPlan(clamps={feature: 10.0})]
    variants = {
        "plain (transformers generate)": lambda: hf_plain(),
        "plain (our loop, no hook)": lambda: rows([None]),
        "additive": lambda: rows([RowPlan(add=direction)]),
        "clamp TopK": lambda: rows(clamp, saes["topk"], "clamp TopK"),
        "clamp TopK at the boundary": lambda: rows(clamp, saes["boundary"], "boundary"),
        "clamp ReLU": lambda: rows(clamp, saes["relu"]),
        "pair batched": lambda: rows([None, RowPlan(add=direction)]),
        "pair sequential": lambda: (rows([None]), rows([RowPlan(add=direction)])),
        "plain (our loop, MKL F.linear)": lambda: rows([None], packed=False),
        "pair batched (MKL)": lambda: rows([None, RowPlan(add=direction)], packed=False),
        "pair sequential (MKL)": lambda: (rows([None], packed=False),
                                          rows([RowPlan(add=direction)], packed=False)),
    }
    steered = ("additive", "clamp TopK", "clamp TopK at the boundary", "clamp ReLU")
    tokens = {k: (2 * n if k.startswith("pair") else n) for k in variants}
    base_name = "plain (transformers generate)"
    print(f"model: {what}; device {args.device}, {args.dtype}, torch threads "
          f"{torch.get_num_threads()}; hook {hook_name}; d_sae {args.d_sae}; prompt "
          f"{len(prompt)} tokens, {n} new tokens per row (greedy, KV cache)")
    print(f"packed linear weights: {'in use' if packed_used else 'NOT in use'}; built in "
          f"{t_pack[0]:.2f} s wall, {t_pack[1]:.2f} s CPU (once per loaded model); packed and "
          "plain F.linear gave the same tokens")
    for fn in variants.values():  # warm-up (and the TopK screens are built here, once)
        fn()
    for name in ("clamp TopK", "boundary"):
        reader = hooks_made[name].reader
        if reader.screen is not None:
            reader.screen.counts.update(calls=0, skipped=0, screened=0, resolved=0)
    rates = {clock: {k: [] for k in variants} for clock in ("wall", "cpu")}
    names = list(variants)
    for r in range(args.rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for k in order:
            wall, cpu = timed(variants[k])
            rates["wall"][k].append(tokens[k] / wall)
            rates["cpu"][k].append(tokens[k] / max(cpu, 1e-9))
        w = rates["wall"]
        print(f"round {r + 1} (wall tokens/s): " + ", ".join(f"{k} {w[k][-1]:.1f}" for k in names)
              + f"; pair {w['pair batched'][-1] / w['pair sequential'][-1]:.2f}x"
              + f"; pair (MKL) {w['pair batched (MKL)'][-1] / w['pair sequential (MKL)'][-1]:.2f}x"
              + "".join(f"; {k} {w[k][-1] / w[base_name][-1]:.2f}x" for k in steered))
    for clock, what_clock in (("wall", "wall clock"), ("cpu", "process CPU time")):
        rt = rates[clock]
        print(f"\n== {what_clock} ==")
        med = {k: statistics.median(v) for k, v in rt.items()}
        print("median tokens/s: " + ", ".join(f"{k} {med[k]:.2f}" for k in names))
        print("ratios: median of per-round ratios | ratio of medians | best rounds "
              "(target in brackets)")
        for k in steered:
            paired = statistics.median(a / b for a, b in zip(rt[k], rt[base_name]))
            own = statistics.median(a / b for a, b in zip(rt[k], rt["plain (our loop, no hook)"]))
            print(f"  {k:<27} vs plain generate {paired:.2f}x | {med[k] / med[base_name]:.2f}x"
                  f" | {max(rt[k]) / max(rt[base_name]):.2f}x  (>= 0.9); vs our unhooked "
                  f"loop {own:.2f}x")
        for a_, b_, label in (
                ("pair batched", "pair sequential", "pair batched vs sequential"),
                ("pair batched (MKL)", "pair sequential (MKL)", "  same, MKL F.linear (before)"),
                ("pair batched", "pair sequential (MKL)", "  packed pair vs MKL sequential"),
                ("plain (our loop, no hook)", "plain (our loop, MKL F.linear)",
                 "one row: packed vs MKL")):
            pair = statistics.median(a / b for a, b in zip(rt[a_], rt[b_]))
            print(f"  {label:<27} {pair:.2f}x | {med[a_] / med[b_]:.2f}x | "
                  f"{max(rt[a_]) / max(rt[b_]):.2f}x" + ("  (>= 1.5)" if a_ == "pair batched"
                                                         and b_ == "pair sequential" else ""))
    for name, label in (("clamp TopK", "clamp TopK"), ("boundary", "clamp TopK at the boundary")):
        screen = hooks_made[name].reader.screen
        if screen is not None:
            c = screen.counts
            print(f"{label}: TopK screen ({screen.kind}) over {c['calls']} decoding steps: "
                  f"{c['skipped']} skipped (pre-activation <= 0), {c['screened']} screened, "
                  f"{c['resolved']} of those resolved latents near the k-th exactly")
    if args.step_table:
        step_table(model, prompt, args.rounds)
    return 0


def step_table(model, prompt, rounds, sizes=(1, 2, 3, 4, 6, 8), steps=16):
    """CPU time of one cached decoding step of ``rows`` rows, median over rounds."""
    import torch

    from mistudio.steering import packed as packing
    from mistudio.steering.generate import cache_argument

    arg = cache_argument(model)
    device = next(model.parameters()).device

    def step_time(rows):
        ids = torch.tensor([prompt] * rows, device=device)
        with torch.inference_mode():
            res = model(input_ids=ids, use_cache=True, logits_to_keep=1)
            cache, tok = getattr(res, arg), res.logits[:, -1].argmax(-1, keepdim=True)
            c0 = time.process_time()
            for _ in range(steps):
                res = model(input_ids=tok, use_cache=True, logits_to_keep=1, **{arg: cache})
                tok = res.logits[:, -1].argmax(-1, keepdim=True)
        return (time.process_time() - c0) / steps

    times = {(p, m): [] for p in (True, False) for m in sizes}
    for _ in range(rounds):
        for use in (True, False):
            with packing.packed_linears(model, use):
                for m in sizes:
                    times[use, m].append(step_time(m))
    print("\n== one decoding step by batch rows (process CPU time, median of rounds) ==")
    for use, label in ((False, "MKL F.linear"), (True, "packed (oneDNN)")):
        med = {m: statistics.median(times[use, m]) for m in sizes}
        print(f"  {label:<16} " + "  ".join(f"{m} rows {med[m] * 1e3:.1f} ms ({med[m] / med[1]:.2f}x)"
                                         for m in sizes))


if __name__ == "__main__":
    raise SystemExit(main())
