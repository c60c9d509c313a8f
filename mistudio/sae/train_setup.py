"""The trainer's small helpers: the optimizer, the autocast dtype, a bare job context and how a
compiler error is told (kept beside :mod:`mistudio.sae.trainer`, which re-exports them)."""

from __future__ import annotations

import torch

from mistudio.sae.config import TrainingConfig


class _NullContext:
    """Stands in for a JobContext when the trainer runs bare (benchmarks)."""

    artifact_dir = None

    def progress(self, *a, **k): ...
    def log(self, *a, **k): ...
    def metric(self, *a, **k): ...
    def checkpoint(self, **k): ...
    def pause_point(self): ...
    def check_cancelled(self): ...


def _describe(exc: BaseException) -> str:
    """The innermost cause of a (compiler) error, on one line."""
    seen = set()
    while id(exc) not in seen:
        seen.add(id(exc))
        inner = getattr(exc, "inner_exception", None) or exc.__cause__
        if inner is None:
            break
        exc = inner
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0][:200]}" if lines else type(exc).__name__


def resolve_matmul_dtype(setting: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype: 'auto' is bf16 on a bf16-capable GPU, fp32 (None) on CPU."""
    if setting in ("float32", "") or (setting == "auto" and device.type != "cuda"):
        return None
    if setting == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"bfloat16": torch.bfloat16, "float16": torch.float16}[setting]


def make_optimizer(params, cfg: TrainingConfig, device: torch.device) -> torch.optim.Optimizer:
    kw = dict(lr=cfg.lr, betas=(cfg.adam_beta1, cfg.adam_beta2), eps=cfg.adam_eps)
    try:
        return torch.optim.Adam(params, fused=True, **kw)
    except (RuntimeError, TypeError, ValueError):  # fused not available for this device
        return torch.optim.Adam(params, foreach=True, **kw)
