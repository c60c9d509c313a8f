"""Steered generation speed vs plain cached generation, and the batched pair vs two runs.

One process, one model (the offline demo model SmolLM2-135M when its package is installed,
else a random model of the same shape), greedy decoding of a fixed number of tokens with the
KV cache (EOS ignored so every run makes the same number of tokens):

- plain: ``model.generate(do_sample=False, min_new_tokens=N, max_new_tokens=N)`` (transformers'
  own cached generation), and our loop with no hook (for reference);
- additive: one steered row, ``x += a * W_dec[f]`` at every position;
- clamp (TopK SAE, and ReLU SAE), d_sae 24,576: one feature clamped with the error term kept;
- pair: baseline + additive steered in one batch, vs the two generated one after the other.

Runs rotate in rounds so a change of load on the shared machine hits every variant alike;
each round's ratios are printed, then the ratios of each variant's best round (least
disturbed by other processes) and of the medians. Targets: steered >= 0.9 x plain (additive
and clamp); pair >= 1.5 x two sequential runs.

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


def main() -> int:
    import torch

    from mistudio.models import hooks
    from mistudio.steering.generate import Sampling, generate_rows
    from mistudio.steering.hook import RowPlan, SteeringHook

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--tokens", type=int, default=48)
    ap.add_argument("--prompt-tokens", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--d-sae", type=int, default=24576)
    ap.add_argument("--layer", type=int, default=15)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--random", action="store_true", help="random weights even if the demo "
                    "model is installed")
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
    direction = 8.0 * saes["topk"].W_dec[feature]

    def sync():
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()

    def timed(fn):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        return time.perf_counter() - t0

    def hf_plain():
        with torch.inference_mode():
            out = model.generate(torch.tensor([prompt], device=args.device),
                                 attention_mask=torch.ones(1, len(prompt), dtype=torch.long,
                                                           device=args.device),
                                 do_sample=False, max_new_tokens=n, min_new_tokens=n,
                                 pad_token_id=0)
        assert out.shape[1] == len(prompt) + n

    def rows(plans, sae=None):
        hook = SteeringHook(target, plans, sae=sae, scope="all", prompt_len=len(prompt),
                            dtype=dtype, device=args.device)
        with hook.attached(model):
            out = generate_rows(model, prompt, len(plans), s, hook=hook, eos_ids=None)
        assert all(len(o) == n for o in out)

    variants = {
        "plain (transformers generate)": lambda: hf_plain(),
        "plain (our loop, no hook)": lambda: rows([None]),
        "additive": lambda: rows([RowPlan(add=direction)]),
        "clamp TopK": lambda: rows([RowPlan(clamps={feature: 10.0})], saes["topk"]),
        "clamp ReLU": lambda: rows([RowPlan(clamps={feature: 10.0})], saes["relu"]),
        "pair batched": lambda: rows([None, RowPlan(add=direction)]),
        "pair sequential": lambda: (rows([None]), rows([RowPlan(add=direction)])),
    }
    tokens = {k: (2 * n if k.startswith("pair") else n) for k in variants}
    print(f"model: {what}; device {args.device}, {args.dtype}, torch threads "
          f"{torch.get_num_threads()}; hook {hook_name}; d_sae {args.d_sae}; prompt "
          f"{len(prompt)} tokens, {n} new tokens per row (greedy, KV cache)")
    for fn in variants.values():  # warm-up
        fn()
    rates: dict[str, list[float]] = {k: [] for k in variants}
    names = list(variants)
    for r in range(args.rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for k in order:
            rates[k].append(tokens[k] / timed(variants[k]))
        base = rates["plain (transformers generate)"][-1]
        print(f"round {r + 1}: " + ", ".join(f"{k} {rates[k][-1]:.1f}" for k in names)
              + f" tokens/s; pair ratio {rates['pair batched'][-1] / rates['pair sequential'][-1]:.2f}"
              + f"; additive {rates['additive'][-1] / base:.2f}x, clamp TopK "
                f"{rates['clamp TopK'][-1] / base:.2f}x")
    # The best round of each variant is its speed with the least interference from other
    # processes (a shared machine); the medians are printed too.
    for label, pick in (("best round", max), ("median", statistics.median)):
        val = {k: pick(v) for k, v in rates.items()}
        base, own = val["plain (transformers generate)"], val["plain (our loop, no hook)"]
        print(f"\n{label} tokens/s: " + ", ".join(f"{k} {val[k]:.2f}" for k in names))
        print(f"ratios ({label}; target in brackets):")
        for k in ("additive", "clamp TopK", "clamp ReLU"):
            print(f"  {k:<12} vs plain generate {val[k] / base:.2f}x (>= 0.9)   vs our "
                  f"unhooked loop {val[k] / own:.2f}x")
        print(f"  pair batched vs two sequential runs "
              f"{val['pair batched'] / val['pair sequential']:.2f}x (>= 1.5)")
    pair = statistics.median(b / q for b, q in zip(rates["pair batched"],
                                                    rates["pair sequential"]))
    print(f"median of the per-round pair ratios {pair:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
