"""What the Training tab asks of the app, in one place (no Qt, no torch).

Every call goes through ``studio.trainings`` (the SAE engine's ``TrainingService``) when it
offers the method, and otherwise through the job queue with the ``sae.train`` job, whose
parameters are documented in ``mistudio/sae/job.py``. A training (``job.target``, the
``tr_...`` id) is one job; resuming from a checkpoint submits a new job with the same target
that writes into the same training folder.

Checkpoints are listed from their ``meta.json`` files (the layout of
``mistudio/sae/checkpoints.py``) so the GUI never imports torch to show them.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from mistudio.errors import UserError
from mistudio.store.db import new_id
from mistudio.jobs.repository import ACTIVE, JobRecord

TRAIN_KIND = "sae.train"
TRAINING_KINDS = (TRAIN_KIND,)


@dataclass
class CheckpointEntry:
    step: int
    tokens: int
    path: str
    created_at: float
    metrics: dict
    size_bytes: int = 0


def list_checkpoints(training_dir: str | Path) -> list[CheckpointEntry]:
    """Complete checkpoints (``checkpoints/step_*/`` with state and meta), oldest first."""
    root = Path(training_dir) / "checkpoints"
    out = []
    if not root.is_dir():
        return out
    for d in root.iterdir():
        state = d / "state.pt"
        if not d.is_dir() or not d.name.startswith("step_") or not state.exists():
            continue
        try:
            meta = json.loads((d / "meta.json").read_text(encoding="utf-8"))
            out.append(CheckpointEntry(step=int(meta["step"]), tokens=int(meta["tokens"]),
                                       path=str(d), created_at=float(meta.get("created_at", 0)),
                                       metrics=meta.get("metrics") or {},
                                       size_bytes=state.stat().st_size))
        except (OSError, ValueError, KeyError):
            continue
    out.sort(key=lambda c: c.step)
    return out


class TrainingActions:
    def __init__(self, studio):
        self.studio = studio

    @property
    def service(self):
        try:
            return self.studio.trainings
        except ModuleNotFoundError:  # the engine's service is not installed
            return None

    def _svc(self, name: str):
        svc = self.service
        return getattr(svc, name, None) if svc is not None else None

    # ------------------------------------------------------------------ reading

    def list_jobs(self) -> list[JobRecord]:
        jobs = []
        for kind in TRAINING_KINDS:
            jobs += self.studio.jobs_repo.list(kind=kind)
        jobs.sort(key=lambda j: j.created_at)  # oldest first: cards are stacked on top
        return jobs

    def training_dir(self, job: JobRecord) -> Path:
        return Path(job.params.get("out_dir") or job.artifact_dir)

    def checkpoints(self, job: JobRecord) -> list[CheckpointEntry]:
        return list_checkpoints(self.training_dir(job))

    def can_resume(self, job: JobRecord) -> bool:
        return job.status in ("interrupted", "cancelled", "failed") and bool(self.checkpoints(job))

    def result(self, job: JobRecord) -> dict | None:
        if job.result:
            return job.result
        try:
            return json.loads((self.training_dir(job) / "result.json").read_text("utf-8"))
        except (OSError, ValueError):
            return None

    # ------------------------------------------------------------------ starting

    def start(self, config: dict, *, activation_path: str = "", title: str = "") -> JobRecord:
        """Start a training of ``config`` (TrainingConfig dict). Validates first."""
        from mistudio.sae.config import TrainingConfig

        cfg = TrainingConfig.from_dict(config)
        start = self._svc("start")
        if start is not None:
            return start(cfg, activation_path=activation_path or None, title=title)
        path = activation_path or cfg.activation_path
        if not path and cfg.activation_id:
            path = str(self.studio.activations.get(cfg.activation_id).folder)
        if not path:
            raise UserError("No activation set chosen for training.",
                            hint="Pick an activation set (extract one in the Models tab).")
        training_id = new_id("tr")
        out_dir = self.studio.paths.entity_dir("trainings", training_id)
        if not (title or cfg.name):
            width = f"{cfg.d_sae:,} latents" if cfg.d_sae else f"×{cfg.expansion_factor:g}"
            sweep = f" sweep {', '.join(cfg.sweep)}" if cfg.sweep else ""
            title = f"{cfg.architecture} {width}{sweep} · {Path(path).name}"
        title = title or cfg.name
        return self.studio.submit_job(
            TRAIN_KIND, {"config": cfg.to_dict(), "activation_path": str(path),
                         "out_dir": str(out_dir)},
            title=title, target=training_id, artifact_dir=out_dir)

    def resume_from_checkpoint(self, job: JobRecord, checkpoint: str | None = None) -> JobRecord:
        """A new job continuing ``job``'s training from ``checkpoint`` (default: the last)."""
        if self.studio.queue.is_active(job.id):
            raise UserError("That training is still running.", hint="Pause or cancel it first.")
        resume = self._svc("resume")
        if resume is not None:
            return resume(job.target or job.id, checkpoint=checkpoint)
        ckpts = self.checkpoints(job)
        if checkpoint is None:
            if not ckpts:
                raise UserError("This training has no checkpoint to resume from.",
                                hint="Start it again with Duplicate.")
            checkpoint = ckpts[-1].path
        elif not Path(checkpoint).is_dir():
            raise UserError(f"The checkpoint {checkpoint} no longer exists.",
                            hint="Pick another one in the Checkpoints panel.")
        params = dict(job.params)
        params["resume_from"] = str(checkpoint)
        params["out_dir"] = str(self.training_dir(job))
        title = job.title if job.title.endswith("(resumed)") else f"{job.title} (resumed)"
        return self.studio.submit_job(job.kind, params, title=title, target=job.target,
                                      artifact_dir=self.training_dir(job))

    def duplicate_config(self, job: JobRecord) -> dict:
        """The job's settings, for a new training (the form is filled with them)."""
        config = dict(job.params.get("config") or {})
        for key in ("member_name",):
            config.pop(key, None)
        return config

    # ------------------------------------------------------------------ control

    def pause(self, job_id: str) -> bool:
        return self.studio.pause_job(job_id)

    def resume(self, job_id: str) -> bool:
        return self.studio.resume_job(job_id)

    def cancel(self, job_id: str) -> bool:
        return self.studio.cancel_job(job_id)

    def delete_training(self, jobs: list[JobRecord]) -> None:
        """Delete a training: all its jobs (a resume adds one) and its folder of files."""
        if any(j.status in ACTIVE or self.studio.queue.is_active(j.id) for j in jobs):
            raise UserError("That training is still running.", hint="Cancel it first.")
        delete = self._svc("delete_training")
        target = next((j.target for j in jobs if j.target), "")
        if delete is not None and target:
            try:
                self.service.get_training(target)
            except UserError:
                delete = None  # a job without a training record (started elsewhere)
        if delete is not None and target:
            delete(target)  # its jobs, SAE records and folder
            return
        folders = {self.training_dir(j) for j in jobs}
        for j in jobs:
            if self.studio.jobs_repo.get(j.id) is not None:
                self.studio.delete_job(j.id)
        root = self.studio.paths.root.resolve()
        for folder in folders:  # never anything outside the data folder
            if folder.exists() and root in folder.resolve().parents:
                shutil.rmtree(folder, ignore_errors=True)

    def delete_checkpoint(self, job: JobRecord, path: str) -> None:
        p = Path(path)
        delete = self._svc("delete_checkpoint")
        if delete is not None and job.target:
            step = next((c.step for c in self.checkpoints(job) if Path(c.path) == p), None)
            if step is None:
                raise UserError("That checkpoint no longer exists.")
            delete(job.target, step)
            return
        if self.studio.queue.is_active(job.id):
            raise UserError("The training is running; it manages its checkpoints itself.",
                            hint="Pause or stop it first.")
        if p.parent != self.training_dir(job) / "checkpoints":
            raise UserError("That folder is not a checkpoint of this training.")
        shutil.rmtree(p)

    def export_saelens(self, job: JobRecord, member: str, destination: str | Path) -> Path:
        """Copy a finished SAE (already in SAELens layout) to ``destination``."""
        export = self._svc("export_saelens")
        if export is not None:
            return export(job.target or job.id, member, destination)
        src = self.training_dir(job) / "saes" / member
        if not (src / "cfg.json").exists():
            raise UserError(f"The training has no finished SAE {member!r}.",
                            hint="Only completed trainings have exportable SAEs.")
        dest = Path(destination)
        if dest.exists() and any(dest.iterdir()):
            dest = dest / member
        if dest.exists():
            raise UserError(f"{dest} already exists.", hint="Choose an empty folder.")
        shutil.copytree(src, dest)
        return dest
