"""Extraction throughput vs a bare forward pass stopped at the same layer.

Same model (GPT-2 shape, random weights), same batches, same device, one process:

- baseline: token ids -> device, HF forward with a hook that stops it after block L
  (nothing copied off the device, nothing written);
- extraction: the real ``activations.extract`` job (valid-position selection, storage dtype,
  pinned host copies, background shard writer, statistics) writing to a temporary folder.

Runs alternate in pairs (bare then extraction, then the other way round, ...) so that a
change of load on a shared machine hits both alike; each pair's ratio is printed, then the
median ratio and its spread (target: extraction >= 0.9 x baseline).

    python benchmarks/extract_bench.py                     # CPU-sized defaults
    python benchmarks/extract_bench.py --gpt2small --device cuda   # H100/H200 reference shape
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def build_assets(root: Path, args) -> tuple[Path, Path]:
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import AutoModelForCausalLM, GPT2Config, PreTrainedTokenizerFast

    from mistudio.data.tokenized import COMPLETE_MARKER, tokenizer_fingerprint

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.train_from_iterator(["the quick brown fox jumps over the lazy dog"] * 20,
                            trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"]))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>",
                                   eos_token="<|endoftext|>")
    model_dir = root / "model"
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=50257, n_positions=max(1024, args.seq), n_embd=args.d_model,
                     n_layer=args.n_layers, n_head=args.heads)
    AutoModelForCausalLM.from_config(cfg).save_pretrained(model_dir)
    fast.save_pretrained(model_dir)
    tok_dir = root / "tok"
    tok_dir.mkdir()
    n_seq = args.batch * args.batches
    rng = np.random.default_rng(0)
    ids = rng.integers(1, len(fast), size=(n_seq, args.seq), dtype=np.int32)
    ids[:, 0] = fast.bos_token_id
    np.save(tok_dir / "tokens.npy", ids)
    np.save(tok_dir / "lengths.npy", np.full(n_seq, args.seq, np.int32))
    (tok_dir / "meta.json").write_text(json.dumps({
        "format_version": 1, "seq_len": args.seq, "n_seq": n_seq, "n_tokens": n_seq * args.seq,
        "tokenizer": "bench", "tokenizer_fingerprint": tokenizer_fingerprint(fast),
        "bos_token_id": fast.bos_token_id, "pad_token_id": None, "prepend_bos": True}))
    (tok_dir / COMPLETE_MARKER).write_text("ok")
    return model_dir, tok_dir


def bare_forward(model, tok_dir: Path, args, device: str) -> float:
    """tokens/s of the forward pass alone, stopped after block ``layer``."""
    import torch

    class Stop(Exception):
        pass

    def stop(*_):
        raise Stop()

    tokens = np.load(tok_dir / "tokens.npy", mmap_mode="r")
    block = model.transformer.h[args.layer]
    handle = block.register_forward_hook(stop)
    n = 0
    try:
        with torch.inference_mode():
            _sync(device)
            t0 = time.perf_counter()
            for s in range(0, tokens.shape[0], args.batch):
                ids = torch.from_numpy(np.asarray(tokens[s:s + args.batch]).astype(np.int64))
                ids = ids.to(device, non_blocking=True)
                try:
                    model(input_ids=ids, use_cache=False)
                except Stop:
                    pass
                n += ids.numel()
            _sync(device)
            dt = time.perf_counter() - t0
    finally:
        handle.remove()
    return n / dt


def extraction(model_dir: Path, tok_dir: Path, out: Path, args, device: str) -> float:
    import shutil

    from mistudio.activations.extract import run
    from mistudio.jobs.context import JobContext

    shutil.rmtree(out, ignore_errors=True)
    hook = f"blocks.{args.layer}.hook_resid_post"
    params = {"model_folder": str(model_dir), "tokenization": str(tok_dir),
              "hook_points": [hook], "outputs": {hook: {"folder": str(out / "set")}},
              "device": device, "model_dtype": args.dtype, "store_dtype": args.store_dtype,
              "batch_size": args.batch, "skip_bos": False, "max_tokens": 0}
    result = run(params, JobContext.standalone(out / "job"))
    TIMINGS.append(result["timing"])
    return result["tokens_per_s"]


TIMINGS: list[dict] = []  # each extraction run's breakdown (forward, waits, last write)


def torch_version() -> str:
    import torch

    return f"{torch.__version__} (kernels {torch.backends.cpu.get_cpu_capability()})"


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="auto", help="model dtype (auto: bf16 on GPU, fp32 CPU)")
    p.add_argument("--store-dtype", default=None, help="default: same as the model dtype")
    p.add_argument("--d-model", type=int, default=256)
    p.add_argument("--n-layers", type=int, default=6)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--layer", type=int, default=3)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--batches", type=int, default=8, help="batches in one run (one chunk)")
    p.add_argument("--pairs", type=int, default=8, help="bare/extraction pairs, alternating")
    p.add_argument("--gpt2small", action="store_true",
                   help="GPT-2-small shape: d 768, 12 layers, 12 heads, layer 6, 64x128, "
                   "50 batches a run")
    args = p.parse_args()
    if args.gpt2small:
        args.d_model, args.n_layers, args.heads, args.layer = 768, 12, 12, 6
        args.batch, args.seq, args.batches = 64, 128, 50

    from mistudio.hardware import resolve_device, resolve_dtype
    from mistudio.models.pool import MODEL_POOL

    device = resolve_device(args.device)
    if args.device not in ("auto", "cpu") and device == "cpu":
        print(f"--device {args.device} asked, but PyTorch sees no CUDA GPU", file=sys.stderr)
        return 2
    args.dtype = resolve_dtype(args.dtype, device)
    args.store_dtype = args.store_dtype or args.dtype
    with tempfile.TemporaryDirectory(prefix="extract_bench_") as tmp:
        root = Path(tmp)
        model_dir, tok_dir = build_assets(root, args)
        model = MODEL_POOL.get(model_dir, dtype=args.dtype, device=device).model  # shared
        bare_forward(model, tok_dir, args, device)  # warm-up (kernels, allocator, page cache)
        extraction(model_dir, tok_dir, root / "out", args, device)
        shape = (f"GPT-2 shape d{args.d_model} x{args.n_layers} layers, stop after layer "
                 f"{args.layer}, batch {args.batch}x{args.seq}, {args.batches} batches a run, "
                 f"{device} {args.dtype}, stored {args.store_dtype}")
        if device.startswith("cuda"):
            import torch

            shape += f", {torch.cuda.get_device_name()}"
        from mistudio.hardware import cpu_summary

        print(shape, flush=True)
        print(f"CPU: {cpu_summary()}; torch {torch_version()}, {torch_threads()} threads",
              flush=True)
        bases, exts, ratios = [], [], []
        for i in range(args.pairs):
            order = ("bare", "ext") if i % 2 == 0 else ("ext", "bare")
            got = {}
            for which in order:
                got[which] = (bare_forward(model, tok_dir, args, device) if which == "bare"
                              else extraction(model_dir, tok_dir, root / "out", args, device))
            bases.append(got["bare"])
            exts.append(got["ext"])
            ratios.append(got["ext"] / got["bare"])
            print(f"pair {i + 1:>2} ({order[0]} first): bare {got['bare']:>12,.0f} tokens/s   "
                  f"extraction {got['ext']:>12,.0f} tokens/s   ratio {ratios[-1]:.3f}",
                  flush=True)
        runs = TIMINGS[-args.pairs:]
        part = {k: float(np.median([t[k] / t["total_s"] for t in runs]))
                for k in ("forward_s", "buffer_wait_s", "final_write_s")}
        print(f"extraction time (median share): forward {part['forward_s']:.1%}, waiting for "
              f"a free buffer {part['buffer_wait_s']:.1%}, last shard write "
              f"{part['final_write_s']:.1%}, the rest (selection, casts, hand-off) "
              f"{1 - sum(part.values()):.1%}")
        r = np.array(ratios)
        q1, med, q3 = np.percentile(r, [25, 50, 75])
        print(f"bare forward stopped at layer {args.layer}: median {np.median(bases):>12,.0f} "
              "tokens/s")
        print(f"extraction to disk            : median {np.median(exts):>12,.0f} tokens/s")
        print(f"ratio extraction / bare       : median {med:.3f} over {len(r)} pairs "
              f"(interquartile {q1:.3f}-{q3:.3f}, min {r.min():.3f}, max {r.max():.3f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
