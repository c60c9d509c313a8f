"""Streaming writers for the tokenization folder (see :mod:`mistudio.data.tokenized`).

``NpyRowWriter`` appends fixed-width rows to a ``.npy`` file whose header is written with
room to spare and rewritten with the final row count at close, so a corpus of any size is
written in one pass with bounded memory and the result is a normal ``np.load``-able array.
"""

from __future__ import annotations

import ast
import os
import struct
from pathlib import Path

import numpy as np

_MAGIC = b"\x93NUMPY\x01\x00"
_HEADER_TOTAL = 128  # magic (8) + length (2) + header text; a multiple of 64 as numpy wants


def _header(dtype: np.dtype, shape: tuple[int, ...]) -> bytes:
    text = repr({"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False,
                 "shape": shape}).encode("latin1")
    room = _HEADER_TOTAL - len(_MAGIC) - 2
    if len(text) + 1 > room:
        raise ValueError("array shape too large for the reserved .npy header")
    text = text + b" " * (room - len(text) - 1) + b"\n"
    return _MAGIC + struct.pack("<H", len(text)) + text


class NpyRowWriter:
    """Append rows of ``width`` values of ``dtype`` to a .npy file, one pass, any length."""

    def __init__(self, path: str | os.PathLike, width: int, dtype=np.int32):
        self.path = Path(path)
        self.width = int(width)
        self.dtype = np.dtype(dtype)
        self.n_rows = 0
        self._fh = open(self.path, "wb")
        self._fh.write(_header(self.dtype, (0, self.width)))

    def append(self, rows: np.ndarray) -> None:
        rows = np.ascontiguousarray(rows, dtype=self.dtype)
        if rows.ndim != 2 or rows.shape[1] != self.width:
            raise ValueError(f"expected rows of width {self.width}, got shape {rows.shape}")
        self._fh.write(rows.tobytes())
        self.n_rows += rows.shape[0]

    def close(self) -> int:
        if self._fh.closed:
            return self.n_rows
        self._fh.seek(0)
        self._fh.write(_header(self.dtype, (self.n_rows, self.width)))
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        return self.n_rows

    def abort(self) -> None:
        if not self._fh.closed:
            self._fh.close()


def read_npy_shape(path: str | os.PathLike) -> tuple[int, ...]:
    """The shape recorded in a .npy header (without mapping the data)."""
    with open(path, "rb") as fh:
        fh.read(len(_MAGIC))
        (n,) = struct.unpack("<H", fh.read(2))
        return tuple(ast.literal_eval(fh.read(n).decode("latin1"))["shape"])
