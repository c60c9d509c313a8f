"""The application facade: every user action is a method here (UI, CLI and tests use it).

Qt-free. Owns the data directory, the store, the settings, the secrets and the job queue.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Callable

from mistudio.errors import UserError
from mistudio.jobs.queue import JobQueue, Listener, WorkerThread, python_thread
from mistudio.paths import DataPaths, resolve_data_dir
from mistudio.settings import HF_TOKEN, SecretStore, Settings, SettingsRepo
from mistudio.store.db import Store
from mistudio.store.jobs_repo import JobRecord, JobsRepo

log = logging.getLogger(__name__)


class Studio:
    def __init__(self, data_dir: str | os.PathLike | None = None, *,
                 thread_factory: Callable[..., WorkerThread] = python_thread,
                 secrets: SecretStore | None = None, setup_logs: bool = True):
        self.paths = DataPaths(resolve_data_dir(data_dir)).ensure()
        if setup_logs:
            from mistudio.log import setup_logging

            setup_logging(self.paths.logs, stderr=False)
        self.store = Store(self.paths.db_file)
        self.jobs_repo = JobsRepo(self.store)
        self.settings_repo = SettingsRepo(self.store)
        self.settings: Settings = self.settings_repo.load()
        self.secrets = secrets or SecretStore()
        self.interrupted_at_start = self.jobs_repo.mark_interrupted()
        if self.interrupted_at_start:
            log.warning("jobs interrupted by a previous crash: %s", self.interrupted_at_start)
        self.queue = JobQueue(self.jobs_repo, self.paths,
                              max_concurrent=self.settings.max_concurrent_jobs,
                              max_gpu=self.settings.max_gpu_jobs, thread_factory=thread_factory,
                              device=self.settings.default_device,
                              dtype=self.settings.default_dtype)
        self._clean_tmp()

    def _clean_tmp(self) -> None:
        # Partial files of a killed process; nothing in tmp/ is ever referenced by a record.
        # Another live process (the GUI while a CLI command starts) may be writing there.
        if self.jobs_repo.live_foreign_jobs():
            return
        for child in self.paths.tmp.iterdir():
            if child.is_dir():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)

    # ------------------------------------------------------------------ settings

    def update_settings(self, **changes) -> Settings:
        data = {**self.settings.__dict__, **changes}
        new = Settings(**data)
        self.settings_repo.save(new)
        self.settings = new
        self.queue.max_concurrent = new.max_concurrent_jobs
        self.queue.max_gpu = new.max_gpu_jobs
        self.queue.device, self.queue.dtype = new.default_device, new.default_dtype
        return new

    @property
    def hf_token(self) -> str | None:
        return os.environ.get("HF_TOKEN") or self.secrets.get(HF_TOKEN)

    def set_hf_token(self, token: str | None) -> None:
        if token and not token.strip().startswith("hf_"):
            raise UserError("That does not look like a Hugging Face token (they start with 'hf_').",
                            hint="Copy it from https://huggingface.co/settings/tokens.")
        self.secrets.set(HF_TOKEN, token)

    # ------------------------------------------------------------------ jobs

    def submit_job(self, kind: str, params: dict | None = None, *, title: str = "",
                   target: str = "", artifact_dir: Path | None = None,
                   job_id: str | None = None) -> JobRecord:
        return self.queue.submit(kind, params, title=title, target=target,
                                 artifact_dir=artifact_dir, job_id=job_id)

    def run_job_inline(self, kind: str, params: dict | None = None, **kw) -> JobRecord:
        """Submit and wait (CLI, scripts)."""
        rec = self.submit_job(kind, params, **kw)
        return self.queue.wait(rec.id)

    def list_jobs(self, **filters) -> list[JobRecord]:
        return self.jobs_repo.list(**filters)

    def get_job(self, job_id: str) -> JobRecord:
        rec = self.jobs_repo.get(job_id)
        if rec is None:
            matches = [r for r in self.jobs_repo.list() if r.id.startswith(job_id)]
            if len(matches) == 1:
                return matches[0]
            raise UserError(f"No job with id {job_id!r}.", hint="`mistudio jobs list` shows them.")
        return rec

    def cancel_job(self, job_id: str) -> bool:
        rec = self.get_job(job_id)
        if rec.status not in ("queued", "running", "paused"):
            return False
        if not self.queue.cancel(rec.id):
            # Running in another process (e.g. the CLI cancelling the GUI's job): not ours to
            # stop directly; mark it so that process's queue sees it on its next check.
            self.jobs_repo.update(rec.id, message="Cancel requested from another process.")
            return False
        return True

    def pause_job(self, job_id: str) -> bool:
        return self.queue.pause(self.get_job(job_id).id)

    def resume_job(self, job_id: str) -> bool:
        return self.queue.resume(self.get_job(job_id).id)

    def delete_job(self, job_id: str) -> None:
        rec = self.get_job(job_id)
        if self.queue.is_active(rec.id):
            raise UserError("That job is still running.", hint="Cancel it first.")
        self.jobs_repo.delete(rec.id)
        Path(rec.log_path).unlink(missing_ok=True) if rec.log_path else None

    def job_log(self, job_id: str, tail: int | None = None) -> str:
        rec = self.get_job(job_id)
        try:
            text = Path(rec.log_path).read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        if tail:
            text = "\n".join(text.splitlines()[-tail:])
        return text

    def add_job_listener(self, fn: Listener, *, records: bool = False) -> None:
        """Tell ``fn(job_id, kind, payload)`` about every job event; services that record
        outcomes pass ``records=True`` (told first; see JobQueue.add_listener)."""
        self.queue.add_listener(fn, records=records)

    @property
    def features(self):
        """Feature analyses and their queries (:class:`mistudio.app.features.FeatureService`)."""
        svc = self.__dict__.get("_svc_features")
        if svc is None:
            from mistudio.app.features import FeatureService

            svc = FeatureService(store=self.store, queue=self.queue, paths=self.paths,
                                 trainings=self.trainings, models=self.models)
            self.__dict__["_svc_features"] = svc
        return svc

    # ------------------------------------------------------------------ info

    def info(self, *, with_torch: bool = True) -> dict:
        from mistudio import __version__
        from mistudio import hardware

        hw = hardware.probe() if with_torch else hardware.probe_fast()
        return {
            "version": __version__,
            "data_dir": str(self.paths.root),
            "database": str(self.paths.db_file),
            "schema_version": self.store.schema_version(),
            "secrets_backend": self.secrets.backend,
            "settings": self.settings.__dict__,
            "hardware": hw.to_dict(),
        }

    # ------------------------------------------------------------------ shutdown

    def close(self, timeout: float | None = None) -> list[str]:
        still = self.queue.shutdown(self.settings.shutdown_wait_s if timeout is None else timeout)
        self.store.close()
        return still


def _service(module: str, cls: str):
    """A lazily built per-area service (``studio.datasets``, ``studio.models``, ...)."""
    attr = f"_svc_{cls}"

    def get(self):
        svc = self.__dict__.get(attr)
        if svc is None:
            import importlib

            svc = getattr(importlib.import_module(module), cls)(self)
            self.__dict__[attr] = svc
        return svc

    return property(get)


# Each area's actions live in its own service class; the facade exposes them by name.
Studio.datasets = _service("mistudio.data.service", "DatasetService")
Studio.models = _service("mistudio.models.service", "ModelService")
Studio.activations = _service("mistudio.activations.service", "ActivationService")
Studio.trainings = _service("mistudio.sae.service", "TrainingService")
Studio.templates = _service("mistudio.templates.service", "TemplateService")
Studio.workflows = _service("mistudio.workflows", "TrainingWorkflows")


def _sae_catalogue(self):
    """The pretrained-SAE catalogue (mistudio.app.sae_catalogue), with explicit deps."""
    svc = self.__dict__.get("_svc_sae_catalogue")
    if svc is None:
        from mistudio.app.sae_catalogue import SAECatalogueService

        self.trainings  # records finished catalogue downloads (its job listener)
        svc = SAECatalogueService(
            paths=self.paths, settings=lambda: self.settings,
            update_settings=self.update_settings, submit_job=self.submit_job,
            hf_token=lambda: self.hf_token,
            registered_models=lambda: [m.source_ref or m.name for m in self.models.list()],
            find_imported=lambda ref: [s for s in self.trainings.list_saes()
                                       if s.source_ref == ref])
        self.__dict__["_svc_sae_catalogue"] = svc
    return svc


Studio.sae_catalogue = property(_sae_catalogue)
