"""Where training batches come from: a resumable, endless stream over one activation set.

A *batch source* yields ``[B, d_in]`` float32 tensors (or ``(x, y)`` pairs for transcoders)
for one epoch, deterministically in ``(seed, epoch)``, and can start at any batch of an epoch
without reading the skipped ones. :class:`ActivationStream` chains epochs forever and keeps a
cursor ``(epoch, batch)`` that a checkpoint stores, so a resumed run sees exactly the batches
an uninterrupted one would.

Sources: :class:`ActivationSetSource` (an activation set folder, read through its shuffle
buffer so memory stays bounded whatever the set's size), :class:`PairedActivationSource`
(two sets with the same rows: transcoder input and target) and :class:`TensorSource`
(in-memory, for tests and benchmarks).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator, Protocol

import numpy as np
import torch

from mistudio.errors import UserError

Batch = "torch.Tensor | tuple[torch.Tensor, torch.Tensor]"

#: Rows held by the reader's shuffle buffer (two buffers are alive: in use + prefetched).
DEFAULT_BUFFER_ROWS = 262_144


class BatchSource(Protocol):
    d_in: int
    d_out: int
    num_rows: int
    meta: dict

    def epoch_batches(self, batch_size: int, *, seed: int, epoch: int, start_batch: int,
                      shuffle: bool) -> Iterator: ...


class TensorSource:
    """An in-memory ``[N, d_in]`` tensor (optionally with a ``[N, d_out]`` target)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor | None = None, meta: dict | None = None):
        self.x = x.float().contiguous()
        self.y = None if y is None else y.float().contiguous()
        self.num_rows, self.d_in = self.x.shape
        self.d_out = self.d_in if y is None else int(self.y.shape[1])
        self.meta = dict(meta or {})

    def epoch_batches(self, batch_size: int, *, seed: int, epoch: int, start_batch: int = 0,
                      shuffle: bool = True) -> Iterator:
        n_batches = self.num_rows // batch_size
        if shuffle:
            order = torch.from_numpy(np.random.default_rng([seed, epoch]).permutation(self.num_rows))
        else:
            order = torch.arange(self.num_rows)
        for b in range(start_batch, n_batches):
            idx = order[b * batch_size:(b + 1) * batch_size]
            yield self.x[idx] if self.y is None else (self.x[idx], self.y[idx])


class ActivationSetSource:
    """One activation set folder (see :mod:`mistudio.activations.format`)."""

    def __init__(self, folder: str | Path, buffer_rows: int = DEFAULT_BUFFER_ROWS):
        from mistudio.activations.format import ActivationSet

        self.set = ActivationSet(folder)
        self.d_in = self.d_out = self.set.d_in
        self.num_rows = self.set.num_rows
        self.meta = dict(self.set.meta)
        self.buffer_rows = buffer_rows

    def epoch_batches(self, batch_size: int, *, seed: int, epoch: int, start_batch: int = 0,
                      shuffle: bool = True) -> Iterator:
        return self.set.iter_batches(batch_size, shuffle=shuffle, seed=seed, epoch=epoch,
                                     start_batch=start_batch, buffer_rows=self.buffer_rows)


class PairedActivationSource:
    """Transcoder data: the same rows of an input set and a target set, shuffled together."""

    def __init__(self, folder_in: str | Path, folder_out: str | Path,
                 buffer_rows: int = DEFAULT_BUFFER_ROWS):
        from mistudio.activations.format import ActivationSet

        self.set_in = ActivationSet(folder_in)
        self.set_out = ActivationSet(folder_out)
        if self.set_in.num_rows != self.set_out.num_rows:
            raise UserError(
                f"The transcoder's input and target activation sets have different numbers of "
                f"rows ({self.set_in.num_rows} vs {self.set_out.num_rows}).",
                hint="Extract both hook points from the same run so their rows line up.")
        self.d_in, self.d_out = self.set_in.d_in, self.set_out.d_in
        self.num_rows = self.set_in.num_rows
        self.meta = dict(self.set_in.meta)
        self.meta_out = dict(self.set_out.meta)
        self.buffer_rows = buffer_rows

    def epoch_batches(self, batch_size: int, *, seed: int, epoch: int, start_batch: int = 0,
                      shuffle: bool = True) -> Iterator:
        plan = self.set_in.epoch_plan(batch_size, shuffle=shuffle, seed=seed, epoch=epoch,
                                      buffer_rows=self.buffer_rows)
        groups = []
        skip = start_batch
        for g in plan:  # index arrays only: cheap
            if skip >= g.shape[0]:
                skip -= g.shape[0]
                continue
            groups.append(g[skip:])
            skip = 0

        def load(g):
            flat = g.reshape(-1)
            return self.set_in.gather(flat), self.set_out.gather(flat), g.shape[0]

        with ThreadPoolExecutor(1, thread_name_prefix="tc-prefetch") as pool:
            futures = iter(groups)
            nxt = next(futures, None)
            fut = pool.submit(load, nxt) if nxt is not None else None
            while fut is not None:
                xs, ys, n_b = fut.result()
                nxt = next(futures, None)
                fut = pool.submit(load, nxt) if nxt is not None else None
                xt, yt = torch.from_numpy(xs), torch.from_numpy(ys)
                for k in range(n_b):
                    sl = slice(k * batch_size, (k + 1) * batch_size)
                    yield xt[sl], yt[sl]


