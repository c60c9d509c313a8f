"""Tokenize a dataset into fixed-length sequences (the format in :mod:`mistudio.data.tokenized`).

Two layouts:

- ``packed``: documents are concatenated into one stream (a separator token between
  documents), cut into rows of ``seq_len``; with ``prepend_bos`` every row starts with BOS
  followed by ``seq_len - 1`` stream tokens (as TransformerLens' ``tokenize_and_concatenate``
  and SAELens' pretokenizer do). The last, partial row is kept (padded) unless ``drop_last``.
- ``padded``: one document per row, truncated to ``seq_len`` (BOS included), padded with
  ``pad_token_id``.

Beside ``tokens.npy``/``lengths.npy``/``meta.json``/``COMPLETE`` the folder holds
``documents.npy`` (int64 ``[n_docs, 3]``: source row in ``documents.arrow``, start in the
stream, tokens kept; stream position ``p`` sits at row ``p // cap``, column
``p % cap + prepend_bos`` where ``cap = meta["stream_row_capacity"]``), ``token_counts.npy``
(int64 per vocabulary id, over every real token of ``tokens.npy``) and ``token_strings.json``
(each id's decoded text, for the browser). The fast (Rust) tokenizer runs on batches of
documents; memory stays bounded by one batch plus one partial row.
"""

from __future__ import annotations

import itertools
import json
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from mistudio.data.raw_store import RawCorpus, length_summary
from mistudio.data.token_writer import NpyRowWriter
from mistudio.data.tokenized import COMPLETE_MARKER, FORMAT_VERSION, tokenizer_fingerprint
from mistudio.errors import UserError
from mistudio.manifest import write_manifest
from mistudio.paths import atomic_write_json, check_free_space
from mistudio.reliability import crash_point

PACKINGS = ("packed", "padded")
SEPARATORS = ("eos", "bos", "none")
TOP_TOKENS = 100


@dataclass
class TokenizeSettings:
    seq_len: int = 128
    packing: str = "packed"
    prepend_bos: bool = True
    separator: str = "eos"  # packed only: token put between documents
    min_doc_tokens: int = 0  # documents with fewer tokens are left out
    drop_last: bool = False  # packed only: drop the final partial row
    max_sequences: int | None = None
    batch_docs: int = 2048

    @classmethod
    def from_dict(cls, d: dict | None) -> "TokenizeSettings":
        d = {k: v for k, v in (d or {}).items() if k in cls.__dataclass_fields__}
        s = cls(**d)
        s.validate()
        return s

    def to_dict(self) -> dict:
        return asdict(self)

    def identity(self) -> dict:
        """The settings that change the result (not batch size)."""
        d = self.to_dict()
        d.pop("batch_docs")
        return d

    def validate(self) -> None:
        try:
            self.seq_len = int(self.seq_len)
            self.min_doc_tokens = int(self.min_doc_tokens or 0)
            self.batch_docs = int(self.batch_docs)
            self.max_sequences = None if self.max_sequences in (None, "", 0) \
                else int(self.max_sequences)
        except (TypeError, ValueError):
            raise UserError("Context length, minimum tokens and limits must be whole numbers.",
                            hint="Check the tokenization settings.") from None
        self.prepend_bos = bool(self.prepend_bos)
        self.drop_last = bool(self.drop_last)
        if not 2 <= self.seq_len <= 1_048_576:
            raise UserError(f"A context length of {self.seq_len} tokens is not possible.",
                            hint="Use between 2 and 1,048,576 tokens (128-1024 is typical).")
        if self.packing not in PACKINGS:
            raise UserError(f"Unknown packing {self.packing!r}.",
                            hint="Use 'packed' (concatenate documents) or 'padded' (one per row).")
        if self.separator not in SEPARATORS:
            raise UserError(f"Unknown separator {self.separator!r}.", hint="Use eos, bos or none.")
        if self.min_doc_tokens < 0:
            raise UserError(f"The minimum document length (min_doc_tokens, --min-doc-tokens) "
                            f"cannot be {self.min_doc_tokens}.", hint="Use 0 to keep every "
                            "document, or a positive number of tokens.")
        if self.max_sequences is not None and self.max_sequences < 1:
            raise UserError(f"The sequence limit (max_sequences, --max-sequences) cannot be "
                            f"{self.max_sequences}.", hint="Use at least 1, or leave it out "
                            "to tokenize everything.")
        if not 1 <= self.batch_docs <= 100_000:
            raise UserError("The batch size must be between 1 and 100,000 documents.")


