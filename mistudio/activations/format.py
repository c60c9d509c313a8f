"""The on-disk format of one activation set (one hook point of one extraction), and its reader.

An activation set folder holds::

    meta.json            format_version, d_in, dtype, shard_rows, model/hook/layer/seq_len ...
                         (written first; describes what the set is, not how far it got)
    index.json           the complete shards only: [{file, pos_file, sums_file, rows, row_start}],
                         num_rows. Rewritten atomically after each shard, so a crash never lists
                         a half-written shard.
    shards/act_00000.npy  [rows, d_in] float32 | float16 | uint16 (bfloat16 bit pattern);
                         np.save format, memory-mappable
    shards/pos_00000.npy  int32 [rows, 2]: (sequence index, token position) of each row
    shards/sum_00000.npz  float64 sum and sum of squares per dimension, float32 row norms
                         (so statistics survive a resume without re-reading the shards)
    stats.json           mean/std summaries, norm histogram, sample rows (written at the end)
    samples.npy          a few rows, float32, for previews
    COMPLETE             written last: the manifest (every file's size and SHA-256,
                         :mod:`mistudio.manifest`); :class:`ActivationSet` refuses a folder
                         without it

Shard files are written under a temporary name and renamed into place (``atomic_path``);
the index lists a shard only after its three files exist. ``ActivationShardWriter`` appends
rows, and can reopen an unfinished folder to continue after the last complete shard.

Reading: ``ActivationSet.rows(a, b)`` is a contiguous read; ``iter_batches`` yields shuffled
float32 torch batches, every row exactly once per epoch, deterministic in (seed, epoch),
holding at most about ``2 * buffer_rows`` rows in memory (one buffer in use, one prefetched).
"""

from __future__ import annotations

import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from mistudio.activations.shard_file import StreamingShard
from mistudio.activations.storage import (STORE_DTYPES, bytes_per_row,  # noqa: F401
                                          default_shard_rows, from_storage, is_torch, to_storage)
from mistudio.errors import UserError
from mistudio.manifest import write_manifest
from mistudio.paths import atomic_path, atomic_write_json, no_room_as_user_error
from mistudio.reliability import crash_point

FORMAT_VERSION = 1
COMPLETE_MARKER = "COMPLETE"
NORM_HIST_BINS = 50
SAMPLE_ROWS = 8


# ---------------------------------------------------------------- writer


@dataclass
class ShardRecord:
    file: str
    pos_file: str
    sums_file: str
    rows: int
    row_start: int
    resume: dict | None = None  # where a resumed extraction continues after this shard