class ActivationStream:
    """Endless batches over epochs with a resumable cursor ``(epoch, batch)``."""

    def __init__(self, source: BatchSource, batch_size: int, *, seed: int = 0,
                 shuffle: bool = True, rank: int = 0, world_size: int = 1):
        if source.num_rows < batch_size:
            raise UserError(f"The activation set has {source.num_rows} tokens, fewer than one "
                            f"batch ({batch_size}).",
                            hint="Use a smaller batch size or extract more tokens.")
        if batch_size % world_size:
            raise UserError(f"The batch size {batch_size} does not split evenly over "
                            f"{world_size} processes.", hint="Pick a multiple of the process count.")
        self.source = source
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = shuffle
        self.rank, self.world_size = rank, world_size
        self.batches_per_epoch = source.num_rows // batch_size
        self.epoch = 0
        self.batch = 0
        self._it: Iterator | None = None

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "batch": self.batch}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.batch = int(state["epoch"]), int(state["batch"])
        self._it = None

    def _local(self, t: torch.Tensor) -> torch.Tensor:
        if self.world_size == 1:
            return t
        per = self.batch_size // self.world_size
        return t[self.rank * per:(self.rank + 1) * per]

    def next(self):
        """The next batch (this rank's slice of it under DDP), advancing the cursor."""
        if self.batch >= self.batches_per_epoch:
            self.epoch += 1
            self.batch = 0
            self._it = None
        if self._it is None:
            self._it = iter(self.source.epoch_batches(
                self.batch_size, seed=self.seed, epoch=self.epoch, start_batch=self.batch,
                shuffle=self.shuffle))
        item = next(self._it)
        self.batch += 1
        if isinstance(item, tuple):
            return tuple(self._local(t) for t in item)
        return self._local(item)

    def close(self) -> None:
        it, self._it = self._it, None
        if it is not None and hasattr(it, "close"):
            it.close()


def open_source(path: str | Path, target_path: str | Path | None = None) -> BatchSource:
    if target_path:
        return PairedActivationSource(path, target_path)
    return ActivationSetSource(path)


def estimate_norm_scale(source: BatchSource, n_tokens: int, *, seed: int,
                        batch_size: int = 4096) -> tuple[float, float]:
    """Scale factors so that E||s * x|| = sqrt(d) for input (and target): Anthropic's recipe.

    Estimated up front on ``n_tokens`` rows drawn from the (shuffled) first epoch.
    """
    bs = min(batch_size, source.num_rows)
    norms_in, norms_out, seen = [], [], 0
    # a source computing activations on the fly samples just enough of them (one pass)
    sample = getattr(source, "norm_sample", None)
    items = (sample(n_tokens, seed) if sample is not None else
             source.epoch_batches(bs, seed=seed + 7919, epoch=0, start_batch=0, shuffle=True))
    for item in items:
        x, y = item if isinstance(item, tuple) else (item, None)
        norms_in.append(x.norm(dim=1).double().mean().item() * x.shape[0])
        if y is not None:
            norms_out.append(y.norm(dim=1).double().mean().item() * y.shape[0])
        seen += x.shape[0]
        if seen >= n_tokens:
            break
    mean_in = sum(norms_in) / max(seen, 1)
    if not (mean_in > 0 and np.isfinite(mean_in)):
        raise UserError("The activations have zero or non-finite norm, so they cannot be "
                        "normalised.", hint="Check the activation set (it may be empty or damaged).")
    scale_in = float(np.sqrt(source.d_in) / mean_in)
    if norms_out:
        mean_out = sum(norms_out) / max(seen, 1)
        scale_out = float(np.sqrt(source.d_out) / mean_out) if mean_out > 0 else 1.0
    else:
        scale_out = scale_in
    return scale_in, scale_out