# ---------------------------------------------------------------- tokenizer


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


def load_tokenizer(path: str, gguf_file: str | None = None):
    """A Hugging Face tokenizer from a local folder (fast one when it exists)."""
    from mistudio.hf import transformers_names

    AutoTokenizer = transformers_names("AutoTokenizer")

    folder = Path(path)
    if not folder.exists():
        raise UserError(f"The tokenizer folder {folder} does not exist.",
                        hint="Pick a model folder with tokenizer files, or a registered model.")
    if not gguf_file and not any((folder / f).exists() for f in TOKENIZER_FILES):
        # transformers would build an empty tokenizer from config.json alone
        raise UserError(f"{folder} holds no tokenizer files ({', '.join(TOKENIZER_FILES)}).",
                        hint="Pick the folder of a saved model or tokenizer, or copy the "
                        "model's tokenizer files into it.")
    try:
        kwargs = {"gguf_file": gguf_file} if gguf_file else {}
        tok = AutoTokenizer.from_pretrained(str(folder), use_fast=True, **kwargs)
    except Exception as exc:
        raise UserError(f"No tokenizer could be loaded from {folder} ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0][:200] if str(exc) else ''}).",
                        hint="The folder needs tokenizer.json or tokenizer_config.json "
                        "(as saved by save_pretrained).") from None
    return tok


def encode_batch(tokenizer, texts: list[str]) -> list[list[int]]:
    """Token ids of each text, without special tokens (BOS/separators are added by us)."""
    backend = getattr(tokenizer, "backend_tokenizer", None) if tokenizer.is_fast else None
    if backend is not None and hasattr(backend, "encode_batch_fast"):
        # The Rust tokenizer directly: no offsets, no Python-side BatchEncoding.
        return [e.ids for e in backend.encode_batch_fast(texts, add_special_tokens=False)]
    return tokenizer(texts, add_special_tokens=False, return_attention_mask=False)["input_ids"]


def token_strings(tokenizer, vocab_size: int) -> dict:
    """Each id's decoded text and raw token (what ``tokenizer.decode([i])`` and
    ``convert_ids_to_tokens`` give), stored so browsing never needs the tokenizer."""
    ids = list(range(vocab_size))
    backend = getattr(tokenizer, "backend_tokenizer", None) if tokenizer.is_fast else None
    if backend is None:
        decoded = tokenizer.batch_decode([[i] for i in ids], skip_special_tokens=False)
        raw = tokenizer.convert_ids_to_tokens(ids)
    else:  # the Rust decoder in one call: ~10x faster than per-id Python decoding
        decoded = backend.decode_batch([[i] for i in ids], skip_special_tokens=False)
        if getattr(tokenizer, "clean_up_tokenization_spaces", False):
            decoded = [tokenizer.clean_up_tokenization(d) for d in decoded]
        raw = [backend.id_to_token(i) for i in ids]
    return {"decoded": decoded, "raw": [r if r is not None else "" for r in raw]}


# ---------------------------------------------------------------- the core


class _Result:
    def __init__(self):
        self.doc_rows: list[np.ndarray] = []
        self.doc_starts: list[np.ndarray] = []
        self.doc_lens: list[np.ndarray] = []
        self.full_lens: list[np.ndarray] = []
        self.lengths: list[np.ndarray] = []