class ActivationShardWriter:
    """Appends rows to an activation set folder, one atomic shard at a time.

    ``append(rows, positions)`` buffers until ``shard_rows`` rows are ready, then writes a
    shard and rewrites the index. ``finish()`` writes the last (short) shard, the statistics
    and the COMPLETE marker. Opening a folder that already has an index continues after its
    last complete shard (resume); stray files of a half-written shard are deleted.
    """

    def __init__(self, folder: str | os.PathLike, d_in: int, meta: dict | None = None, *,
                 dtype: str = "float32", shard_rows: int | None = None):
        if dtype not in STORE_DTYPES:
            raise UserError(f"Unknown activation dtype {dtype!r}.",
                            hint=f"Use one of {', '.join(STORE_DTYPES)}.")
        self.folder = Path(folder)
        self.d_in = int(d_in)
        self.dtype = dtype
        (self.folder / "shards").mkdir(parents=True, exist_ok=True)
        if (self.folder / COMPLETE_MARKER).exists():
            raise UserError(f"The activation set in {self.folder} is already complete.",
                            hint="Delete it first to write it again.")
        meta_path = self.folder / "meta.json"
        if meta_path.exists():
            old = json.loads(meta_path.read_text(encoding="utf-8"))
            if int(old["d_in"]) != self.d_in or old["dtype"] != dtype:
                raise UserError(
                    f"Cannot resume the activation set in {self.folder}: it holds "
                    f"{old['dtype']} rows of width {old['d_in']}, not {dtype} x {self.d_in}.",
                    hint="Start a new extraction instead.")
            self.shard_rows = int(old["shard_rows"])
            self.meta = old
            if meta:
                self.meta.update({k: v for k, v in meta.items() if k not in _FIXED_META})
        else:
            self.shard_rows = int(shard_rows or default_shard_rows(self.d_in, dtype))
            self.meta = {**(meta or {}), "format_version": FORMAT_VERSION, "d_in": self.d_in,
                         "dtype": dtype, "shard_rows": self.shard_rows}
        atomic_write_json(meta_path, self.meta)
        self.shards: list[ShardRecord] = _read_index(self.folder)
        self._remove_strays()
        self.num_rows = sum(s.rows for s in self.shards)
        self._shard: StreamingShard | None = None  # the shard being written
        self._buf_pos: list[np.ndarray] = []
        self._buffered = 0
        self._resume: dict | None = None

    @property
    def resumed_rows(self) -> int:
        """Rows already on disk in complete shards (0 for a new set)."""
        return sum(s.rows for s in self.shards)

    def _remove_strays(self) -> None:
        keep = {n for s in self.shards for n in (s.file, s.pos_file, s.sums_file)}
        for path in (self.folder / "shards").iterdir():
            if f"shards/{path.name}" not in keep:
                path.unlink(missing_ok=True)

    def append(self, rows, positions, *, keep_together: bool = False,
               resume: dict | None = None) -> None:
        """Add rows (numpy/torch, any float dtype, [n, d_in]) with their int [n, 2] positions.

        Default: shards hold exactly ``shard_rows`` rows. ``keep_together``: the chunk is
        never split; a shard is written once at least ``shard_rows`` rows are buffered, so
        shard ends fall on chunk ends (extraction uses this so that a resume restarts at a
        batch boundary, recorded in ``resume``).
        """
        stored = to_storage(rows, self.dtype)
        pos = np.asarray(positions.cpu() if is_torch(positions) else positions, dtype=np.int32)
        if stored.ndim != 2 or stored.shape[1] != self.d_in:
            raise ValueError(f"rows must be [n, {self.d_in}], got {tuple(stored.shape)}")
        if pos.shape != (stored.shape[0], 2):
            raise ValueError(f"positions must be [{stored.shape[0]}, 2], got {pos.shape}")
        if keep_together:
            if stored.shape[0]:
                self._add(stored, pos)
            self._resume = resume
            if self._buffered >= self.shard_rows:
                self._write_shard()
            return
        start = 0
        n = stored.shape[0]
        while start < n:
            take = min(n - start, self.shard_rows - self._buffered)
            self._add(stored[start:start + take], pos[start:start + take])
            start += take
            if self._buffered >= self.shard_rows:
                self._write_shard()

    @property
    def buffered_rows(self) -> int:
        return self._buffered

    def _add(self, stored: np.ndarray, pos: np.ndarray) -> None:
        with no_room_as_user_error(self.folder):  # a full disk: say which set, and what to do
            self._add_rows(stored, pos)

    def _add_rows(self, stored: np.ndarray, pos: np.ndarray) -> None:
        """Stream rows into the current shard's file (see :mod:`shard_file`)."""
        if self._shard is None:
            name = f"act_{len(self.shards):05d}.npy"
            self._shard = StreamingShard(self.folder / "shards", name, self.d_in, stored.dtype)
        self._shard.add(stored, from_storage(stored, self.dtype))
        self._buf_pos.append(pos)
        self._buffered += stored.shape[0]

    def _write_shard(self) -> None:
        with no_room_as_user_error(self.folder):
            self._write_buffered_shard()

    def _write_buffered_shard(self) -> None:
        if not self._buffered:
            return
        shard, n_rows = self._shard, self._buffered
        pos = np.concatenate(self._buf_pos) if len(self._buf_pos) > 1 else self._buf_pos[0]
        self._shard, self._buf_pos, self._buffered = None, [], 0
        i = len(self.shards)
        rec = ShardRecord(file=f"shards/act_{i:05d}.npy", pos_file=f"shards/pos_{i:05d}.npy",
                          sums_file=f"shards/sum_{i:05d}.npz", rows=int(n_rows),
                          row_start=self.num_rows, resume=self._resume)
        shard.finish(self.folder / rec.file)
        _save_npy(self.folder / rec.pos_file, pos)
        with atomic_path(self.folder / rec.sums_file) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, sum=shard.sum, sumsq=shard.sumsq, norms=shard.norms)
        self.shards.append(rec)
        self.num_rows += rec.rows
        crash_point("extract.index.write")
        _write_index(self.folder, self.shards)

    def flush_shard(self) -> None:
        """Write buffered rows now as a (possibly short) shard."""
        self._write_shard()

    def finish(self, extra_meta: dict | None = None) -> Path:
        """Write the last shard, statistics and the COMPLETE marker. Returns the folder."""
        self._write_shard()
        if not self.shards:
            raise UserError("No activations were produced, so the set would be empty.",
                            hint="Check the dataset has tokens and the token limit is above 0.")
        if extra_meta:
            self.meta.update(extra_meta)
        self.meta["num_rows"] = self.num_rows
        atomic_write_json(self.folder / "meta.json", self.meta)
        stats, samples = compute_stats(self.folder, self.shards, self.dtype)
        _save_npy(self.folder / "samples.npy", samples)
        atomic_write_json(self.folder / "stats.json", stats)
        # the marker is the set's manifest (sizes, SHA-256), written last and atomically
        write_manifest(self.folder, name=COMPLETE_MARKER)
        return self.folder


