"""The job queue: persists every job, schedules them on worker threads, fans events out.

Qt-free. The thread type is pluggable: plain ``threading.Thread`` by default, QThread
when the GUI installs its runner (``mistudio.ui.workers``). Scheduling: at most
``max_concurrent`` jobs at once, of which at most ``max_gpu`` GPU-heavy ones; the rest
wait in FIFO order.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections import deque
from pathlib import Path
from typing import Callable, Protocol

from mistudio.errors import JobCancelled, describe_exception
from mistudio.jobs.context import JobContext
from mistudio.jobs.registry import get_kind
from mistudio.paths import DataPaths
from mistudio.reliability import crash_point
from mistudio.store.db import new_id, now_iso
from mistudio.jobs.repository import ACTIVE, JobRecord, JobsRepo

log = logging.getLogger(__name__)

Listener = Callable[[str, str, dict], None]
METRIC_FLUSH_S = 1.0
PROGRESS_PERSIST_S = 0.5


class WorkerThread(Protocol):
    def start(self) -> None: ...
    def join(self, timeout: float | None = None) -> None: ...
    def is_alive(self) -> bool: ...


def python_thread(target: Callable[[], None], name: str) -> WorkerThread:
    return threading.Thread(target=target, name=name, daemon=True)


class _Running:
    def __init__(self, rec: JobRecord, ctx: JobContext):
        self.rec = rec
        self.ctx = ctx
        self.thread: WorkerThread | None = None
        self.metrics: list[dict] = []
        self.metrics_flushed = time.monotonic()
        self.progress_persisted = 0.0
        self.done = threading.Event()


class JobQueue:
    def __init__(self, repo: JobsRepo, paths: DataPaths, *, max_concurrent: int = 2,
                 max_gpu: int = 1, thread_factory: Callable[..., WorkerThread] = python_thread,
                 device: str = "auto", dtype: str = "auto"):
        self.repo = repo
        self.paths = paths
        self.max_concurrent = max_concurrent
        self.max_gpu = max_gpu
        self.thread_factory = thread_factory
        self.device = device
        self.dtype = dtype
        self._lock = threading.RLock()
        self._pending: deque[JobRecord] = deque()
        self._running: dict[str, _Running] = {}
        self._finishing: dict[str, _Running] = {}  # ended, listeners still being told
        self._record_listeners: list[Listener] = []  # services: told first
        self._listeners: list[Listener] = []
        self._closing = False

    # ------------------------------------------------------------------ listeners

    def add_listener(self, fn: Listener, *, records: bool = False) -> None:
        """``records=True`` for the services that record a job's outcome in the database:
        they are told before every other listener, so that a window reacting to "completed"
        always reads the recorded outcome (the UI bridge is added before the services that
        are created lazily; told in that order, a reload could read the stale row)."""
        (self._record_listeners if records else self._listeners).append(fn)

    def remove_listener(self, fn: Listener) -> None:
        for listeners in (self._record_listeners, self._listeners):
            if fn in listeners:
                listeners.remove(fn)

    def _emit(self, job_id: str, kind: str, payload: dict) -> None:
        for fn in self._record_listeners + self._listeners:
            try:
                fn(job_id, kind, payload)
            except Exception:  # a broken listener must never kill a job
                log.exception("job listener failed")

    # ------------------------------------------------------------------ submit / control

    def submit(self, kind: str, params: dict | None = None, *, title: str = "",
               target: str = "", artifact_dir: Path | None = None,
               job_id: str | None = None) -> JobRecord:
        spec = get_kind(kind)
        if self._closing:
            raise RuntimeError("the job queue is shutting down")
        job_id = job_id or new_id("job")
        artifact = Path(artifact_dir) if artifact_dir else self.paths.job_dir(job_id)
        rec = JobRecord(id=job_id, kind=kind, status="queued", title=title or spec.title or kind,
                        target=target, params=dict(params or {}), artifact_dir=str(artifact),
                        log_path=str(self.paths.job_log(job_id)), gpu=spec.gpu)
        self.repo.insert(rec)
        with self._lock:
            self._pending.append(rec)
        self._emit(job_id, "status", {"status": "queued"})
        self._schedule()
        return rec

    def cancel(self, job_id: str) -> bool:
        with self._lock:
            for rec in list(self._pending):
                if rec.id == job_id:
                    self._pending.remove(rec)
                    self.repo.update(job_id, status="cancelled", finished_at=now_iso(),
                                     message="Cancelled before it started.")
                    self._emit(job_id, "status", {"status": "cancelled"})
                    return True
            run = self._running.get(job_id)
        if run:
            run.ctx.request_cancel()
            # the job may end on its own meanwhile (past its last cancel check): its
            # recorded outcome stays, never a "Cancelling..." that nothing will clear
            self.repo.update_if_active(job_id, message="Cancelling...")
            self._emit(job_id, "log", {"level": "info", "message": "Cancel requested.",
                                       "t": time.time()})
            return True
        return False

    def pause(self, job_id: str) -> bool:
        run = self._running.get(job_id)
        if run and get_kind(run.rec.kind).pausable:
            run.ctx.request_pause()
            return True
        return False

    def resume(self, job_id: str) -> bool:
        run = self._running.get(job_id)
        if run:
            run.ctx.request_resume()
            return True
        return False

    def is_active(self, job_id: str) -> bool:
        with self._lock:
            return job_id in self._running or any(r.id == job_id for r in self._pending)

    def active_ids(self) -> list[str]:
        with self._lock:
            return list(self._running) + [r.id for r in self._pending]

    def wait(self, job_id: str, timeout: float | None = None) -> JobRecord | None:
        """Block until the job finishes (or ``timeout``); return its record."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                run = self._running.get(job_id) or self._finishing.get(job_id)
                pending = any(r.id == job_id for r in self._pending)
            if run is None and not pending:
                return self.repo.get(job_id)
            if run is not None:
                remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                run.done.wait(remaining if remaining is not None else None)
            else:
                time.sleep(0.02)
            if deadline is not None and time.monotonic() >= deadline:
                return self.repo.get(job_id)

    # ------------------------------------------------------------------ scheduling

    def _schedule(self) -> None:
        with self._lock:
            if self._closing:
                return
            started = []
            for rec in list(self._pending):
                if len(self._running) >= self.max_concurrent:
                    break
                gpu_running = sum(1 for r in self._running.values() if r.rec.gpu)
                if rec.gpu and gpu_running >= self.max_gpu:
                    continue  # a light job behind it may still start
                self._pending.remove(rec)
                started.append(self._start(rec))
        for run in started:
            run.thread.start()

    def _start(self, rec: JobRecord) -> _Running:
        logger = logging.getLogger(f"mistudio.job.{rec.id}")
        logger.setLevel(logging.DEBUG)
        logger.propagate = False
        Path(rec.log_path).parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(rec.log_path, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(message)s"))
        logger.handlers = [handler]
        ctx = JobContext(rec.id, rec.params, Path(rec.artifact_dir), sink=self._on_event,
                         logger=logger, device=self.device, dtype=self.dtype)
        run = _Running(rec, ctx)
        self._running[rec.id] = run
        run.thread = self.thread_factory(lambda: self._run(run), f"job-{rec.id}")
        return run

    def _run(self, run: _Running) -> None:
        rec, ctx = run.rec, run.ctx
        logger = ctx._logger
        status, error, tb, result, message = "failed", "", "", None, ""
        try:
            self.repo.update(rec.id, status="running", started_at=now_iso(), message="Starting...")
            self._emit(rec.id, "status", {"status": "running"})
            logger.info("job %s (%s) started; params=%s", rec.id, rec.kind, rec.params)
            fn = get_kind(rec.kind).load()
            if ctx.artifact_dir is not None:
                ctx.artifact_dir.mkdir(parents=True, exist_ok=True)
            result = fn(rec.params, ctx)
            ctx.flush()
            status, message = "completed", "Done."
            logger.info("job completed")
        except JobCancelled:
            status, message = "cancelled", "Cancelled."
            logger.info("job cancelled")
        except BaseException as exc:  # noqa: BLE001 - every failure must reach the user
            error = describe_exception(exc, memory_hint=_memory_hint(rec.kind))
            tb = traceback.format_exc()
            message = error
            logger.error("job failed: %s\n%s", error, tb)
        finally:
            self._flush_metrics(run, force=True)
            fields = dict(status=status, finished_at=now_iso(), message=message, error=error,
                          traceback=tb, eta_s=None)
            if status == "completed":
                fields["progress"] = rec.total or run.rec.progress or 1.0
                fields["result"] = result
            crash_point("job.row.final")  # the work is done (or failed), its row not yet told
            try:
                self.repo.update(rec.id, **fields)
            except Exception:
                log.exception("could not record the end of job %s", rec.id)
            crash_point("job.row.recorded")  # recorded; the services' listeners not yet told
            for h in list(logger.handlers):
                h.close()
                logger.removeHandler(h)
            with self._lock:
                self._running.pop(rec.id, None)
                self._finishing[rec.id] = run
            try:  # listeners (services recording the outcome) finish before waiters wake
                self._emit(rec.id, "status", {"status": status, "error": error,
                                              "result": result})
            finally:
                with self._lock:
                    self._finishing.pop(rec.id, None)
                run.done.set()
            self._schedule()

    # ------------------------------------------------------------------ events from jobs

    def _on_event(self, job_id: str, kind: str, payload: dict) -> None:
        run = self._running.get(job_id)
        if run is not None:
            try:
                self._persist(run, kind, payload)
            except Exception:
                log.exception("could not persist a job event")
        self._emit(job_id, kind, payload)

    def _persist(self, run: _Running, kind: str, payload: dict) -> None:
        job_id = run.rec.id
        if kind == "progress":
            run.rec.progress = payload["done"]
            run.rec.total = payload["total"]
            now = time.monotonic()
            if now - run.progress_persisted >= PROGRESS_PERSIST_S or (
                    payload["total"] is not None and payload["done"] >= payload["total"]):
                run.progress_persisted = now
                fields = {"progress": payload["done"], "total": payload["total"],
                          "eta_s": payload.get("eta_s")}
                if payload.get("message"):
                    fields["message"] = payload["message"]
                self.repo.update(job_id, **fields)
        elif kind == "metric":
            for name, value in payload["values"].items():
                run.metrics.append({"job_id": job_id, "step": payload["step"], "name": name,
                                    "value": value, "t": payload["t"]})
            self._flush_metrics(run)
        elif kind == "status":
            self.repo.update(job_id, status=payload["status"],
                             message="Paused." if payload["status"] == "paused" else "Running...")
        elif kind == "checkpoint":
            self.repo.update(job_id, checkpoint=payload)

    def _flush_metrics(self, run: _Running, force: bool = False) -> None:
        if run.metrics and (force or time.monotonic() - run.metrics_flushed >= METRIC_FLUSH_S
                            or len(run.metrics) >= 2000):
            rows, run.metrics = run.metrics, []
            run.metrics_flushed = time.monotonic()
            try:
                self.repo.add_metrics(rows)
            except Exception:
                log.exception("could not store metrics")

    # ------------------------------------------------------------------ shutdown

    def shutdown(self, timeout: float = 10.0) -> list[str]:
        """Cancel everything and wait up to ``timeout`` s. Returns ids still running."""
        with self._lock:
            self._closing = True
            pending = list(self._pending)
            self._pending.clear()
            running = list(self._running.values())
            # Ended, but their recording listeners still write (the row already says so):
            # closing the store under them would crash inside SQLite.
            finishing = list(self._finishing.values())
        for rec in pending:
            self.repo.update(rec.id, status="cancelled", finished_at=now_iso(),
                             message="Cancelled: the app was closed before it started.")
        for run in running:
            run.ctx.request_cancel()
        deadline = time.monotonic() + timeout
        for run in running + finishing:
            run.done.wait(max(0.0, deadline - time.monotonic()))
            if run.done.is_set() and run.thread is not None:  # its thread is ending: join it
                run.thread.join(max(0.0, deadline - time.monotonic()))
        still = [r.rec.id for r in running if not r.done.is_set()]
        for job_id in still:
            self.repo.update(job_id, status="interrupted", finished_at=now_iso(),
                             message="Interrupted: the app closed before the job could stop.")
        return still


def active_statuses() -> tuple[str, ...]:
    return ACTIVE


def _memory_hint(kind: str) -> str:
    try:
        return get_kind(kind).memory_hint
    except KeyError:
        return ""