def tokenize_corpus(corpus: RawCorpus, tokenizer, settings: TokenizeSettings, out_dir: Path,
                    ctx, *, info: dict | None = None) -> dict:
    """Write a complete tokenization of ``corpus`` into ``out_dir``; return its meta."""
    s = settings
    out_dir = Path(out_dir)
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (
        eos if eos is not None else 0)
    if s.prepend_bos and bos is None:
        raise UserError("This tokenizer has no BOS (beginning of sequence) token.",
                        hint="Turn off 'prepend BOS' for this model.")
    sep_id = None
    if s.packing == "packed" and s.separator != "none":
        sep_id = eos if s.separator == "eos" else bos
        if sep_id is None:
            raise UserError(f"This tokenizer has no {s.separator.upper()} token to separate "
                            "documents.", hint="Choose another separator, or 'none'.")
    vocab_size = len(tokenizer)
    cap = s.seq_len - int(s.prepend_bos)
    if cap < 1:
        raise UserError("The context length must leave room for a token after BOS.",
                        hint="Use a context length of at least 2.")
    n_docs_total = corpus.n_docs
    est_bytes = (n_docs_total * s.seq_len * 4 if s.packing == "padded"
                 else int(corpus.table["text"].nbytes / 3.0 * 4)) + 4 * vocab_size * 8
    check_free_space(out_dir, est_bytes, what="this tokenization")

    tokens_writer = NpyRowWriter(out_dir / "tokens.npy", s.seq_len, np.int32)
    counts = np.zeros(vocab_size, dtype=np.int64)
    res = _Result()
    pending = np.zeros(0, dtype=np.int32)
    stream_pos = 0
    n_short = n_truncated = n_docs_seen = 0
    stopped_early = False
    t0 = time.monotonic()

    def emit(rows: np.ndarray, lengths: np.ndarray) -> bool:
        """Write rows; False once ``max_sequences`` is reached."""
        nonlocal stopped_early
        if s.max_sequences is not None:
            room = s.max_sequences - tokens_writer.n_rows
            if rows.shape[0] >= room:
                rows, lengths = rows[:room], lengths[:room]
                stopped_early = True
        if rows.shape[0]:
            tokens_writer.append(rows)
            res.lengths.append(lengths.astype(np.int32))
            valid = np.arange(s.seq_len)[None, :] < lengths[:, None]
            counts[:] += np.bincount(rows[valid], minlength=vocab_size)[:vocab_size]
        return not stopped_early

    try:
        for start, texts in corpus.iter_texts(s.batch_docs):
            ctx.check_cancelled()
            ids = encode_batch(tokenizer, texts)
            n_docs_seen += len(ids)
            lens = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
            keep = lens >= max(1, s.min_doc_tokens)
            n_short += int((~keep).sum())
            kept = np.flatnonzero(keep)
            res.full_lens.append(lens[kept])
            res.doc_rows.append(kept + start)
            if s.packing == "packed":
                has_sep = np.ones(len(kept), dtype=np.int64) if sep_id is not None \
                    else np.zeros(len(kept), dtype=np.int64)
                if len(kept) and stream_pos == 0 and sep_id is not None:
                    has_sep[0] = 0  # nothing to separate the very first document from
                piece = lens[kept] + has_sep
                starts = stream_pos + np.cumsum(piece) - piece + has_sep
                res.doc_starts.append(starts)
                res.doc_lens.append(lens[kept])
                total = int(piece.sum())
                stream_pos += total
                flat = np.fromiter(
                    itertools.chain.from_iterable(
                        itertools.chain((sep_id,), ids[i]) if h else ids[i]
                        for i, h in zip(kept.tolist(), has_sep.tolist())),
                    dtype=np.int32, count=total)
                flat = np.concatenate([pending, flat]) if len(pending) else flat
                n_full = len(flat) // cap
                rows = flat[:n_full * cap].reshape(n_full, cap)
                if s.prepend_bos:
                    rows = np.hstack([np.full((n_full, 1), bos, dtype=np.int32), rows])
                pending = flat[n_full * cap:]
                going = emit(rows, np.full(n_full, s.seq_len, dtype=np.int32))
            else:
                n = len(kept)
                rows = np.full((n, s.seq_len), pad, dtype=np.int32)
                off = int(s.prepend_bos)
                if off:
                    rows[:, 0] = bos
                kept_lens = np.minimum(lens[kept], cap)
                n_truncated += int((lens[kept] > cap).sum())
                for r, (i, k) in enumerate(zip(kept.tolist(), kept_lens.tolist())):
                    rows[r, off:off + k] = ids[i][:k]
                first_row = tokens_writer.n_rows
                res.doc_starts.append((first_row + np.arange(n, dtype=np.int64)) * cap)
                res.doc_lens.append(kept_lens.astype(np.int64))
                going = emit(rows, (kept_lens + off).astype(np.int32))
            ctx.progress(start + len(texts), n_docs_total,
                         f"{start + len(texts):,}/{n_docs_total:,} documents, "
                         f"{tokens_writer.n_rows:,} sequences")
            if not going:
                break
        if s.packing == "packed" and len(pending) and not s.drop_last and not stopped_early:
            row = np.full((1, s.seq_len), pad, dtype=np.int32)
            off = int(s.prepend_bos)
            if off:
                row[0, 0] = bos
            row[0, off:off + len(pending)] = pending
            emit(row, np.array([off + len(pending)], dtype=np.int32))
        n_seq = tokens_writer.close()
    except BaseException:
        tokens_writer.abort()
        raise

    if n_seq == 0:
        if n_short and s.min_doc_tokens > 1:
            raise UserError(f"Tokenization produced no sequences: all {n_short} documents are "
                            f"shorter than {s.min_doc_tokens} tokens.",
                            hint="Lower the minimum document length, or the context length.")
        raise UserError("Tokenization produced no sequences: the tokenizer turned every "
                        "document into zero tokens.",
                        hint="The tokenizer is probably empty or broken; tokenize with the "
                        "model's own tokenizer (a folder with tokenizer.json).")
    lengths = np.concatenate(res.lengths)
    np.save(out_dir / "lengths.npy", lengths)
    documents = _documents(res, n_seq, cap, lengths, s)
    np.save(out_dir / "documents.npy", documents)
    np.save(out_dir / "token_counts.npy", counts)
    strings = token_strings(tokenizer, vocab_size)
    atomic_write_json(out_dir / "token_strings.json", strings)
    elapsed = time.monotonic() - t0
    n_tokens = int(lengths.astype(np.int64).sum())
    special = set(int(i) for i in getattr(tokenizer, "all_special_ids", []) if i is not None)
    meta = {
        "format_version": FORMAT_VERSION,
        "seq_len": s.seq_len, "n_seq": int(n_seq), "n_tokens": n_tokens,
        "n_docs": int(len(documents)),
        "tokenizer": (info or {}).get("tokenizer", getattr(tokenizer, "name_or_path", "")),
        "tokenizer_fingerprint": tokenizer_fingerprint(tokenizer),
        "vocab_size": vocab_size, "bos_token_id": bos, "eos_token_id": eos,
        "pad_token_id": pad, "separator_token_id": sep_id, "stream_row_capacity": cap,
        "documents_columns": ["source_row", "stream_start", "n_tokens"],
        **s.identity(),
        **(info or {}),
    }
    stats = tokenization_stats(counts, lengths, np.concatenate(res.full_lens), special,
                               strings["decoded"], n_seq=n_seq, seq_len=s.seq_len)
    stats.update({"n_docs_source": n_docs_total, "n_docs_read": n_docs_seen,
                  "n_docs_too_short": n_short, "n_docs_truncated": n_truncated,
                  "n_docs_used": int(len(documents)), "stopped_at_max_sequences": stopped_early,
                  "seconds": round(elapsed, 3),
                  "tokens_per_s": round(n_tokens / elapsed) if elapsed > 0 else None})
    meta["stats"] = stats
    atomic_write_json(out_dir / "meta.json", meta)
    write_manifest(out_dir, name=COMPLETE_MARKER)  # the marker is the manifest, written last
    return meta


