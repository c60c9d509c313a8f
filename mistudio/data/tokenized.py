"""The on-disk format of one tokenization of a dataset (the contract with extraction).

A tokenization folder holds:

- ``tokens.npy``  int32 ``[n_seq, seq_len]``, memory-mappable (``np.load(mmap_mode="r")``);
  positions past a sequence's length hold ``pad_token_id``.
- ``lengths.npy`` int32 ``[n_seq]``: real (non-padding) tokens in each sequence.
- ``meta.json``: ``format_version``, ``seq_len``, ``n_seq``, ``n_tokens`` (sum of lengths),
  ``tokenizer`` (name or path), ``tokenizer_fingerprint`` (see below), ``vocab_size``,
  ``bos_token_id``, ``eos_token_id``, ``pad_token_id``, ``prepend_bos``, ``packing``
  ("packed" | "padded"), ``dataset_id`` and further settings.
- ``COMPLETE``: written last; a folder without it is an unfinished tokenization.

Extraction checks ``tokenizer_fingerprint`` against the model's tokenizer and refuses a
mismatch, so the fingerprint must depend only on what changes token ids.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from mistudio.errors import UserError
from mistudio.paths import settled_dir

FORMAT_VERSION = 1
COMPLETE_MARKER = "COMPLETE"


def tokenizer_fingerprint(tokenizer) -> str:
    """A short hash of a tokenizer's vocabulary and special tokens (id-relevant content)."""
    vocab = tokenizer.get_vocab()
    h = hashlib.sha256()
    for tok, idx in sorted(vocab.items(), key=lambda kv: kv[1]):
        h.update(f"{idx}\t{tok}\n".encode("utf-8", "surrogatepass"))
    for name in ("bos_token_id", "eos_token_id", "pad_token_id", "unk_token_id"):
        h.update(f"{name}={getattr(tokenizer, name, None)}\n".encode())
    return h.hexdigest()[:16]


@dataclass
class TokenizedDataset:
    folder: Path

    def __post_init__(self):
        self.folder = settled_dir(self.folder)  # a re-tokenization killed mid-swap
        if not (self.folder / COMPLETE_MARKER).exists():
            raise UserError(f"The tokenization in {self.folder} is incomplete or missing.",
                            hint="Tokenize the dataset again.")

    @cached_property
    def meta(self) -> dict:
        return json.loads((self.folder / "meta.json").read_text(encoding="utf-8"))

    @cached_property
    def tokens(self) -> np.ndarray:
        return np.load(self.folder / "tokens.npy", mmap_mode="r")

    @cached_property
    def lengths(self) -> np.ndarray:
        return np.load(self.folder / "lengths.npy", mmap_mode="r")

    @property
    def n_seq(self) -> int:
        return int(self.tokens.shape[0])

    @property
    def seq_len(self) -> int:
        return int(self.tokens.shape[1])

    @property
    def fingerprint(self) -> str:
        return self.meta["tokenizer_fingerprint"]

    def valid_mask(self, rows: slice | np.ndarray) -> np.ndarray:
        """bool ``[len(rows), seq_len]``: True where a position holds a real token."""
        lengths = np.asarray(self.lengths[rows])
        return np.arange(self.seq_len)[None, :] < lengths[:, None]
