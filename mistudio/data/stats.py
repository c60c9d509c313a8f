"""Job ``datasets.stats``: recompute a dataset's stored statistics from its files.

Statistics are normally computed once, while importing and tokenizing; this job
rebuilds them (after an upgrade, or if ``stats.json`` was lost) without re-reading the
source or re-tokenizing.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pyarrow.compute as pc

from mistudio.data.raw_store import MAX_CATEGORY_VALUES, TOP_CATEGORY_VALUES, RawCorpus, \
    length_summary
from mistudio.data.sources import is_text_type
from mistudio.data.tokenize import read_token_strings, tokenization_stats
from mistudio.data.tokenized import TokenizedDataset
from mistudio.paths import atomic_write_json


def raw_stats(corpus: RawCorpus, ctx=None) -> dict:
    lengths = pc.utf8_length(corpus.table["text"]).to_numpy(zero_copy_only=False).astype(np.int64)
    categories = {}
    for name in corpus.columns[1:]:
        col = corpus.table[name]
        if not (is_text_type(col.type) or str(col.type) in ("bool",) or "int" in str(col.type)):
            continue
        counts = Counter({str(v["values"]): v["counts"] for v in pc.value_counts(col).to_pylist()
                          if v["values"] is not None})
        if 0 < len(counts) <= MAX_CATEGORY_VALUES:
            categories[name] = [[k, c] for k, c in counts.most_common(TOP_CATEGORY_VALUES)]
    return {"n_docs": corpus.n_docs, "n_chars": int(lengths.sum()),
            "columns": [{"name": f.name, "type": str(f.type)} for f in corpus.table.schema],
            "char_length": length_summary(lengths), "categories": categories}


def tokenization_stats_from_folder(folder, ctx=None) -> dict:
    td = TokenizedDataset(folder)
    meta = td.meta
    vocab = int(meta["vocab_size"])
    counts = np.zeros(vocab, dtype=np.int64)
    step = max(1, 4_000_000 // td.seq_len)
    for start in range(0, td.n_seq, step):
        if ctx is not None:
            ctx.check_cancelled()
        rows = np.asarray(td.tokens[start:start + step])
        mask = td.valid_mask(slice(start, start + step))
        counts += np.bincount(rows[mask], minlength=vocab)[:vocab]
    docs = np.load(td.folder / "documents.npy")
    strings = read_token_strings(td.folder)
    special = {meta.get(k) for k in ("bos_token_id", "eos_token_id", "pad_token_id",
                                     "separator_token_id") if meta.get(k) is not None}
    old = meta.get("stats", {})
    # Full document lengths before truncation are not on disk; the kept lengths stand in.
    stats = tokenization_stats(counts, np.asarray(td.lengths), docs[:, 2], special,
                               strings["decoded"], n_seq=td.n_seq, seq_len=td.seq_len)
    for key in ("n_docs_source", "n_docs_too_short", "n_docs_truncated", "n_docs_used",
                "seconds", "tokens_per_s"):
        if key in old:
            stats[key] = old[key]
    np.save(td.folder / "token_counts.npy", counts)
    meta = {**meta, "stats": stats}
    atomic_write_json(td.folder / "meta.json", meta)
    return stats


def run_stats(params: dict, ctx) -> dict:
    from mistudio.data.repository import DataRepos

    repos = DataRepos.open(params["data_dir"])
    try:
        ds = repos.datasets.require(params["dataset_id"])
        folder = repos.paths.entity_dir("datasets", ds.id)
        toks = [t for t in repos.tokenizations.list(ds.id) if t.status == "ready"]
        total = 1 + len(toks)
        ctx.progress(0, total, "Document statistics...")
        corpus = RawCorpus(folder)
        stats = {**ds.stats, **raw_stats(corpus, ctx)}
        corpus.close()
        atomic_write_json(folder / "stats.json", stats)
        repos.datasets.update(ds.id, stats=stats, n_docs=stats["n_docs"], n_chars=stats["n_chars"])
        for i, tok in enumerate(toks, 1):
            ctx.check_cancelled()
            ctx.progress(i, total, f"Token statistics of {tok.id}...")
            tstats = tokenization_stats_from_folder(tok.path, ctx)
            repos.tokenizations.update(tok.id, stats=tstats)
        ctx.progress(total, total, "Done.")
        return {"dataset_id": ds.id, "tokenizations": [t.id for t in toks]}
    finally:
        repos.close()
