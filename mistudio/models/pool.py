"""The models loaded in this process: reused while memory allows, least recently used evicted.

One pool per process (``MODEL_POOL``): extraction, evaluation, analysis and steering jobs load
through it, so a model loaded for one is reused by the next instead of loaded again. Before a
new model loads, models unused for longest are dropped until what is free on that device fits
it (an idle model is worth less than the job that needs the memory); a model a job holds
(``lease``) is never dropped under it. The Models tab's "Release memory" empties it on demand,
and every memory estimate counts what it holds (``held_bytes``).

The application layer owns the instance (``ModelService`` is given it and exposes it as
``studio.models.pool``); it lives here, beside the loader, because job functions (domain code
that never imports the application layer) load through it too.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from mistudio.models.loading import load_model_uncached, saved_quantization

log = logging.getLogger(__name__)

# What a loaded model takes beyond its weight files (buffers, allocator slack, the first
# forward's workspace): a new model is loaded only when this much more than the files is free.
LOAD_HEADROOM = 1.2


@dataclass
class LoadedModel:
    key: tuple
    model: object
    tokenizer: object
    folder: str
    device: str
    dtype: str
    quantization: str
    memory_bytes: int = 0
    users: int = 0  # jobs holding it now (a lease): never evicted while > 0
    last_used: float = 0.0
    extra: dict = field(default_factory=dict)


class ModelLease:
    """A pooled model held from eviction until :meth:`close` (idempotent), or the end of a
    ``with`` block, which gives the :class:`LoadedModel`."""

    def __init__(self, pool: "ModelPool", loaded: LoadedModel):
        self.pool, self.loaded = pool, loaded
        self._open = True

    def close(self) -> None:
        if self._open:
            self._open = False
            self.pool._let_go(self.loaded)

    def __enter__(self) -> LoadedModel:
        return self.loaded

    def __exit__(self, *exc) -> None:
        self.close()


def model_memory_bytes(model) -> int:
    """Bytes the model holds: parameters and buffers (``get_memory_footprint``) plus the
    bitsandbytes state kept beside them (4-bit absmax and code tables, 8-bit row scales),
    which are plain attributes that ``get_memory_footprint`` does not see."""
    try:
        total = int(model.get_memory_footprint())
    except Exception:
        total = sum(p.numel() * p.element_size() for p in model.parameters())
    seen: set[int] = set()

    def add(t) -> int:
        if t is None or not hasattr(t, "element_size") or id(t) in seen:
            return 0
        seen.add(id(t))
        return t.numel() * t.element_size()

    for m in model.modules():
        p = getattr(m, "weight", None)
        qs = getattr(p, "quant_state", None)
        if qs is not None:
            total += add(getattr(qs, "absmax", None)) + add(getattr(qs, "code", None))
            s2 = getattr(qs, "state2", None)
            if s2 is not None:
                total += add(getattr(s2, "absmax", None)) + add(getattr(s2, "code", None))
            total += add(getattr(qs, "offset", None))
        # 8-bit row scales: on the weight until the first forward, then on the layer's state
        total += add(getattr(p, "SCB", None)) or add(getattr(getattr(m, "state", None), "SCB",
                                                             None))
    return total


def expected_load_bytes(folder: str | Path, dtype: str, quantization: str) -> int:
    """What loading ``folder`` will take, from its weight files alone (no torch): the
    files' size rescaled to the element size asked for."""
    from mistudio.models.inspect import weight_files

    files = weight_files(folder)
    on_disk = sum(f.stat().st_size for f in files)
    if not on_disk:
        return 0
    per_param = {"float32": 4.0, "float16": 2.0, "bfloat16": 2.0}.get(dtype, 4.0)
    if quantization == "8bit":
        per_param = 1.0
    elif quantization == "4bit":
        per_param = 0.5
    stored = _stored_element_size(files[0])
    return int(on_disk / stored * per_param)


def _stored_element_size(path: Path) -> float:
    from mistudio.models.inspect import read_safetensors_header

    sizes = {"F32": 4, "F16": 2, "BF16": 2, "I8": 1, "U8": 1, "F64": 8}
    if path.suffix == ".safetensors":
        try:
            header = read_safetensors_header(path)
            kinds = [v.get("dtype") for k, v in header.items() if k != "__metadata__"]
            if kinds:
                return float(sizes.get(max(set(kinds), key=kinds.count), 4))
        except Exception:  # a header we cannot read: assume fp32 files (the common case)
            pass
    return 4.0


def free_device_bytes(device: str) -> int:
    from mistudio.models.inspect import available_memory

    return available_memory(device)[0]


