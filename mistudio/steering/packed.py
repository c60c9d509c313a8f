"""oneDNN-prepacked linear weights for decoding a few rows at a time on the CPU.

A decoding step multiplies a handful of rows (one per generated column, padded) by every
weight matrix of the model. PyTorch sends ``F.linear`` on the CPU to MKL's ``sgemm``, whose
small-row paths cost nearly a row's time per row: on SmolLM2-135M (one thread) a decoding
step of 2 rows cost 1.56-1.59x one row's, 4 rows 1.35-1.46x. oneDNN's matmul on a weight
reordered once into its blocked layout (``torch.ops.mkldnn._reorder_linear_weight``, the
layout ``torch.compile``'s CPU freezing uses) stays bound by reading the weights: 4 rows then
cost about what one row costs (see docs/steering.md, Speed).

The packed copies cost as much memory as the linear weights themselves, so they are built
once per loaded model (weakly keyed: they go when the model goes), only for float32 models
on the CPU, only when the memory is free, and rebuilt if a weight changes. While
:func:`packed_linears` is active the model's ``nn.Linear`` (and transformers' ``Conv1D``)
modules compute with them, for the calling thread only: another thread running the same
pooled model meanwhile still gets the plain ``forward``. Forward hooks on those modules
still run (``__call__`` wraps the replaced ``forward``).

Results equal ``F.linear``'s to float32 rounding (the sums are accumulated in another order),
and a row's result does not depend on the other rows of the batch.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import weakref

import torch

log = logging.getLogger(__name__)

#: Set to 0 to decode with the plain ``F.linear`` (a comparison, or a platform where the
#: oneDNN kernels misbehave).
ENV_SWITCH = "MISTUDIO_PACKED_LINEARS"
#: The packed copies may take at most this share of the RAM available when they are built.
MEMORY_SHARE = 0.5
#: Rows the layout is tuned for (the padded batch of a baseline + 1-3 columns).
TUNED_ROWS = 4

_LOCK = threading.Lock()
_LOCAL = threading.local()
_PACKS: "weakref.WeakKeyDictionary[torch.nn.Module, _ModelPack]" = weakref.WeakKeyDictionary()


def _linear_weight(module) -> torch.Tensor | None:
    """The ``[out, in]`` weight ``F.linear`` would use for ``module``, or None if its forward
    is not a plain linear map."""
    if type(module) is torch.nn.Linear:
        return module.weight
    # transformers' Conv1D (GPT-2): addmm(bias, x, weight) with weight [in, out]
    if type(module).__name__ == "Conv1D" and hasattr(module, "nf") and hasattr(module, "weight"):
        return module.weight.t()
    return None


class _ModelPack:
    """One model's packed weights and the ``forward`` overrides that use them."""

    def __init__(self, modules: dict[str, torch.nn.Module]):
        self.modules = modules
        self.packed: dict[str, torch.Tensor] = {}
        self.stamps: dict[str, tuple[int, int]] = {}
        self.users = 0
        self.build()

    @staticmethod
    def _stamp(module) -> tuple[int, int]:
        w = module.weight
        # an inference tensor (a model built under inference_mode) keeps no version counter
        return w.data_ptr(), (-1 if w.is_inference() else w._version)

    def stale(self) -> bool:
        return any(self._stamp(m) != self.stamps[n] for n, m in self.modules.items())

    def build(self) -> None:
        for name, module in self.modules.items():
            w = _linear_weight(module).detach().contiguous()
            self.packed[name] = torch.ops.mkldnn._reorder_linear_weight(w, TUNED_ROWS)
            self.stamps[name] = self._stamp(module)

    def install(self) -> None:
        for name, module in self.modules.items():
            module.forward = _packed_forward(module, self.packed[name], type(module).forward)

    def uninstall(self) -> None:
        for module in self.modules.values():
            module.__dict__.pop("forward", None)


def _packed_forward(module, packed: torch.Tensor, plain):
    # the closure holds the module weakly, as the module holds this function
    ref = weakref.ref(module)
    linear = torch.ops.mkldnn._linear_pointwise

    def forward(x, *args, **kwargs):
        m = ref()
        if (getattr(_LOCAL, "depth", 0) and not args and not kwargs and not torch.is_grad_enabled()
                and x.dtype == torch.float32 and x.device.type == "cpu"):
            return linear(x, packed, m.bias, "none", [], "")
        return plain(m, x, *args, **kwargs)

    return forward


def supported(model) -> bool:
    """float32 weights on the CPU, oneDNN built in, and not switched off."""
    if os.environ.get(ENV_SWITCH, "1") == "0":
        return False
    if not (torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn,
                                                              "_linear_pointwise")):
        return False
    param = next(model.parameters(), None)
    return param is not None and param.device.type == "cpu" and param.dtype == torch.float32


def _linear_modules(model) -> dict[str, torch.nn.Module]:
    """The linear modules with float32 CPU weights (a layer kept in another dtype is left)."""
    out = {}
    for name, m in model.named_modules():
        w = _linear_weight(m)
        if w is not None and w.dtype == torch.float32 and w.device.type == "cpu":
            out[name] = m
    return out


def _fits(modules: dict[str, torch.nn.Module]) -> bool:
    import psutil

    need = sum(m.weight.numel() * m.weight.element_size() for m in modules.values())
    free = psutil.virtual_memory().available
    if need > MEMORY_SHARE * free:
        log.info("linear weights not packed: %.0f MB needed, %.0f MB available", need / 1e6,
                 free / 1e6)
        return False
    return True


def _built(model) -> _ModelPack | None:
    """``model``'s packed weights, built now if missing or stale (call under ``_LOCK``)."""
    pack = _PACKS.get(model)
    if pack is not None and pack.users == 0 and pack.stale():
        pack = None  # a weight changed: rebuild (never while another thread uses it)
    if pack is None:
        modules = _linear_modules(model)
        if not modules or not _fits(modules):
            return None
        try:
            pack = _ModelPack(modules)
        except RuntimeError as exc:  # a layout or platform oneDNN refuses
            log.warning("linear weights not packed: %s", exc)
            return None
        _PACKS[model] = pack
    return pack


def prepare(model) -> bool:
    """Build ``model``'s packed weights now (the first generation would); True if built."""
    if not supported(model):
        return False
    with _LOCK:
        return _built(model) is not None


def _acquire(model) -> _ModelPack | None:
    with _LOCK:
        pack = _built(model)
        if pack is None:
            return None
        if pack.users == 0:
            pack.install()
        pack.users += 1
        return pack


def _release(pack: _ModelPack) -> None:
    with _LOCK:
        pack.users -= 1
        if pack.users == 0:
            pack.uninstall()


@contextlib.contextmanager
def packed_linears(model, enabled: bool | None = None):
    """Within the block, this thread's forward passes of ``model`` use packed linear weights.
    ``enabled=False`` leaves the model as it is; otherwise they are used where
    :func:`supported` and the memory allow. Yields whether the packed weights are in use."""
    if enabled is False or not supported(model):
        yield False
        return
    pack = _acquire(model)
    if pack is None:
        yield False
        return
    _LOCAL.depth = getattr(_LOCAL, "depth", 0) + 1
    try:
        yield True
    finally:
        _LOCAL.depth -= 1
        _release(pack)


def is_packed(model) -> bool:
    """Whether packed weights for ``model`` are built (tests, the benchmark)."""
    with _LOCK:
        return model in _PACKS


def drop(model) -> None:
    """Free ``model``'s packed weights (unless a generation is using them)."""
    with _LOCK:
        pack = _PACKS.get(model)
        if pack is not None and pack.users == 0:
            del _PACKS[model]