def _documents(res: _Result, n_seq: int, cap: int, lengths: np.ndarray,
               s: TokenizeSettings) -> np.ndarray:
    rows = np.concatenate(res.doc_rows) if res.doc_rows else np.zeros(0, np.int64)
    starts = np.concatenate(res.doc_starts) if res.doc_starts else np.zeros(0, np.int64)
    lens = np.concatenate(res.doc_lens) if res.doc_lens else np.zeros(0, np.int64)
    # Clip to what was written (max_sequences, drop_last): the stream ends here.
    stream_end = (n_seq - 1) * cap + int(lengths[-1]) - int(s.prepend_bos) if n_seq else 0
    if s.packing == "padded":
        rows, starts, lens = rows[:n_seq], starts[:n_seq], lens[:n_seq]
    else:
        inside = starts < stream_end
        rows, starts, lens = rows[inside], starts[inside], lens[inside]
        lens = np.minimum(lens, stream_end - starts)
    return np.stack([rows, starts, lens], axis=1).astype(np.int64)


def tokenization_stats(counts: np.ndarray, lengths: np.ndarray, doc_token_lengths: np.ndarray,
                       special_ids: set, decoded: list[str], *, n_seq: int, seq_len: int) -> dict:
    """Token frequency, vocabulary coverage and length statistics of a tokenization."""
    content = counts.copy()
    for i in special_ids:
        if 0 <= i < len(content):
            content[i] = 0
    order = np.argsort(-content, kind="stable")[:TOP_TOKENS]
    top = [[int(i), decoded[int(i)], int(content[i])] for i in order if content[i] > 0]
    n_real = int(lengths.astype(np.int64).sum())
    return {
        "n_seq": int(n_seq), "n_tokens": n_real,
        "n_special_tokens": int(counts.sum() - content.sum()),
        "padding_fraction": float(1.0 - n_real / (n_seq * seq_len)) if n_seq else 0.0,
        "distinct_tokens": int((counts > 0).sum()),
        "vocab_coverage": float((counts > 0).sum() / len(counts)) if len(counts) else 0.0,
        "top_tokens": top,
        "doc_tokens": length_summary(doc_token_lengths),
    }


