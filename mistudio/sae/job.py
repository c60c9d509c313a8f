"""The training job: ``sae.train`` (GPU, pausable). Thin: builds the source and the trainer.

``params``: ``config`` (a :class:`~mistudio.sae.config.TrainingConfig` dict),
``activation_path`` (and ``target_activation_path`` for transcoders), optionally
``resume_from`` (a checkpoint folder), ``out_dir`` (default: the job's artifact folder,
which the service sets to ``trainings/<id>/``) and ``evaluation`` (``{"spec": EvalSpec
dict}`` or ``{"skip_reason": ...}``, for the spliced-in CE/KL evaluation) and, under
``torchrun``, ``distributed`` (``world_size``, this process's ``rank`` and ``device``: only
rank 0 writes). Returns the result summary (also written to ``result.json``).
"""

from __future__ import annotations

from pathlib import Path

from mistudio.errors import UserError


def train_job(params: dict, ctx) -> dict:
    from mistudio.hardware import resolve_device
    from mistudio.sae.config import TrainingConfig
    from mistudio.sae.data import open_source
    from mistudio.sae.trainer import Trainer

    cfg = TrainingConfig.from_dict(params["config"])
    path = params.get("activation_path") or cfg.activation_path
    if not path:
        raise UserError("The training job has no activation set.",
                        hint="Start trainings from the Training tab or `mistudio train`.")
    target = params.get("target_activation_path") or cfg.target_activation_path or None
    dist = params.get("distributed") or {}
    world = int(dist.get("world_size", 1))
    if world > 1:  # one process of a torchrun group (mistudio.cli.train)
        device = dist.get("device") or "cpu"
    else:
        device = resolve_device(cfg.device if cfg.device != "auto" else ctx.device)
        if cfg.device == "cuda" and device != "cuda":
            ctx.log("CUDA was requested but is not available; training on the CPU.", "warning")
    source = open_source(path, target)
    rank = int(dist.get("rank", 0))
    out = params.get("out_dir") or ctx.artifact_dir
    trainer = Trainer(cfg, source, Path(out) if out and rank == 0 else None, ctx=ctx,
                      device=device, rank=rank, world_size=world,
                      resume_from=params.get("resume_from") or None,
                      evaluation=params.get("evaluation"))
    return trainer.run()