_FIXED_META = ("format_version", "d_in", "dtype", "shard_rows")


def _save_npy(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, array)
            fh.flush()
            os.fsync(fh.fileno())


def _read_index(folder: Path) -> list[ShardRecord]:
    path = folder / "index.json"
    if not path.exists():
        return []
    data = json.loads(path.read_text(encoding="utf-8"))
    return [ShardRecord(**s) for s in data["shards"]]


def read_shard_index(folder: str | os.PathLike) -> list[ShardRecord]:
    """The complete shards of a (possibly unfinished) set; [] if none."""
    return _read_index(Path(folder))


def truncate_shards(folder: str | os.PathLike, n_shards: int) -> None:
    """Forget shards past the first ``n_shards`` (resume aligns several sets this way).
    Their files are removed when a writer next opens the folder."""
    folder = Path(folder)
    shards = _read_index(folder)
    if len(shards) > n_shards:
        _write_index(folder, shards[:n_shards])


def _write_index(folder: Path, shards: list[ShardRecord]) -> None:
    atomic_write_json(folder / "index.json", {
        "format_version": FORMAT_VERSION,
        "num_rows": sum(s.rows for s in shards),
        "shards": [s.__dict__ for s in shards],
    })


def compute_stats(folder: Path, shards: list[ShardRecord], dtype: str) -> tuple[dict, np.ndarray]:
    """Aggregate per-shard sums into statistics; the shards themselves are not re-read
    except the first for sample rows."""
    n = sum(s.rows for s in shards)
    total = None
    total_sq = None
    norms = []
    for s in shards:
        with np.load(folder / s.sums_file) as z:
            total = z["sum"] if total is None else total + z["sum"]
            total_sq = z["sumsq"] if total_sq is None else total_sq + z["sumsq"]
            norms.append(z["norms"])
    mean = total / n
    var = np.maximum(total_sq / n - mean * mean, 0.0)
    std = np.sqrt(var)
    norm_all = np.concatenate(norms).astype(np.float64)
    hi = float(norm_all.max()) if norm_all.size else 1.0
    counts, edges = np.histogram(norm_all, bins=NORM_HIST_BINS, range=(0.0, hi if hi > 0 else 1.0))
    first = np.load(folder / shards[0].file, mmap_mode="r")
    k = min(SAMPLE_ROWS, first.shape[0])
    samples = from_storage(np.asarray(first[:k]), dtype)
    pos = np.load(folder / shards[0].pos_file, mmap_mode="r")[:k]
    stats = {
        "num_rows": int(n),
        "mean_norm": float(norm_all.mean()),
        "std_norm": float(norm_all.std()),
        "min_norm": float(norm_all.min()),
        "max_norm": float(norm_all.max()),
        "median_norm": float(np.median(norm_all)),
        "mean_abs_mean": float(np.abs(mean).mean()),  # how far from centred the stream is
        "mean_std": float(std.mean()),  # average per-dimension std
        "total_variance": float(var.sum()),
        "norm_hist": {"counts": counts.tolist(), "edges": edges.tolist()},
        "mean": mean.astype(np.float32).tolist(),
        "std": std.astype(np.float32).tolist(),
        "sample_positions": np.asarray(pos).tolist(),
    }
    return stats, samples


