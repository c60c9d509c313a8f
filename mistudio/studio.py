"""The application facade: the one entry of the UI, the CLI and the tests.

Qt-free. Owns the data directory, the store, the settings, the secrets and the job queue, and
builds one service per area (``mistudio.app``), each given exactly what it uses. A service is
built on first use (most of them import numpy or read their tables), under one lock so that
two threads asking at once get the same one.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
import threading
import warnings
from typing import TYPE_CHECKING, Callable

import mistudio.app.job_kinds  # noqa: F401 - registers every area's job kinds
from mistudio.app.jobs import JobRecord, JobService
from mistudio.app.settings import SettingsService
from mistudio.jobs.queue import JobQueue, Listener, WorkerThread, python_thread
from mistudio.paths import DataPaths, resolve_data_dir
from mistudio.settings import SecretStore, Settings, SettingsRepo
from mistudio.store.db import Store
from mistudio.jobs.repository import JobsRepo

if TYPE_CHECKING:  # the services are imported where they are first built
    from mistudio.app.activations import ActivationService
    from mistudio.app.datasets import DatasetService
    from mistudio.app.features import FeatureService
    from mistudio.app.models import ModelService
    from mistudio.app.runs import RunsService
    from mistudio.app.steering import SteeringService
    from mistudio.app.sae_catalogue import SAECatalogueService
    from mistudio.app.trainings import TrainingService
    from mistudio.app.templates import TemplateService
    from mistudio.app.workflows import TrainingWorkflows

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
        jobs_repo = JobsRepo(self.store)
        self.settings_service = SettingsService(SettingsRepo(self.store),
                                                secrets or SecretStore())
        self.secrets = self.settings_service.secrets
        self.interrupted_at_start = jobs_repo.mark_interrupted()
        if self.interrupted_at_start:
            log.warning("jobs interrupted by a previous crash: %s", self.interrupted_at_start)
        s = self.settings
        self._queue = JobQueue(jobs_repo, self.paths,
                               max_concurrent=s.max_concurrent_jobs, max_gpu=s.max_gpu_jobs,
                               thread_factory=thread_factory, device=s.default_device,
                               dtype=s.default_dtype)
        self.settings_service.on_change(self._follow_settings)
        # every job action and query goes through the JobService; the queue and the jobs
        # table stay behind it (the UI and the CLI never see either)
        self.jobs = JobService(jobs_repo, self._queue)
        self._build_lock = threading.RLock()
        self._models: ModelService | None = None
        self._datasets: DatasetService | None = None
        self._activations: ActivationService | None = None
        self._trainings: TrainingService | None = None
        self._features: FeatureService | None = None
        self._autointerp = None
        self._feature_labels = None  # FeatureLabelService
        self._feature_maps = None  # FeatureMapService
        self._runs: RunsService | None = None
        self._templates: TemplateService | None = None
        self._workflows: TrainingWorkflows | None = None
        self._steering: SteeringService | None = None
        self._storage = None  # StorageService
        self._sae_catalogue: SAECatalogueService | None = None
        self._clean_tmp()

    def _clean_tmp(self) -> None:
        # Partial files of a killed process; nothing in tmp/ is ever referenced by a record.
        # Another live process (the GUI while a CLI command starts) may be writing there.
        # The cleanup's tmp rule decides, so the wipe and `storage clean` always agree.
        from mistudio.storage.cleanup import tmp_rule

        items, _kept = tmp_rule(self.paths.root, self.jobs.live_foreign_ids())
        for item in items:
            p = Path(item.where)
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)

    # Other branches' tests written before the JobService took the queue's place may still
    # say studio.queue / studio.jobs_repo; they get the same objects with a warning. Nothing
    # in mistudio/ uses these (tests/foundation/test_layers.py greps the UI and the CLI).
    @property
    def queue(self) -> JobQueue:
        warnings.warn("Studio.queue is internal: use studio.jobs", DeprecationWarning, 2)
        return self._queue

    @property
    def jobs_repo(self) -> JobsRepo:
        warnings.warn("Studio.jobs_repo is internal: use studio.jobs", DeprecationWarning, 2)
        return self.jobs.repo

    # ------------------------------------------------------------------ services

    @property
    def models(self) -> ModelService:
        with self._build_lock:
            if self._models is None:
                from mistudio.app.models import ModelService
                from mistudio.models.pool import MODEL_POOL

                self._models = ModelService(store=self.store, paths=self.paths, jobs=self.jobs,
                                            settings=self.settings_service, pool=MODEL_POOL)
            return self._models

    @property
    def datasets(self) -> DatasetService:
        with self._build_lock:
            if self._datasets is None:
                from mistudio.app.datasets import DatasetService

                self._datasets = DatasetService(store=self.store, paths=self.paths,
                                                jobs=self.jobs, settings=self.settings_service,
                                                models=self.models)
            return self._datasets

    @property
    def activations(self) -> ActivationService:
        with self._build_lock:
            if self._activations is None:
                from mistudio.app.activations import ActivationService

                self._activations = ActivationService(
                    store=self.store, paths=self.paths, jobs=self.jobs,
                    settings=self.settings_service, models=self.models, datasets=self.datasets,
                    templates=self.templates)
            return self._activations

    @property
    def trainings(self) -> TrainingService:
        with self._build_lock:
            if self._trainings is None:
                from mistudio.app.trainings import TrainingService

                self._trainings = TrainingService(
                    store=self.store, paths=self.paths, jobs=self.jobs,
                    settings=self.settings_service, models=self.models,
                    datasets=self.datasets, activations=self.activations)
            return self._trainings

    @property
    def features(self) -> FeatureService:
        """Feature analyses and their queries."""
        with self._build_lock:
            if self._features is None:
                from mistudio.app.features import FeatureService

                self._features = FeatureService(store=self.store, jobs=self.jobs,
                                                paths=self.paths, trainings=self.trainings,
                                                models=self.models)
            return self._features

    @property
    def autointerp(self):
        """Explanations of features by a local instruct model, and their scores
        (mistudio/app/autointerp.py)."""
        with self._build_lock:
            if self._autointerp is None:
                from mistudio.app.autointerp import AutointerpService

                self._autointerp = AutointerpService(store=self.store, jobs=self.jobs,
                                                     paths=self.paths, models=self.models,
                                                     features=self.features)
            return self._autointerp

    @property
    def feature_labels(self):
        """Labels, notes, favourites and lists of features (mistudio/app/feature_labels.py)."""
        with self._build_lock:
            if self._feature_labels is None:
                from mistudio.app.feature_labels import FeatureLabelService
                from mistudio.labels.repository import FeatureLabelsRepo
                from mistudio.sae.repository import SAEsRepo

                self._feature_labels = FeatureLabelService(labels=FeatureLabelsRepo(self.store),
                                                           saes=SAEsRepo(self.store))
            return self._feature_labels

    @property
    def feature_maps(self):
        """UMAP / t-SNE maps of an SAE's decoder directions (mistudio/app/feature_map.py)."""
        with self._build_lock:
            if self._feature_maps is None:
                from mistudio.app.feature_map import FeatureMapService
                from mistudio.sae.repository import SAEsRepo

                self._feature_maps = FeatureMapService(saes=SAEsRepo(self.store), jobs=self.jobs,
                                                       paths=self.paths)
            return self._feature_maps

    @property
    def steering(self) -> SteeringService:
        """Steered generation, its history and presets."""
        with self._build_lock:
            if self._steering is None:
                from mistudio.app.steering import SteeringService

                self._steering = SteeringService(store=self.store, jobs=self.jobs,
                                                 paths=self.paths, models=self.models,
                                                 saes=self.trainings, features=self.features)
            return self._steering

    @property
    def storage(self):
        """Disk use, orphans, database backups and restore (mistudio/app/storage.py)."""
        with self._build_lock:
            if self._storage is None:
                from mistudio.app.storage import StorageService

                deleters = {"datasets": lambda i: self.datasets.delete(i),
                            "tokenizations": lambda i: self.datasets.delete_tokenization(i),
                            "models": lambda i: self.models.delete(i),
                            "activation_sets": lambda i: self.activations.delete(i),
                            "feature_analyses": lambda i: self.features.delete_analysis(i)}
                self._storage = StorageService(
                    store=self.store, paths=self.paths, jobs=self.jobs, row_deleters=deleters,
                    settings=self.settings_service,
                    checkpoint_deleter=lambda t, p: self.trainings.delete_checkpoint_at(t, p))
            return self._storage

    @property
    def runs(self) -> RunsService:
        with self._build_lock:
            if self._runs is None:
                from mistudio.app.runs import RunsService

                self._runs = RunsService(jobs=self.jobs)
            return self._runs

    @property
    def templates(self) -> TemplateService:
        with self._build_lock:
            if self._templates is None:
                from mistudio.app.templates import TemplateService

                self._templates = TemplateService(store=self.store)
            return self._templates

    @property
    def workflows(self) -> TrainingWorkflows:
        with self._build_lock:
            if self._workflows is None:
                from mistudio.app.workflows import TrainingWorkflows

                self._workflows = TrainingWorkflows(
                    store=self.store, jobs=self.jobs, models=self.models,
                    datasets=self.datasets, activations=self.activations,
                    trainings=self.trainings)
            return self._workflows

    @property
    def sae_catalogue(self) -> SAECatalogueService:
        """The pretrained-SAE catalogue: browse, filter, download (imports via trainings)."""
        with self._build_lock:
            if self._sae_catalogue is None:
                from mistudio.app.sae_catalogue import SAECatalogueService

                trainings = self.trainings  # records finished downloads (its job listener)
                self._sae_catalogue = SAECatalogueService(
                    paths=self.paths, settings=lambda: self.settings,
                    update_settings=self.update_settings, submit_job=self.submit_job,
                    hf_token=lambda: self.hf_token,
                    registered_models=lambda: [m.source_ref or m.name
                                               for m in self.models.list()],
                    find_imported=lambda ref: [s for s in trainings.list_saes()
                                               if s.source_ref == ref])
            return self._sae_catalogue

    # ------------------------------------------------------------------ settings

    @property
    def settings(self) -> Settings:
        return self.settings_service.current

    def update_settings(self, **changes) -> Settings:
        return self.settings_service.update(**changes)

    def _follow_settings(self, new: Settings) -> None:
        q = self._queue
        q.max_concurrent, q.max_gpu = new.max_concurrent_jobs, new.max_gpu_jobs
        q.device, q.dtype = new.default_device, new.default_dtype

    @property
    def hf_token(self) -> str | None:
        return self.settings_service.hf_token

    def set_hf_token(self, token: str | None) -> None:
        self.settings_service.set_hf_token(token)

    # ------------------------------------------------------------------ jobs (JobService)

    def submit_job(self, kind: str, params: dict | None = None, *, title: str = "",
                   target: str = "", artifact_dir: Path | None = None,
                   job_id: str | None = None) -> JobRecord:
        return self.jobs.submit(kind, params, title=title, target=target,
                                artifact_dir=artifact_dir, job_id=job_id)

    def run_job_inline(self, kind: str, params: dict | None = None, **kw) -> JobRecord:
        """Submit and wait (CLI, scripts)."""
        return self.jobs.run_inline(kind, params, **kw)

    def list_jobs(self, **filters) -> list[JobRecord]:
        return self.jobs.list(**filters)

    def get_job(self, job_id: str) -> JobRecord:
        return self.jobs.get(job_id)

    def cancel_job(self, job_id: str) -> bool:
        return self.jobs.cancel(job_id)

    def pause_job(self, job_id: str) -> bool:
        return self.jobs.pause(job_id)

    def resume_job(self, job_id: str) -> bool:
        return self.jobs.resume(job_id)

    def delete_job(self, job_id: str) -> None:
        self.jobs.delete(job_id)

    def job_log(self, job_id: str, tail: int | None = None) -> str:
        return self.jobs.log(job_id, tail)

    def add_job_listener(self, fn: Listener, *, records: bool = False) -> None:
        """Tell ``fn(job_id, kind, payload)`` about every job event; services that record
        outcomes pass ``records=True`` (told first; see JobQueue.add_listener)."""
        self.jobs.add_listener(fn, records=records)

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
        still = self._queue.shutdown(self.settings.shutdown_wait_s if timeout is None else timeout)
        self.store.close()
        return still