class ModelPool:
    """Loaded models keyed by (folder, dtype, device, quantization), in least-recently-used
    order. ``free_bytes(device)`` reads what is free there now (tests pass their own)."""

    def __init__(self, *, free_bytes: Callable[[str], int] = free_device_bytes,
                 max_models: int | None = None):
        self.free_bytes = free_bytes
        self.max_models = max_models
        self._lock = threading.Lock()
        self._loaded: OrderedDict[tuple, LoadedModel] = OrderedDict()
        self._loading: dict[tuple, threading.Lock] = {}

    # ------------------------------------------------------------------ loading

    def get(self, folder: str | Path, *, dtype: str = "float32", device: str = "cpu",
            quantization: str = "none", trust_remote_code: bool = False,
            allow_cpu_quantization: bool = False,
            expected_bytes: int | None = None) -> LoadedModel:
        """The loaded model, loading it (after making room) if the pool does not hold it.

        The pool may evict it again for a later load: code that uses the model for longer
        than a moment (a job) takes a :meth:`lease` instead."""
        return self._get(folder, dtype=dtype, device=device, quantization=quantization,
                         trust_remote_code=trust_remote_code,
                         allow_cpu_quantization=allow_cpu_quantization,
                         expected_bytes=expected_bytes, hold=False)

    def lease(self, folder: str | Path, **kw) -> "ModelLease":
        """``get``, and keep the model from eviction until the lease is closed: ``with
        pool.lease(...) as loaded:`` for a block, or keep the :class:`ModelLease` and
        ``close()`` it when done (an evaluator held through a whole training)."""
        return ModelLease(self, self._get(folder, hold=True, **kw))

    def _get(self, folder: str | Path, *, dtype: str = "float32", device: str = "cpu",
             quantization: str = "none", trust_remote_code: bool = False,
             allow_cpu_quantization: bool = False, expected_bytes: int | None = None,
             hold: bool) -> LoadedModel:
        # a saved variant is quantized whatever was asked: key it (and report it) as such
        quantization = saved_quantization(folder) or quantization
        key = (str(Path(folder).resolve()), dtype, device, quantization)
        with self._lock:
            hit = self._touch(key, hold)
            if hit is not None:
                return hit
            key_lock = self._loading.setdefault(key, threading.Lock())
        with key_lock:  # two jobs asking for the same model load it once
            with self._lock:
                hit = self._touch(key, hold)
            if hit is not None:
                return hit
            if expected_bytes is None:
                expected_bytes = expected_load_bytes(folder, dtype, quantization)
            self.make_room(device, expected_bytes)
            model, tok = load_model_uncached(folder, dtype=dtype, device=device,
                                             quantization=quantization,
                                             trust_remote_code=trust_remote_code,
                                             allow_cpu_quantization=allow_cpu_quantization)
            entry = LoadedModel(key, model, tok, key[0], device, dtype, quantization,
                                memory_bytes=model_memory_bytes(model),
                                last_used=time.monotonic(), users=int(hold))
            with self._lock:
                self._loaded[key] = entry
            return entry

    def _touch(self, key: tuple, hold: bool = False) -> LoadedModel | None:
        """The entry, marked most recently used; held at once (under the pool's lock) when
        ``hold``, so no other thread's ``make_room`` can evict it between finding and holding."""
        hit = self._loaded.get(key)
        if hit is not None:
            self._loaded.move_to_end(key)
            hit.last_used = time.monotonic()
            hit.users += int(hold)
        return hit

    def _let_go(self, entry: LoadedModel) -> None:
        with self._lock:
            entry.users = max(0, entry.users - 1)

    # ------------------------------------------------------------------ memory

    def make_room(self, device: str, needed_bytes: int) -> list[tuple]:
        """Evict idle models of ``device``'s kind, least recently used first, until
        ``needed_bytes`` (with headroom) is free there or none is left to evict; also keeps
        the pool under ``max_models``. Returns the keys of what was evicted."""
        kind = device.split(":")[0]
        evicted: list[tuple] = []
        while True:
            with self._lock:
                idle = [e.key for e in self._loaded.values()
                        if e.users == 0 and e.device.split(":")[0] == kind]
                over_count = self.max_models is not None and len(self._loaded) >= self.max_models
            if not idle:
                break
            if not over_count and (needed_bytes <= 0 or
                                   self.free_bytes(device) >= needed_bytes * LOAD_HEADROOM):
                break
            with self._lock:
                self._loaded.pop(idle[0], None)
            evicted.append(idle[0])
            log.info("model pool: evicted %s (%s, %s, %s) to make room", *idle[0])
            _free_memory()
        return evicted

    def loaded(self) -> list[LoadedModel]:
        """Least recently used first."""
        with self._lock:
            return list(self._loaded.values())

    def held_bytes(self, device: str) -> int:
        kind = device.split(":")[0]
        return sum(e.memory_bytes for e in self.loaded() if e.device.split(":")[0] == kind)

    def idle_bytes(self, device: str) -> int:
        """What ``make_room`` could give back on ``device``'s kind (models no job holds)."""
        kind = device.split(":")[0]
        return sum(e.memory_bytes for e in self.loaded()
                   if e.users == 0 and e.device.split(":")[0] == kind)

    def release(self, folder: str | Path | None = None) -> int:
        """Drop loaded models (all, or those of one folder), held by a job or not: the job
        keeps its own reference and the memory returns when it ends. Returns how many."""
        target = str(Path(folder).resolve()) if folder is not None else None
        with self._lock:
            keys = [k for k in self._loaded if target is None or k[0] == target]
            for k in keys:
                del self._loaded[k]
        if keys:
            _free_memory()
        return len(keys)


def _free_memory() -> None:
    import gc

    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:
        pass


MODEL_POOL = ModelPool()