# ---------------------------------------------------------------- the job


def run_tokenize(params: dict, ctx) -> dict:
    """Job ``datasets.tokenize``: tokenize one dataset into its tokenization folder."""
    from mistudio.data.repository import DataRepos
    from mistudio.paths import atomic_dir

    repos = DataRepos.open(params["data_dir"])
    tok_id = params["tokenization_id"]
    created_row = bool(params.get("new_row"))
    try:
        ds = repos.datasets.require(params["dataset_id"])
        settings = TokenizeSettings.from_dict(params.get("settings"))
        ctx.progress(0, None, "Loading the tokenizer...")
        tokenizer = load_tokenizer(params["tokenizer_path"], params.get("gguf_file"))
        if not tokenizer.is_fast:
            ctx.log("This tokenizer has no fast (Rust) version; tokenizing will be slower.",
                    "warning")
        fp = tokenizer_fingerprint(tokenizer)
        expected = params.get("expected_fingerprint")
        if expected and expected != fp:
            raise UserError("The tokenizer changed while this job waited to start.",
                            hint="Start the tokenization again.")
        corpus = RawCorpus(repos.paths.entity_dir("datasets", ds.id))
        folder = repos.tokenization_dir(ds.id, tok_id)
        info = {"tokenizer": params.get("tokenizer_label") or params["tokenizer_path"],
                "tokenizer_path": params["tokenizer_path"], "model_id": params.get("model_id"),
                "dataset_id": ds.id, "tokenization_id": tok_id}
        ctx.log(f"Tokenizing {corpus.n_docs:,} documents of {ds.name!r} with "
                f"{info['tokenizer']} ({settings.packing}, context {settings.seq_len}).")
        with atomic_dir(folder) as tmp:
            meta = tokenize_corpus(corpus, tokenizer, settings, tmp, ctx, info=info)
        corpus.close()
        crash_point("tokenize.row.ready")  # the folder is in place, its row not yet ready
        repos.tokenizations.mark_ready(tok_id, meta, folder)
        st = meta["stats"]
        ctx.log(f"{meta['n_seq']:,} sequences, {meta['n_tokens']:,} tokens "
                f"({st['tokens_per_s'] or 0:,.0f} tokens/s).")
        return {"tokenization_id": tok_id, "dataset_id": ds.id, "n_seq": meta["n_seq"],
                "n_tokens": meta["n_tokens"], "path": str(folder)}
    except BaseException:
        if created_row:
            repos.tokenizations.delete(tok_id)
            folder = repos.tokenization_dir(params["dataset_id"], tok_id)
            if not (folder / COMPLETE_MARKER).exists():
                shutil.rmtree(folder, ignore_errors=True)
        else:  # a re-tokenization: the previous result stays as it was
            repos.tokenizations.update(tok_id, job_id="")
        raise
    finally:
        repos.close()


def read_token_strings(folder: Path) -> dict:
    return json.loads((Path(folder) / "token_strings.json").read_text(encoding="utf-8"))
