"""One shard's rows streamed to disk as they arrive, with its statistics.

The shard writer used to keep a shard's rows in memory and, once the shard was full (or at
the end), concatenate them, convert them to float64 for the statistics and write and fsync
the file in one go. At the end of an extraction that whole write happened after the last
forward pass, synchronously: at d 256 on a fast CPU about a tenth of the run
(``benchmarks/extract_bench.py``). Now each chunk is written (page cache) and added to the
float64 sums as it arrives, on the writer's thread while the model computes the next batch;
written data is flushed to the disk every ``SYNC_BYTES`` so that the final ``fsync`` has
little left; finishing rewrites the header with the row count and renames the file into
place. Until then it is a hidden ``.partial`` file, which the writer deletes on reopening.
"""

from __future__ import annotations

import os
import struct
import uuid
from pathlib import Path

import numpy as np

from mistudio.reliability import crash_point

HEADER_BYTES = 128  # a fixed-size .npy (1.0) header, rewritten with the real shape at the end
SYNC_BYTES = 8 * 2**20


def npy_header(dtype, shape: tuple) -> bytes:
    """A .npy 1.0 header of exactly HEADER_BYTES bytes (numpy pads headers with spaces)."""
    text = "{'descr': %r, 'fortran_order': False, 'shape': %r, }" % (
        np.lib.format.dtype_to_descr(np.dtype(dtype)), tuple(int(s) for s in shape))
    length = HEADER_BYTES - 10
    if len(text) + 1 > length:
        raise ValueError(f"shape {shape} does not fit a {HEADER_BYTES}-byte .npy header")
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", length) + (text.ljust(length - 1) + "\n") \
        .encode("latin1")


class StreamingShard:
    """``add(stored, as_float32)`` chunks of one shard; ``finish(path)`` puts it in place."""

    def __init__(self, folder: Path, final_name: str, d_in: int, dtype):
        self.tmp = folder / f".{final_name}.{uuid.uuid4().hex[:8]}.partial"
        self.d_in = d_in
        self.dtype = np.dtype(dtype)
        self.rows = 0
        self.sum = np.zeros(d_in, np.float64)
        self.sumsq = np.zeros(d_in, np.float64)
        self._norms: list[np.ndarray] = []
        self._unsynced = 0
        self._fh = open(self.tmp, "wb")
        self._fh.write(npy_header(self.dtype, (0, d_in)))

    def add(self, stored: np.ndarray, values: np.ndarray) -> None:
        """``stored``: the rows as written ([n, d_in], storage dtype); ``values``: the same
        rows as float32 (the statistics: float64 accumulation without a float64 copy)."""
        self.sum += values.sum(0, dtype=np.float64)
        self.sumsq += np.einsum("ij,ij->j", values, values, dtype=np.float64)
        self._norms.append(np.sqrt(np.einsum("ij,ij->i", values, values, dtype=np.float64))
                           .astype(np.float32))
        data = np.ascontiguousarray(stored, dtype=self.dtype)
        self._fh.write(memoryview(data).cast("B"))
        self._fh.flush()  # to the OS now, on this (the writer's) thread
        self.rows += int(data.shape[0])
        self._unsynced += data.nbytes
        if self._unsynced >= SYNC_BYTES:  # write back as we go: the last fsync stays short
            self._fh.flush()
            os.fdatasync(self._fh.fileno())
            self._unsynced = 0

    @property
    def norms(self) -> np.ndarray:
        return np.concatenate(self._norms) if self._norms else np.zeros(0, np.float32)

    def finish(self, path: Path) -> None:
        self._fh.seek(0)
        self._fh.write(npy_header(self.dtype, (self.rows, self.d_in)))
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        crash_point("extract.shard.rename")
        os.replace(self.tmp, path)

    def discard(self) -> None:
        if not self._fh.closed:
            self._fh.close()
        self.tmp.unlink(missing_ok=True)
