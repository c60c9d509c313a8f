"""What a running job sees: progress, log, metrics, cancel, pause, its artifact folder."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any, Callable

from mistudio.errors import JobCancelled

# (job_id, event_type, payload). Event types: "progress", "log", "metric", "status", "checkpoint".
EventSink = Callable[[str, str, dict], None]

PROGRESS_INTERVAL_S = 0.1  # throttle at the source: at most ~10 progress events a second


class JobContext:
    """Handed to ``run(params, ctx)``. Nothing here knows about Qt.

    - ``progress(done, total, message)``: throttled to ~10 Hz; the last call always lands.
    - ``log(message, level)``: to the job's log file and to listeners.
    - ``metric(step, **values)``: numbers for charts; persisted in batches by the queue.
    - ``cancelled`` / ``check_cancelled()``: cooperative cancellation; check often.
    - ``pause_point()``: where a job can pause safely; blocks while paused.
    - ``checkpoint(**info)``: record the last complete checkpoint (used for resume).
    """

    def __init__(self, job_id: str, params: dict | None = None, artifact_dir: Path | None = None,
                 *, sink: EventSink | None = None, logger: logging.Logger | None = None,
                 device: str = "auto", dtype: str = "auto"):
        self.job_id = job_id
        self.params = dict(params or {})
        self.artifact_dir = Path(artifact_dir) if artifact_dir else None
        self.device = device
        self.dtype = dtype
        self._sink = sink or (lambda *_: None)
        self._logger = logger or logging.getLogger(f"mistudio.job.{job_id}")
        self._cancel = threading.Event()
        self._resume = threading.Event()
        self._resume.set()
        self._last_progress_t = 0.0
        self._pending_progress: dict | None = None
        self._t0 = time.monotonic()
        self._rate_t: float | None = None
        self._rate_done: float | None = None
        self._rate: float | None = None
        self.last_checkpoint: dict | None = None

    # ------------------------------------------------------------- standalone use

    @classmethod
    def standalone(cls, artifact_dir: Path | None = None, params: dict | None = None,
                   *, on_event: EventSink | None = None, **kw) -> "JobContext":
        """A context for running a job function directly (tests, notebooks, the CLI)."""
        if artifact_dir is not None:
            Path(artifact_dir).mkdir(parents=True, exist_ok=True)
        return cls("local", params, artifact_dir, sink=on_event, **kw)

    # ------------------------------------------------------------- reporting

    def progress(self, done: float, total: float | None = None, message: str | None = None) -> None:
        now = time.monotonic()
        eta = self._update_eta(now, done, total)
        payload = {"done": float(done), "total": None if total is None else float(total),
                   "message": message, "eta_s": eta}
        final = total is not None and done >= total
        if final or now - self._last_progress_t >= PROGRESS_INTERVAL_S:
            self._last_progress_t = now
            self._pending_progress = None
            self._sink(self.job_id, "progress", payload)
        else:
            self._pending_progress = payload

    def flush(self) -> None:
        if self._pending_progress is not None:
            self._sink(self.job_id, "progress", self._pending_progress)
            self._pending_progress = None

    def _update_eta(self, now: float, done: float, total: float | None) -> float | None:
        if total is None or done <= 0:
            return None
        if self._rate_t is not None and now > self._rate_t and done >= self._rate_done:
            inst = (done - self._rate_done) / (now - self._rate_t)
            if now - self._rate_t >= 0.5:
                self._rate = inst if self._rate is None else 0.7 * self._rate + 0.3 * inst
                self._rate_t, self._rate_done = now, done
        else:
            self._rate_t, self._rate_done = now, done
        rate = self._rate or done / max(now - self._t0, 1e-6)
        return max(0.0, (total - done) / rate) if rate > 0 else None

    def log(self, message: str, level: str = "info") -> None:
        lvl = logging.getLevelName(level.upper())
        self._logger.log(lvl if isinstance(lvl, int) else logging.INFO, message)
        self._sink(self.job_id, "log", {"level": level.lower(), "message": message,
                                        "t": time.time()})

    def metric(self, step: int, **values: float) -> None:
        clean = {k: float(v) for k, v in values.items() if v is not None}
        self._sink(self.job_id, "metric", {"step": int(step), "values": clean, "t": time.time()})

    def checkpoint(self, **info: Any) -> None:
        self.last_checkpoint = info
        self._sink(self.job_id, "checkpoint", dict(info))

    # ------------------------------------------------------------- control

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def check_cancelled(self) -> None:
        if self._cancel.is_set():
            raise JobCancelled()

    def request_cancel(self) -> None:
        self._cancel.set()
        self._resume.set()  # a paused job must wake up to notice

    @property
    def pause_requested(self) -> bool:
        return not self._resume.is_set()

    def request_pause(self) -> None:
        self._resume.clear()

    def request_resume(self) -> None:
        self._resume.set()

    def pause_point(self) -> None:
        """Block here while paused; raise :class:`JobCancelled` if cancelled meanwhile."""
        self.check_cancelled()
        if self._resume.is_set():
            return
        self.flush()
        self._sink(self.job_id, "status", {"status": "paused"})
        self.log("Paused.")
        while not self._resume.wait(0.2):
            pass
        self.check_cancelled()
        self._sink(self.job_id, "status", {"status": "running"})
        self.log("Resumed.")
        self._rate_t = None  # the pause must not drag the ETA
