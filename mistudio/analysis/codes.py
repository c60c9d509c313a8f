"""Sparse codes: the SAE's non-zero activations per token, and their spill to disk.

The streaming pass writes each token's non-zero latents (CSR: ``offsets``, ``features``,
``values``) plus the token's place (``keys = seq * seq_len + pos``) into numbered chunk files
``work/codes_NNNNN.npz`` of the analysis folder. The per-feature pass reads them back chunk by
chunk, so host memory stays bounded whatever the number of tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

CHUNK_PATTERN = "codes_{:05d}.npz"


@dataclass
class CodeChunk:
    """Tokens ``first_row .. first_row + rows`` of the analysis, CSR over features."""

    first_row: int
    offsets: np.ndarray  # [rows + 1] int64
    features: np.ndarray  # [nnz] int32
    values: np.ndarray  # [nnz] float32
    keys: np.ndarray  # [rows] int64: seq * seq_len + pos

    @property
    def rows(self) -> int:
        return len(self.keys)

    def entry_rows(self) -> np.ndarray:
        """Global row of each entry."""
        return np.repeat(np.arange(self.first_row, self.first_row + self.rows, dtype=np.int64),
                         np.diff(self.offsets))


#: Pre-activations ``[rows, d_sae]`` float32 are computed in slices of about this size.
ENCODE_SLICE_BYTES = 64 * 2**20


def encode_csr(sae, x):
    """The SAE's non-zero activations of ``x [B, d_in]`` as torch CSR on x's device:
    ``(offsets [B+1] int64, features [nnz] int32, values [nnz] float32)``.

    TopK SAEs select from the pre-activations directly (no dense ``[B, d_sae]`` scatter);
    every other architecture runs its own ``encode`` (inference semantics) and keeps the
    non-zeros. Rows go through in slices so the dense pre-activations stay small."""
    import torch

    rows = max(1, ENCODE_SLICE_BYTES // (4 * sae.d_sae))
    if x.shape[0] <= rows:
        return _encode_slice(sae, x)
    parts = [_encode_slice(sae, x[i:i + rows]) for i in range(0, x.shape[0], rows)]
    offsets, base = [parts[0][0][:1]], 0
    for o, f, _ in parts:
        offsets.append(o[1:] + base)
        base += int(f.numel())
    return (torch.cat(offsets), torch.cat([p[1] for p in parts]),
            torch.cat([p[2] for p in parts]))


def _encode_slice(sae, x):
    import torch

    from mistudio.sae.architectures import BatchTopKSAE, TopKSAE

    B = x.shape[0]
    if isinstance(sae, TopKSAE) and not isinstance(sae, BatchTopKSAE):
        pre = sae.pre_acts(x)
        vals, idx = pre.topk(sae.k, dim=-1, sorted=False)
        vals = vals.float()
        keep = vals > 0
        if bool(keep.all()):  # the usual case: no masked gather needed
            counts = torch.full((B,), vals.shape[1], dtype=torch.int64, device=x.device)
            features = idx.reshape(-1).to(torch.int32)
            values = vals.reshape(-1)
        else:
            counts = keep.sum(dim=1)
            features = idx[keep].to(torch.int32)
            values = vals[keep]
    else:
        acts = sae.encode(x).float()
        keep = acts > 0
        counts = keep.sum(dim=1)
        rows_cols = keep.nonzero()
        features = rows_cols[:, 1].to(torch.int32)
        values = acts[keep]
    offsets = torch.zeros(B + 1, dtype=torch.int64, device=x.device)
    offsets[1:] = counts.cumsum(0)
    return offsets, features, values


class CodeSpill:
    """Numbered chunk files of sparse codes in ``folder``; appends and reads in order.

    Chunks read are kept in memory up to ``cache_bytes`` (the per-feature pass reads every
    chunk once per block of features: small spills are then read from disk once)."""

    def __init__(self, folder: str | Path, cache_bytes: int = 512 * 2**20):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.cache_bytes = int(cache_bytes)
        self._cache: dict[int, CodeChunk] = {}
        self._cached_bytes = 0

    def path(self, index: int) -> Path:
        return self.folder / CHUNK_PATTERN.format(index)

    def count(self) -> int:
        n = 0
        while self.path(n).exists():
            n += 1
        return n

    def truncate(self, keep: int) -> None:
        """Drop chunks from ``keep`` on (written after the last checkpoint)."""
        self._cache.clear()
        self._cached_bytes = 0
        for p in self.folder.glob("codes_*.npz"):
            try:
                if int(p.stem.split("_")[1]) >= keep:
                    p.unlink()
            except ValueError:
                p.unlink()

    def write(self, index: int, chunk: CodeChunk) -> None:
        self._cache.pop(index, None)
        tmp = self.folder / f".tmp_{index}.npz"
        with open(tmp, "wb") as fh:
            np.savez(fh, first_row=np.int64(chunk.first_row), offsets=chunk.offsets,
                     features=chunk.features, values=chunk.values, keys=chunk.keys)
        tmp.replace(self.path(index))

    def read(self, index: int) -> CodeChunk:
        hit = self._cache.get(index)
        if hit is not None:
            return hit
        with np.load(self.path(index)) as z:
            chunk = CodeChunk(int(z["first_row"]), z["offsets"], z["features"], z["values"],
                              z["keys"])
        size = sum(a.nbytes for a in (chunk.offsets, chunk.features, chunk.values, chunk.keys))
        if self._cached_bytes + size <= self.cache_bytes:
            self._cache[index] = chunk
            self._cached_bytes += size
        return chunk

    def chunks(self, n: int | None = None):
        for i in range(self.count() if n is None else n):
            yield self.read(i)


class ChunkBuilder:
    """Collects batches of codes until a chunk is big enough to write."""

    def __init__(self, first_row: int):
        self.first_row = first_row
        self.parts: list[tuple] = []
        self.rows = 0

    def add(self, offsets: np.ndarray, features: np.ndarray, values: np.ndarray,
            keys: np.ndarray) -> None:
        self.parts.append((offsets, features, values, keys))
        self.rows += len(keys)

    def build(self) -> CodeChunk:
        offs, base = [np.zeros(1, dtype=np.int64)], 0
        for o, *_ in self.parts:
            offs.append(o[1:] + base)
            base += int(o[-1])
        cat = (lambda i, dt: np.concatenate([p[i] for p in self.parts]).astype(dt, copy=False)
               if self.parts else np.zeros(0, dtype=dt))
        return CodeChunk(self.first_row, np.concatenate(offs), cat(1, np.int32),
                         cat(2, np.float32), cat(3, np.int64))
