"""Recording what the SAE engine's jobs did: a training's status, steps, checkpoints and
finished SAEs; an evaluation's metrics; an imported SAE. A job-queue listener (told before
the UI's) and the training service's readers both reconcile through here."""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

from mistudio.app.jobs import ACTIVE, JobService
from mistudio.reliability import crash_point
from mistudio.sae.config import TOPK_FAMILY, TrainingConfig
from mistudio.sae.repository import SAERecord, SAEsRepo, TrainingRecord, TrainingsRepo
from mistudio.store.db import new_id, now_iso

log = logging.getLogger(__name__)

TRAIN_KIND = "sae.train"
IMPORT_KIND = "sae.import"
EVAL_KIND = "sae.evaluate"
CATALOGUE_KIND = "sae.catalogue_download"  # (mistudio.app.sae_catalogue) recorded as imports


class TrainingRecorder:
    def __init__(self, *, trainings: TrainingsRepo, saes: SAEsRepo, jobs: JobService):
        self.trainings_repo = trainings
        self.saes_repo = saes
        self.jobs = jobs
        self._sync_lock = threading.RLock()  # the listener and readers both reconcile
        jobs.add_listener(self.on_job_event, records=True)

    def on_job_event(self, job_id: str, kind: str, payload: dict) -> None:
        if kind not in ("status", "checkpoint"):
            return
        try:
            if kind == "checkpoint":
                job = self.jobs.find(job_id)
                if job and job.kind == TRAIN_KIND and job.target:
                    self.trainings_repo.update(job.target, step=int(payload.get("step", 0)),
                                               tokens=int(payload.get("tokens", 0)))
                    tr = self.trainings_repo.get(job.target)
                    if tr:
                        self.sync_checkpoints(tr)
            else:
                self.sync_from_job(job_id, payload.get("status"), payload)
        except Exception:  # a listener must never break the job
            log.exception("could not record a training event")

    def sync_from_job(self, job_id: str, status: str | None = None,
                       payload: dict | None = None) -> None:
        with self._sync_lock:
            self._sync_from_job_locked(job_id, status, payload)

    def _sync_from_job_locked(self, job_id: str, status: str | None,
                              payload: dict | None) -> None:
        job = self.jobs.find(job_id)
        if job is None or not job.target:
            return
        if job.kind == EVAL_KIND:
            result = (payload or {}).get("result") or job.result
            if (status or job.status) == "completed" and result:
                rec = self.saes_repo.get(job.target)
                if rec is not None:
                    self.saes_repo.update_metrics(rec.id, {
                        **rec.metrics, **result.get("metrics", {}),
                        "eval_held_out": result.get("held_out")})
            return
        if job.kind in (IMPORT_KIND, CATALOGUE_KIND):
            if (status or job.status) == "completed" and (payload or {}).get("result"):
                if self.saes_repo.get(job.target) is None:
                    self.record_import(payload["result"])
            return
        if job.kind != TRAIN_KIND:
            return
        tr = self.trainings_repo.get(job.target)
        if tr is None or tr.job_id not in ("", job.id):
            return
        status = status or job.status
        if status == "running" and self.jobs.is_active(job.id) is False:
            status = job.status
        fields = {"status": status}
        if status in ("completed", "failed", "cancelled", "interrupted"):
            fields["finished_at"] = job.finished_at or now_iso()
            fields["error"] = job.error if status == "failed" else ""
        if status in ("failed", "cancelled", "interrupted"):
            fields.update(self._progress_of_newest_checkpoint(tr))
        if status == "completed":
            result = (payload or {}).get("result") or job.result or read_result(tr.folder)
            crash_point("train.row.completed")
            if result:
                fields.update(result=result, tokens=int(result.get("tokens", 0)),
                              step=int(result.get("step", 0)))
                self.register_saes(tr, result)
        self.trainings_repo.update(tr.id, **fields)
        if status not in ACTIVE:
            self.sync_checkpoints(tr)

    @staticmethod
    def _progress_of_newest_checkpoint(tr: TrainingRecord) -> dict:
        """A stopped training's step and tokens are those of its newest checkpoint (where a
        resume continues). The row is told of a checkpoint just after its folder is renamed
        into place; a process killed in between left the row a checkpoint behind."""
        from mistudio.sae.checkpoints import find_checkpoint  # torch-free listing

        newest = find_checkpoint(tr.folder) if tr.folder else None
        if newest is None or (newest.step, newest.tokens) == (tr.step, tr.tokens):
            return {}
        return {"step": newest.step, "tokens": newest.tokens}

    def register_saes(self, tr: TrainingRecord, result: dict) -> None:
        existing = {s.member: s for s in self.saes_repo.list(tr.id)}
        cfg = TrainingConfig.from_dict(tr.config)
        members = {m.member_name: m for m in cfg.members()}
        for item in result.get("saes", []):
            old = existing.get(item["member"])
            m = members.get(item["member"], cfg)
            cfg_json = read_json(Path(item["path"]) / "cfg.json")
            meta = cfg_json.get("metadata") or {}
            self.saes_repo.insert(SAERecord(
                id=old.id if old else new_id("sae"), folder=item["path"], source="trained",
                name=f"{tr.name} · {item['member']}" if len(result["saes"]) > 1 else tr.name,
                training_id=tr.id, member=item["member"], architecture=item["architecture"],
                kind=m.kind, d_in=item["d_in"], d_sae=item["d_sae"], d_out=tr.d_out or item["d_in"],
                k=item.get("k") if item["architecture"] in TOPK_FAMILY else None,
                model_name=meta.get("model_name") or "", hook_name=meta.get("hook_name") or "",
                metrics={**(item.get("metrics") or {}),
                         **({"eval_held_out": item.get("eval_held_out")}
                            if "ce_loss_score" in (item.get("metrics") or {}) else {})}))

    def sync_checkpoints(self, tr: TrainingRecord) -> None:
        from mistudio.sae.checkpoints import list_checkpoints  # torch-free listing

        rows = [{"step": c.step, "tokens": c.tokens, "path": c.path,
                 "created_at": str(c.created_at)} for c in list_checkpoints(tr.folder)]
        self.trainings_repo.set_checkpoints(tr.id, rows)

    def record_import(self, result: dict) -> SAERecord:
        rec = SAERecord(**{k: result[k] for k in (
            "id", "folder", "name", "source_ref", "format", "architecture", "kind", "d_in",
            "d_sae", "d_out", "k", "model_name", "hook_name")}, source="imported")
        return self.saes_repo.insert(rec)


def read_json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def read_result(folder: str) -> dict | None:
    return read_json(Path(folder) / "result.json") or None