def write_activation_set(folder: str | os.PathLike, data, meta: dict, *,
                         positions=None, shard_rows: int | None = None,
                         dtype: str = "float32") -> Path:
    """Write a complete activation set from one array or an iterable of [n, d_in] chunks.

    ``positions`` (optional) is an int [N, 2] array (sequence, position) for all rows; by
    default row i is (i // seq_len, i % seq_len) with ``meta["seq_len"]`` (1 if absent).
    Used by tests and to build synthetic sets. Returns the folder.
    """
    folder = Path(folder)
    chunks: Iterable = [data] if hasattr(data, "shape") else data
    seq_len = int(meta.get("seq_len") or 1)
    all_pos = None if positions is None else np.asarray(positions, dtype=np.int32)
    writer = None
    done = 0
    for chunk in chunks:
        n = int(chunk.shape[0])
        if writer is None:
            writer = ActivationShardWriter(folder, int(chunk.shape[1]), meta, dtype=dtype,
                                           shard_rows=shard_rows)
        if all_pos is not None:
            pos = all_pos[done:done + n]
        else:
            idx = np.arange(done, done + n)
            pos = np.stack([idx // seq_len, idx % seq_len], axis=1)
        writer.append(chunk, pos)
        done += n
    if writer is None:
        raise UserError("No activations to write.", hint="Pass at least one non-empty chunk.")
    return writer.finish()


# ---------------------------------------------------------------- reader


def is_complete(folder: str | os.PathLike) -> bool:
    return (Path(folder) / COMPLETE_MARKER).exists()


def with_hook_names(meta: dict) -> dict:
    """``meta`` with SAELens's names for the hook point and its layer (``hook_name``,
    ``hook_layer``), filled from the names that older sets used (``hook_point``,
    ``layer``); the old keys stay, so nothing that reads them breaks."""
    meta = dict(meta)
    if not meta.get("hook_name") and meta.get("hook_point"):
        meta["hook_name"] = meta["hook_point"]
    if "hook_layer" not in meta and "layer" in meta:
        meta["hook_layer"] = meta["layer"]
    return meta


class ActivationSet:
    """A finished activation set folder, read lazily through memory maps."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        if not (self.folder / COMPLETE_MARKER).exists():
            raise UserError(
                f"The activation set in {self.folder} is incomplete (the extraction did not "
                "finish) or missing.",
                hint="Resume or restart the extraction, or pick another activation set.")
        try:
            self.meta: dict = with_hook_names(
                json.loads((self.folder / "meta.json").read_text(encoding="utf-8")))
            self._shards = _read_index(self.folder)
        except (OSError, ValueError, KeyError) as exc:
            raise UserError(f"The activation set in {self.folder} is damaged ({exc}).",
                            hint="Delete it and extract again.") from exc
        if int(self.meta.get("format_version", 0)) > FORMAT_VERSION:
            raise UserError(f"The activation set in {self.folder} was written by a newer "
                            "version of MechInterp Studio.", hint="Update the app.")
        self.d_in = int(self.meta["d_in"])
        self.dtype = str(self.meta["dtype"])
        self.num_rows = sum(s.rows for s in self._shards)
        self._starts = np.array([s.row_start for s in self._shards] + [self.num_rows],
                                dtype=np.int64)
        self._maps: dict[int, np.ndarray] = {}
        self._pos_maps: dict[int, np.ndarray] = {}
        self._lock = threading.Lock()
        self._stats: dict | None = None

    def __len__(self) -> int:
        return self.num_rows

    def __repr__(self) -> str:
        return (f"ActivationSet({str(self.folder)!r}, rows={self.num_rows}, d_in={self.d_in}, "
                f"dtype={self.dtype}, hook={self.hook_name!r})")

    @property
    def hook_name(self) -> str:
        return str(self.meta.get("hook_name") or "")

    @property
    def hook_layer(self) -> int | None:
        return self.meta.get("hook_layer")

    @property
    def stats(self) -> dict:
        if self._stats is None:
            path = self.folder / "stats.json"
            self._stats = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
        return self._stats

    @property
    def num_shards(self) -> int:
        return len(self._shards)

    @property
    def shard_sizes(self) -> list[int]:
        return [s.rows for s in self._shards]

    def samples(self) -> np.ndarray:
        return np.load(self.folder / "samples.npy")

    def _shard(self, i: int) -> np.ndarray:
        m = self._maps.get(i)
        if m is None:
            with self._lock:
                m = self._maps.get(i)
                if m is None:
                    m = np.load(self.folder / self._shards[i].file, mmap_mode="r")
                    if m.shape != (self._shards[i].rows, self.d_in):
                        raise UserError(f"Shard {self._shards[i].file} in {self.folder} has "
                                        f"shape {m.shape}, expected "
                                        f"{(self._shards[i].rows, self.d_in)}.",
                                        hint="The set is damaged; extract it again.")
                    self._maps[i] = m
        return m

    def _pos_shard(self, i: int) -> np.ndarray:
        m = self._pos_maps.get(i)
        if m is None:
            m = np.load(self.folder / self._shards[i].pos_file, mmap_mode="r")
            self._pos_maps[i] = m
        return m

    def _check_range(self, start: int, stop: int) -> tuple[int, int]:
        start, stop = int(start), int(stop)
        if not 0 <= start <= stop <= self.num_rows:
            raise IndexError(f"rows [{start}, {stop}) out of range 0..{self.num_rows}")
        return start, stop

    def _read_stored(self, start: int, stop: int, getter) -> list[np.ndarray]:
        parts = []
        i = int(np.searchsorted(self._starts, start, side="right") - 1)
        while start < stop:
            s0, s1 = self._starts[i], self._starts[i + 1]
            take = min(stop, s1) - start
            parts.append(np.asarray(getter(i)[start - s0:start - s0 + take]))
            start += take
            i += 1
        return parts

    def rows(self, start: int, stop: int) -> np.ndarray:
        """Rows [start, stop) as float32 ``[n, d_in]`` (contiguous read)."""
        start, stop = self._check_range(start, stop)
        if start == stop:
            return np.zeros((0, self.d_in), np.float32)
        parts = self._read_stored(start, stop, self._shard)
        stored = parts[0] if len(parts) == 1 else np.concatenate(parts)
        return from_storage(stored, self.dtype)

    def positions(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """int32 ``[n, 2]``: (sequence index, token position) of rows [start, stop)."""
        start, stop = self._check_range(start, self.num_rows if stop is None else stop)
        if start == stop:
            return np.zeros((0, 2), np.int32)
        parts = self._read_stored(start, stop, self._pos_shard)
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def gather(self, indices: np.ndarray) -> np.ndarray:
        """Rows at arbitrary global indices, float32, in the order given."""
        indices = np.asarray(indices, dtype=np.int64)
        out = np.empty((indices.size, self.d_in), np.float32)
        if indices.size == 0:
            return out
        if indices.min() < 0 or indices.max() >= self.num_rows:
            raise IndexError("row index out of range")
        order = np.argsort(indices, kind="stable")
        sorted_idx = indices[order]
        shard_of = np.searchsorted(self._starts, sorted_idx, side="right") - 1
        bounds = np.flatnonzero(np.diff(shard_of)) + 1
        starts_at = np.concatenate([[0], bounds])
        for first, chunk_idx, chunk_pos in zip(starts_at, np.split(sorted_idx, bounds),
                                               np.split(order, bounds)):
            i = int(shard_of[first])
            local = chunk_idx - self._starts[i]
            shard = self._shard(i)
            lo, hi = int(local[0]), int(local[-1]) + 1
            if hi - lo <= 2 * local.size:  # dense enough: one contiguous read, then pick
                block = np.asarray(shard[lo:hi])[local - lo]
            else:
                block = np.asarray(shard[local])
            out[chunk_pos] = from_storage(block, self.dtype)
        return out

    # ------------------------------------------------------------ shuffled batches

    def epoch_plan(self, batch_size: int, *, shuffle: bool = True, seed: int = 0, epoch: int = 0,
                   drop_last: bool = True, buffer_rows: int = 262_144
                   ) -> Iterator[np.ndarray]:
        """Global row indices of each batch of one epoch, grouped by buffer (no data read).

        Yields one int64 array ``[n_batches_in_group, batch_size]`` per buffer fill (the last
        item may be a 1-D array: the short final batch when ``drop_last`` is False).
        """
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        buffer_rows = max(int(buffer_rows), batch_size)
        block = max(64, min(buffer_rows // 16, 65_536))
        blocks = []
        for s in self._shards:
            for b0 in range(0, s.rows, block):
                blocks.append((s.row_start + b0, s.row_start + min(s.rows, b0 + block)))
        rng = np.random.default_rng([int(seed), int(epoch)])
        order = rng.permutation(len(blocks)) if shuffle else np.arange(len(blocks))
        carry = np.zeros(0, np.int64)
        group: list[np.ndarray] = []
        group_rows = 0
        for j, bi in enumerate(order):
            a, b = blocks[bi]
            group.append(np.arange(a, b, dtype=np.int64))
            group_rows += b - a
            if group_rows >= buffer_rows or j == len(order) - 1:
                idx = np.concatenate([carry] + group)
                if shuffle:
                    idx = idx[rng.permutation(idx.size)]
                n_full = idx.size // batch_size
                if n_full:
                    yield idx[:n_full * batch_size].reshape(n_full, batch_size)
                carry = idx[n_full * batch_size:]
                group, group_rows = [], 0
        if carry.size and not drop_last:
            yield carry

    def num_batches(self, batch_size: int, drop_last: bool = True) -> int:
        return self.num_rows // batch_size if drop_last else -(-self.num_rows // batch_size)

    def iter_batches(self, batch_size: int, *, shuffle: bool = True, seed: int = 0,
                     epoch: int = 0, start_batch: int = 0, drop_last: bool = True,
                     buffer_rows: int = 262_144, device=None) -> Iterator:
        """Float32 torch batches ``[batch_size, d_in]``; every row once per epoch.

        Deterministic in (seed, epoch, batch_size, buffer_rows); ``start_batch`` skips the
        first batches without reading them, so a resumed run continues bit-for-bit. The next
        buffer is read on a background thread while the current one is consumed.
        """
        import torch

        plan = self.epoch_plan(batch_size, shuffle=shuffle, seed=seed, epoch=epoch,
                               drop_last=drop_last, buffer_rows=buffer_rows)
        skip = int(start_batch)

        def groups():
            nonlocal skip
            for g in plan:
                g2 = g.reshape(1, -1) if g.ndim == 1 else g
                if skip >= g2.shape[0]:
                    skip -= g2.shape[0]
                    continue
                yield g2[skip:]
                skip = 0

        def load(g: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
            return self.gather(g.reshape(-1)), g.shape

        with ThreadPoolExecutor(1, thread_name_prefix="act-prefetch") as pool:
            it = groups()
            nxt = next(it, None)
            fut = pool.submit(load, nxt) if nxt is not None else None
            while fut is not None:
                data, (n_b, bs) = fut.result()
                nxt = next(it, None)
                fut = pool.submit(load, nxt) if nxt is not None else None
                tensor = torch.from_numpy(data)
                for k in range(n_b):
                    batch = tensor[k * bs:(k + 1) * bs]
                    yield batch.to(device, non_blocking=True) if device is not None else batch


def open_activation_set(folder: str | os.PathLike) -> ActivationSet:
    return ActivationSet(folder)
