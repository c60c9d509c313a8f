"""The Qt runner: jobs on QThread workers; their events reach widgets on the main thread.

Worker threads never touch widgets. The queue's listener (called on worker threads)
only appends to a lock-protected buffer; a main-thread timer drains it every 50 ms,
coalescing progress (latest wins) and batching metrics, and emits plain Qt signals.
So a job reporting thousands of metrics a second costs the GUI ~20 emissions/s.
"""

from __future__ import annotations

import sys
import threading
from collections import defaultdict
from typing import Callable

import shiboken6
from PySide6.QtCore import QObject, QThread, QTimer, Signal


def reserve_core_for_gui() -> int:
    """Leave one CPU core to the event loop: torch jobs in the GUI use cores - 1 threads.

    On a 2-core laptop or a Jetson, torch's intra-op pool otherwise takes every core and the
    window stutters while a job runs. Headless runs (CLI, torchrun) keep all cores.
    """
    import os

    n = max(1, (os.cpu_count() or 1) - 1)
    if "torch" in sys.modules:
        import torch

        if torch.get_num_threads() > n:
            torch.set_num_threads(n)
    else:
        os.environ.setdefault("OMP_NUM_THREADS", str(n))  # read when torch is first imported
    return n


class QtJobThread(QThread):
    """A QThread running one job; quacks like ``threading.Thread`` for the queue."""

    def __init__(self, target: Callable[[], None], name: str):
        super().__init__()
        self._target = target
        self.setObjectName(name)
        self.finished.connect(self.deleteLater)
        # keep a Python reference until the thread has finished; the discard below can be
        # dropped by Qt when deleteLater runs first, so deleted ones are swept here too
        for dead in [t for t in _LIVE if not shiboken6.isValid(t)]:
            _LIVE.discard(dead)
        _LIVE.add(self)
        self.finished.connect(lambda: _LIVE.discard(self))

    def run(self) -> None:
        self._target()

    def join(self, timeout: float | None = None) -> None:
        try:
            self.wait(-1 if timeout is None else int(timeout * 1000))
        except RuntimeError:  # already deleted (deleteLater after it finished)
            pass

    def is_alive(self) -> bool:
        try:
            return self.isRunning()
        except RuntimeError:  # already deleted (deleteLater after it finished)
            return False


_LIVE: set = set()


def qt_thread_factory(target: Callable[[], None], name: str) -> QtJobThread:
    return QtJobThread(target, name)


class JobBridge(QObject):
    """Signals for the GUI, all emitted on the main thread.

    - ``status(job_id, payload)``: payload["status"] in queued/running/paused/completed/...
    - ``progress(job_id, payload)``: done, total, message, eta_s (latest only, <= 20 Hz)
    - ``log(job_id, payload)``: level, message, t
    - ``metrics(job_id, rows)``: a list of {step, values, t}, batched
    - ``checkpoint(job_id, payload)``
    - ``changed()``: something about jobs changed (for lists that just reload)
    """

    status = Signal(str, dict)
    progress = Signal(str, dict)
    log = Signal(str, dict)
    metrics = Signal(str, list)
    checkpoint = Signal(str, dict)
    changed = Signal()

    def __init__(self, parent: QObject | None = None, interval_ms: int = 50):
        super().__init__(parent)
        self._lock = threading.Lock()
        self._events: list[tuple[str, str, dict]] = []
        self._progress: dict[str, dict] = {}
        self._metrics: dict[str, list] = defaultdict(list)
        self._running: set[str] = set()  # GUI thread only: jobs of this process now running
        self._timer = QTimer(self)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self.drain)
        self._timer.start()
        # The GUI thread competes for the GIL with Python-heavy job threads; a shorter switch
        # interval (default 5 ms) bounds how long each event-loop step waits for it. It is
        # process-wide: stop() puts back the value found here.
        self._switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(min(self._switch_interval, 0.001))
        reserve_core_for_gui()

    def __call__(self, job_id: str, kind: str, payload: dict) -> None:
        """The queue listener: any thread, never blocks on the GUI."""
        with self._lock:
            if kind == "progress":
                self._progress[job_id] = payload
            elif kind == "metric":
                self._metrics[job_id].append(payload)
            else:
                self._events.append((job_id, kind, payload))

    def drain(self) -> None:
        with self._lock:
            events, self._events = self._events, []
            progress, self._progress = self._progress, {}
            metrics, self._metrics = self._metrics, defaultdict(list)
        for job_id, rows in metrics.items():
            self.metrics.emit(job_id, rows)
        for job_id, payload in progress.items():
            self.progress.emit(job_id, payload)
        any_status = False  # progress is applied in place by views; only status changes reload
        for job_id, kind, payload in events:
            if kind == "status":
                any_status = True
                if payload.get("status") == "running":
                    self._running.add(job_id)
                else:
                    self._running.discard(job_id)
                self.status.emit(job_id, payload)
            elif kind == "log":
                self.log.emit(job_id, payload)
            elif kind == "checkpoint":
                self.checkpoint.emit(job_id, payload)
        if any_status:
            self.changed.emit()

    def jobs_running(self) -> bool:
        """Whether a job of this process is running, as far as the drained events tell (GUI
        thread only; takes no lock, so it never waits on a job thread)."""
        return bool(self._running)

    def stop(self) -> None:
        self._timer.stop()
        self.drain()
        if self._switch_interval is not None:
            sys.setswitchinterval(self._switch_interval)
            self._switch_interval = None
