"""The UI's one way to run work off the GUI thread, and to wait for it.

Long work is a job (``mistudio.ui.workers`` runs those); this is for what a tab reads or
computes on a click: a table's rows, a feature's examples, a config, a Hub overview, a search
through a dataset, so the window never freezes.

:class:`BackgroundCalls` belongs to a widget (its parent). Its calls run in order on one
worker thread of its own, so the reads of one owner share one SQLite connection (like Anki's
``taskman``), and they reach the GUI thread by a queued signal, whatever callable is given.
Each call has a key: a newer call with the same key makes the older one stale, and a stale
call is cancelled (``task.cancelled()`` turns true, so a long loop can stop), skipped if it
has not started, and its results dropped; the view never shows an older state than the last
request. ``close()`` (the owner's shutdown) stops it for good and joins its thread.

:class:`BackgroundCall` is one call on a worker of its own, for dialogs that fire a single
read (the About dialog's hardware probe).
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable

from PySide6.QtCore import QObject, Signal

log = logging.getLogger(__name__)


class BackgroundTask:
    """One call: the function may take it (``pass_task=True``) to check ``cancelled()``
    between steps and ``report(value)`` partial results (they reach ``on_report`` on the GUI
    thread while the call is current)."""

    def __init__(self, owner: "BackgroundCalls", key: str, serial: int):
        self.key, self.serial = key, serial
        self._owner_closed = owner._closed
        self._emit = owner._delivered.emit
        self._cancel = threading.Event()
        self._done = threading.Event()

    def cancelled(self) -> bool:
        return self._cancel.is_set() or self._owner_closed.is_set()

    def cancel(self) -> None:
        """Stop: the function sees ``cancelled()``; nothing more of it is delivered."""
        self._cancel.set()

    def report(self, value: Any) -> None:
        if not self.cancelled():
            self._emit(self, "report", value)

    def running(self) -> bool:
        return not self._done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)


class BackgroundCalls(QObject):
    """``call(key, fn, on_done, on_error)`` from the GUI thread; the callbacks run there.
    ``on_error`` gets a short message (``errors.describe_exception``; the traceback goes to
    the log), or the exception itself with ``errors="exception"``."""

    _delivered = Signal(object, str, object)  # task, "done" | "error" | "report" | "skip", value

    def __init__(self, parent: QObject | None = None, name: str = "ui-background"):
        super().__init__(parent)
        self.thread_prefix = f"{name}-{id(self):x}"  # this owner's worker thread
        # made with the first call (concurrent.futures stays out of the window's start-up);
        # its thread ends with close() or with the owner
        self._pools: list = []
        self._closed = threading.Event()
        self._current: dict[str, BackgroundTask] = {}
        self._handlers: dict[BackgroundTask, tuple] = {}
        self._serial = 0
        self._delivered.connect(self._on_delivered)  # queued: emitted on the worker thread
        self.destroyed.connect(_stopper(self._closed, self._pools))

    def call(self, key: str, fn: Callable, on_done: Callable[[Any], None],
             on_error: Callable[[str], None] | None = None, *,
             on_report: Callable[[Any], None] | None = None,
             pass_task: bool = False, errors: str = "message") -> BackgroundTask:
        """Run ``fn()`` (``fn(task)`` with ``pass_task``) after the calls before it; the
        previous call with this ``key`` becomes stale (cancelled, its results dropped)."""
        self._serial += 1
        task = BackgroundTask(self, key, self._serial)
        if self._closed.is_set():
            task.cancel()
            task._done.set()
            return task
        older = self._current.get(key)
        if older is not None:
            older.cancel()
        self._current[key] = task
        self._handlers[task] = (on_done, on_error, on_report, errors == "exception")
        if not self._pools:
            from concurrent.futures import ThreadPoolExecutor

            self._pools.append(ThreadPoolExecutor(max_workers=1,
                                                  thread_name_prefix=self.thread_prefix))
        self._pools[0].submit(self._run, task, fn, pass_task)
        return task

    @staticmethod
    def _run(task: BackgroundTask, fn: Callable, pass_task: bool) -> None:  # worker thread
        try:
            if task.cancelled():  # superseded before it started: skip the work
                kind, value = "skip", None
            else:
                try:
                    kind, value = "done", (fn(task) if pass_task else fn())
                except Exception as exc:  # shown to the user, never raised on the worker
                    from mistudio.errors import JobCancelled, UserError

                    if isinstance(exc, (UserError, JobCancelled)):  # the message says it all
                        log.info("background call %s: %s", task.key, exc)
                    else:
                        log.exception("background call %s failed", task.key)
                    kind, value = "error", exc
        finally:
            task._done.set()
        if not task._owner_closed.is_set():
            try:
                task._emit(task, kind, value)
            except RuntimeError:  # the owner was deleted meanwhile: nobody to tell
                pass

    def _on_delivered(self, task: BackgroundTask, kind: str, value) -> None:
        handlers = self._handlers.get(task)
        if handlers is None:
            return
        if kind == "report":
            if not task.cancelled() and handlers[2] is not None:
                handlers[2](value)
            return
        del self._handlers[task]
        if self._current.get(task.key) is task:
            del self._current[task.key]
        if task.cancelled() or kind == "skip":
            return  # a newer call with this key was made, or it was stopped: stale
        on_done, on_error, _, raw_errors = handlers
        if kind == "error":
            if on_error is not None:
                from mistudio.errors import describe_exception

                on_error(value if raw_errors else describe_exception(value))
        else:
            on_done(value)

    def busy(self) -> bool:
        """A call of this owner is queued, running, or its result not yet delivered."""
        return bool(self._handlers)

    def cancel(self, key: str) -> None:
        """Stop the current call with ``key`` (its results are dropped)."""
        task = self._current.get(key)
        if task is not None:
            task.cancel()

    def close(self, wait: bool = True) -> None:
        """Stop for good: running calls see ``cancelled()``, queued ones never start, nothing
        is delivered afterwards, and the worker thread is joined (``wait``) or ends by itself
        once the running call returns (a dialog closing must not wait for a slow read)."""
        self._closed.set()
        self._handlers.clear()
        self._current.clear()
        for pool in self._pools:
            pool.shutdown(wait=wait, cancel_futures=True)

    def _let_thread_end(self) -> None:
        """Nothing more will be asked (a one-off call delivered): the idle thread ends."""
        for pool in self._pools:
            pool.shutdown(wait=False)


def _stopper(closed: threading.Event, pools: list):
    """What runs when the owner is deleted without close() (its parent went): no reference
    to the deleted object, only to what must stop."""
    def stop(*_):
        closed.set()
        for pool in pools:
            pool.shutdown(wait=False, cancel_futures=True)
    return stop


class BackgroundCall(QObject):
    """``BackgroundCall(fn, on_done, on_error)``: one call on a worker of its own; the
    callbacks run on the GUI thread (``on_error`` gets the exception). Kept alive until it
    has reported."""

    _live: set = set()

    def __init__(self, fn: Callable[[], object], on_done, on_error=None):
        super().__init__()
        self._calls = BackgroundCalls(self, name="ui-background")
        BackgroundCall._live.add(self)
        self._task = self._calls.call("call", fn, self._finish(on_done),
                                      self._finish(on_error), errors="exception")

    def _finish(self, callback):
        def deliver(value):
            BackgroundCall._live.discard(self)
            self._calls._let_thread_end()
            if callback is not None:
                callback(value)
        return deliver

    def running(self) -> bool:
        return self._task.running()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the function has returned (tests); True unless it timed out."""
        return self._task.wait(timeout)


class LatestProgress:
    """A job context's sink (``JobContext.standalone(on_event=sink)``) for work run by a
    background call: keeps only the newest progress payload, written on the worker thread;
    a GUI-thread timer ``take()``s it (a burst of updates never floods the event loop)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._latest: dict | None = None

    def __call__(self, _job_id, kind: str, payload: dict) -> None:
        if kind == "progress":
            with self._lock:
                self._latest = dict(payload)

    def take(self) -> dict | None:
        with self._lock:
            latest, self._latest = self._latest, None
            return latest


def on_gui_thread() -> bool:
    """Whether this code runs on the GUI thread (only that thread may touch widgets)."""
    from PySide6.QtCore import QThread
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance()
    return app is not None and QThread.currentThread() is app.thread()


def wait_until(condition: Callable[[], bool], timeout_s: float) -> bool:
    """Process events until ``condition()`` (bounded); for screenshots and previews, never
    inside a GUI handler."""
    import time

    from PySide6.QtWidgets import QApplication

    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        QApplication.processEvents()
        time.sleep(0.02)
    return True
