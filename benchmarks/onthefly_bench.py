"""Training on the fly vs its bounds, one process: forward-only rate f (the bare stopped
forward through the extraction's loop), training rate t from an activation set on disk,
and training on the fly, on the same model, tokens and SAE.

On a CPU the model and the trainer share the cores, so the bound is the serial one,
1/(1/f + 1/t); on a GPU it is min(f, t): the slower of the bare stopped forward and the
disk-set training (target: on the fly >= 0.9x of it). Prints the rates, the ratio to the
bound and the memory the shuffle buffer held; ``--json FILE`` also writes them.

    python benchmarks/onthefly_bench.py                  # CPU: GPT-2 shape d 256, 6 layers
    python benchmarks/onthefly_bench.py --gpu            # the GPU measurement, one command

``--gpu`` is the preset for a CUDA device: GPT-2-small's shape (d 768, 12 layers, hook after
block 6), the model in bfloat16 (as the app runs models on a GPU), TopK x32 (d_sae 24,576)
k 32, batch 4,096 tokens with bf16 autocast, a 65,536-row shuffle buffer (the default), 32
sequences per forward pass, 150 steps (614k tokens) per timed run over 5,120 sequences of
128 tokens, one untimed warm-up round (CUDA context, cuBLAS, allocator), then 5 rounds; any
flag given beside it overrides the preset. Expect two to three minutes on an H100, much of it
writing the disk set (~2 GB).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402


def build_assets(root: Path, d_model: int, layers: int, n_seq: int, seq_len: int):
    """A random-weight GPT-2 with a small trained tokenizer, and a tokenization of random ids."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import AutoModelForCausalLM, GPT2Config, PreTrainedTokenizerFast

    from mistudio.data.tokenized import COMPLETE_MARKER, tokenizer_fingerprint

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    text = ["the quick brown fox jumps over the lazy dog " * 4] * 50
    tok.train_from_iterator(text, trainers.BpeTrainer(
        vocab_size=1024, special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>",
                                   eos_token="<|endoftext|>", unk_token="<|endoftext|>")
    model_dir = root / "model"
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=1024, n_positions=seq_len, n_embd=d_model, n_layer=layers,
                     n_head=max(1, d_model // 64))
    AutoModelForCausalLM.from_config(cfg).save_pretrained(model_dir)
    fast.save_pretrained(model_dir)
    tok_dir = root / "tok"
    tok_dir.mkdir()
    rng = np.random.default_rng(0)
    ids = rng.integers(1, len(fast), size=(n_seq, seq_len)).astype(np.int32)
    ids[:, 0] = fast.bos_token_id
    np.save(tok_dir / "tokens.npy", ids)
    np.save(tok_dir / "lengths.npy", np.full(n_seq, seq_len, np.int32))
    (tok_dir / "meta.json").write_text(json.dumps({
        "format_version": 1, "seq_len": seq_len, "n_seq": n_seq, "n_tokens": n_seq * seq_len,
        "tokenizer": "bench", "tokenizer_fingerprint": tokenizer_fingerprint(fast),
        "bos_token_id": fast.bos_token_id, "prepend_bos": True, "packing": "packed"}))
    (tok_dir / COMPLETE_MARKER).write_text("ok")
    return model_dir, tok_dir


GPU_PRESET = {"device": "cuda", "d_model": 768, "layers": 12, "hook_layer": 6, "seqs": 5120,
              "expansion": 32.0, "k": 32, "batch": 4096, "buffer": 65536, "steps": 150,
              "rounds": 5, "warmup": 1, "model_dtype": "bfloat16", "dtype": "bfloat16",
              "batch_sequences": 32}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--gpu", action="store_true", help="the CUDA preset (see the module doc)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--d-model", type=int, default=256)
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--hook-layer", type=int, default=3)
    p.add_argument("--seqs", type=int, default=384)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--expansion", type=float, default=8.0)
    p.add_argument("--k", type=int, default=32)
    p.add_argument("--batch", type=int, default=1024)
    p.add_argument("--arch", default="topk")
    p.add_argument("--buffer", type=int, default=4096)
    p.add_argument("--steps", type=int, default=16, help="training steps per timed run")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--model-dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--dtype", default="auto", help="the trainer's matmul autocast dtype")
    p.add_argument("--batch-sequences", type=int, default=8, help="sequences per forward")
    p.add_argument("--json", default="", help="also write the results to this JSON file")
    p.add_argument("--warmup", type=int, default=0, help="untimed rounds first")
    argv = sys.argv[1:]
    args = p.parse_args(argv)
    if args.gpu:  # the preset, then whatever else was given on the command line
        p.set_defaults(**GPU_PRESET)
        args = p.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("--device cuda / --gpu: no CUDA device is visible to torch "
              f"{torch.__version__}.", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)

    from mistudio.activations.format import write_activation_set
    from mistudio.sae.config import TrainingConfig
    from mistudio.sae.data import ActivationSetSource
    from mistudio.sae.onthefly import ModelActivationSource
    from mistudio.sae.trainer import Trainer

    root = Path(tempfile.mkdtemp(prefix="otf_bench_"))
    model_dir, tok_dir = build_assets(root, args.d_model, args.layers, args.seqs, args.seq_len)
    hook = f"blocks.{args.hook_layer}.hook_resid_post"
    spec = {"model_folder": str(model_dir), "tokenization": str(tok_dir), "hook_name": hook,
            "buffer_rows": args.buffer, "batch_sequences": args.batch_sequences,
            "model_dtype": args.model_dtype}
    src = ModelActivationSource(spec, device=args.device)
    n = src.num_rows
    steps = args.steps
    gpu_name = (torch.cuda.get_device_name(args.device) if args.device.startswith("cuda")
                else "")
    print(f"device {args.device} {gpu_name} ({torch.get_num_threads()} threads), torch "
          f"{torch.__version__}; model {args.model_dtype}, trainer autocast {args.dtype}; "
          f"GPT-2 shape d {args.d_model} x {args.layers} layers, hook {hook}; {n:,} tokens; "
          f"SAE {args.arch} x{args.expansion:g} k {args.k}, batch {args.batch}; {steps} steps "
          f"per timed run, {args.rounds} rounds (f, t, on the fly in rotating order); "
          f"buffer {args.buffer:,} rows")

    def sync():
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()

    # the disk set: every row of the tokenization, extracted through the same loop
    bs = args.batch_sequences
    rows = [r.float().cpu().clone() for r in src._capture(
        iter([np.arange(i, min(args.seqs, i + bs)) for i in range(0, args.seqs, bs)]))]
    set_dir = write_activation_set(root / "set", torch.cat(rows).numpy(),
                                   {"model_name": "bench", "hook_point": hook},
                                   shard_rows=65536)
    del rows
    per_run = steps * args.batch
    seqs_per_run = -(-per_run // (args.seq_len - 1))

    def forward_only(r):  # f: the bare stopped forward, rows kept as extraction keeps them
        first = (r * seqs_per_run) % max(1, args.seqs - seqs_per_run)
        ids = np.arange(first, first + seqs_per_run)
        sync()
        t0 = time.perf_counter()
        got = sum(x.shape[0] for x in src._capture(
            iter(np.array_split(ids, max(1, len(ids) // args.batch_sequences)))))
        sync()
        return got / (time.perf_counter() - t0)

    def train(source, r):
        cfg = TrainingConfig(activation_path="x", architecture=args.arch, k=args.k,
                             expansion_factor=args.expansion, batch_size=args.batch,
                             total_tokens=per_run, normalize_activations="none",
                             metrics_every_steps=10, eval_tokens=0, device=args.device, seed=r,
                             dtype=args.dtype)
        tr = Trainer(cfg, source, None, device=args.device)
        sync()
        t0 = time.perf_counter()
        tr.run()
        sync()
        return per_run / (time.perf_counter() - t0)

    held = []

    def on_the_fly(r):
        s = ModelActivationSource(spec, device=args.device)
        rate = train(s, r)
        held.append(s.max_buffered_rows)
        return rate

    def bound_of(f_, t_):
        """CPU: the model and the trainer share the cores (serial); GPU: the slower one."""
        return 1 / (1 / f_ + 1 / t_) if args.device == "cpu" else min(f_, t_)

    runs = {"f": forward_only, "t": lambda r: train(ActivationSetSource(set_dir), r),
            "o": on_the_fly}
    for r in range(args.warmup):
        for k in runs:
            runs[k](1000 + r)
    rates = {k: [] for k in runs}
    for r in range(args.rounds):
        keys = list(runs)[r % 3:] + list(runs)[:r % 3]
        for k in keys:
            rates[k].append(runs[k](r))
        f_, t_, o_ = (rates[k][-1] for k in "fto")
        print(f"  round {r + 1}: f {f_:,.0f}  t {t_:,.0f}  on the fly {o_:,.0f} tokens/s; "
              f"bound {bound_of(f_, t_):,.0f}; ratio {o_ / bound_of(f_, t_):.3f}x")
    per_round = [o_ / bound_of(f_, t_) for f_, t_, o_ in zip(rates["f"], rates["t"], rates["o"])]
    f, t, o = (float(np.median(rates[k])) for k in "fto")
    serial = 1 / (1 / f + 1 / t)
    bound = bound_of(f, t)
    print(f"medians: forward only (f) {f:,.0f}; training from the disk set (t) {t:,.0f}; "
          f"serial bound {serial:,.0f}; training on the fly {o:,.0f} tokens/s")
    print(f"on the fly / bound ({'serial' if args.device == 'cpu' else 'min(f, t)'}): "
          f"{o / bound:.3f}x of the medians; median of the rounds' ratios "
          f"{float(np.median(per_round)):.3f}x (target >= 0.9)")
    print(f"buffer held at most {max(held):,} rows ({max(held) * src.d_in * 4 / 2**20:.1f} MiB) "
          f"of the {n:,}-row epoch ({n * src.d_in * 4 / 2**20:.1f} MiB)")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "device": args.device, "gpu": gpu_name, "torch": torch.__version__,
            "args": vars(args), "rates": rates, "per_round_ratio": per_round,
            "median": {"f": f, "t": t, "on_the_fly": o}, "bound": bound,
            "bound_kind": "serial" if args.device == "cpu" else "min(f, t)",
            "ratio_of_medians": o / bound, "median_ratio": float(np.median(per_round)),
            "buffer_rows_max": max(held)}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
