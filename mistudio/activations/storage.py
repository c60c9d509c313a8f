"""How activation rows are stored on disk: the dtypes, their numpy storage (bfloat16 as its
uint16 bit pattern), exact conversions to and from float32, and shard sizing."""

from __future__ import annotations

import numpy as np

STORE_DTYPES = ("float32", "float16", "bfloat16")
_NP_STORAGE = {"float32": np.float32, "float16": np.float16, "bfloat16": np.uint16}
_ITEMSIZE = {"float32": 4, "float16": 2, "bfloat16": 2}
DEFAULT_SHARD_BYTES = 128 * 2**20


def default_shard_rows(d_in: int, dtype: str) -> int:
    """About 128 MB per shard: big enough for fast sequential I/O, small enough to resume."""
    rows = DEFAULT_SHARD_BYTES // max(1, d_in * _ITEMSIZE[dtype])
    return int(max(1024, min(1 << 20, rows)))


def bytes_per_row(d_in: int, dtype: str) -> int:
    """Disk bytes for one row including its position record."""
    return d_in * _ITEMSIZE[dtype] + 8


# ---------------------------------------------------------------- dtype conversions


def to_storage(array, dtype: str) -> np.ndarray:
    """A float array or torch tensor -> the numpy array stored on disk for ``dtype``."""
    if is_torch(array):
        import torch

        t = array.detach()
        if dtype == "bfloat16":
            return t.to(torch.bfloat16).contiguous().view(torch.int16).cpu().numpy().view(np.uint16)
        t = t.to(torch.float16 if dtype == "float16" else torch.float32)
        return t.cpu().numpy()
    arr = np.asarray(array)
    if dtype == "bfloat16":
        import torch

        t = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
        return t.to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    return np.ascontiguousarray(arr, dtype=_NP_STORAGE[dtype])


def from_storage(stored: np.ndarray, dtype: str) -> np.ndarray:
    """Stored rows -> float32 numpy (bf16 converted exactly through torch)."""
    if dtype == "bfloat16":
        import torch

        t = torch.from_numpy(np.require(stored, requirements=["C", "W"]).view(np.int16))
        t = t.view(torch.bfloat16)
        return t.float().numpy()
    return np.asarray(stored, dtype=np.float32)


def is_torch(x) -> bool:
    return type(x).__module__.startswith("torch")
