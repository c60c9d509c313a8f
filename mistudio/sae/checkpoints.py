"""Training checkpoints: written atomically, listed, pruned (keep last N), loaded for resume.

Layout under a training folder::

    checkpoints/step_00001200/
        state.pt     weights, optimizer states, trackers, stream cursor, RNG, step, tokens
        meta.json    step, tokens, time, last metrics per SAE (small; for listing)

The folder is built under a temporary name and renamed into place (``atomic_dir``), so a
checkpoint that is listed is complete. Pruning deletes the oldest only after the newest
is in place. Listing imports no torch (the GUI lists checkpoints).
"""

from __future__ import annotations

import json
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from mistudio.errors import UserError
from mistudio.manifest import write_manifest
from mistudio.paths import (atomic_dir, atomic_write_json, check_free_space,
                            settle_swaps_in, settled_dir)
from mistudio.reliability import crash_point

CHECKPOINT_DIR = "checkpoints"
STATE_FILE = "state.pt"
META_FILE = "meta.json"


@dataclass
class CheckpointInfo:
    step: int
    tokens: int
    path: str
    created_at: float
    metrics: dict
    size_bytes: int = 0  # of the state file

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def checkpoint_root(training_dir: str | Path) -> Path:
    return Path(training_dir) / CHECKPOINT_DIR


def list_checkpoints(training_dir: str | Path) -> list[CheckpointInfo]:
    """Complete checkpoints, oldest first."""
    root = checkpoint_root(training_dir)
    out = []
    if not root.is_dir():
        return out
    settle_swaps_in(root)  # a step rewritten by a resumed training, killed mid-swap
    for d in root.iterdir():
        if not d.is_dir() or not d.name.startswith("step_") or not (d / STATE_FILE).exists():
            continue
        try:
            meta = json.loads((d / META_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        out.append(CheckpointInfo(step=int(meta["step"]), tokens=int(meta["tokens"]), path=str(d),
                                  created_at=float(meta.get("created_at", 0)),
                                  metrics=meta.get("metrics", {}),
                                  size_bytes=(d / STATE_FILE).stat().st_size))
    out.sort(key=lambda c: c.step)
    return out


def rng_state() -> dict:
    import numpy as np
    import torch

    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
             "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict) -> None:
    import numpy as np
    import torch

    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(training_dir: str | Path, state: dict, *, step: int, tokens: int,
                    metrics: dict | None = None, keep: int = 3) -> CheckpointInfo:
    """Write ``state`` as the checkpoint for ``step``; keep the newest ``keep`` ones."""
    import torch

    root = checkpoint_root(training_dir)
    root.mkdir(parents=True, exist_ok=True)
    approx = sum(t.numel() * t.element_size() for t in _tensors(state))
    check_free_space(root, approx, what="a training checkpoint")
    target = root / f"step_{step:08d}"
    created = time.time()
    meta = {"step": step, "tokens": tokens, "created_at": created, "metrics": metrics or {}}
    with atomic_dir(target) as tmp:
        torch.save(state, tmp / STATE_FILE)
        crash_point("train.checkpoint.write")
        atomic_write_json(tmp / META_FILE, meta)
        write_manifest(tmp)
    crash_point("train.checkpoint.renamed")  # in place; the training's row not yet told
    prune_checkpoints(training_dir, keep)
    return CheckpointInfo(step=step, tokens=tokens, path=str(target), created_at=created,
                          metrics=metrics or {})


def prune_checkpoints(training_dir: str | Path, keep: int) -> list[str]:
    ckpts = list_checkpoints(training_dir)
    removed = []
    for c in ckpts[:-keep] if keep > 0 else []:
        shutil.rmtree(c.path, ignore_errors=True)
        removed.append(c.path)
    return removed


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    import torch

    path = settled_dir(path)
    try:
        return torch.load(path / STATE_FILE, map_location=map_location, weights_only=False)
    except (OSError, RuntimeError, EOFError) as exc:
        raise UserError(f"The checkpoint {path} cannot be read ({exc}).",
                        hint="Resume from an earlier checkpoint or start the training again.") from exc


def find_checkpoint(training_dir: str | Path, step: int | None = None) -> CheckpointInfo | None:
    ckpts = list_checkpoints(training_dir)
    if not ckpts:
        return None
    if step is None:
        return ckpts[-1]
    for c in ckpts:
        if c.step == step:
            return c
    raise UserError(f"No checkpoint at step {step}.",
                    hint="Available steps: " + ", ".join(str(c.step) for c in ckpts))


def _tensors(obj):
    import torch

    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _tensors(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _tensors(v)
