"""The training job: ``sae.train`` (GPU, pausable). Thin: builds the source and the trainer.

``params``: ``config`` (a :class:`~mistudio.sae.config.TrainingConfig` dict),
``activation_path`` (and ``target_activation_path`` for transcoders), optionally
``resume_from`` (a checkpoint folder), ``out_dir`` (default: the job's artifact folder,
which the service sets to ``trainings/<id>/``) and ``evaluation`` (``{"spec": EvalSpec
dict}`` or ``{"skip_reason": ...}``, for the spliced-in CE/KL evaluation). Returns the result summary (also written to
``result.json``).
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
    device = resolve_device(cfg.device if cfg.device != "auto" else ctx.device)
    if cfg.device == "cuda" and device != "cuda":
        ctx.log("CUDA was requested but is not available; training on the CPU.", "warning")
    source = open_source(path, target)
    out_dir = Path(params.get("out_dir") or ctx.artifact_dir)
    trainer = Trainer(cfg, source, out_dir, ctx=ctx, device=device,
                      resume_from=params.get("resume_from") or None,
                      evaluation=params.get("evaluation"))
    return trainer.run()
