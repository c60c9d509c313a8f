"""Calls the Features tab makes off the GUI thread (reading an analysis, a prompt, a map).

One worker thread (so one SQLite connection, as ``RunsLoader`` does); results come back by a
queued signal. Each call has a key: a newer call with the same key makes an older one's
result stale, and stale results are dropped, so the view never shows an older state than
the last request (clicking quickly through features only shows the last one).
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

from PySide6.QtCore import QObject, Signal

from mistudio.errors import describe_exception


class BackgroundCalls(QObject):
    _delivered = Signal(str, int, object, object)  # key, serial, result, error

    def __init__(self, parent: QObject | None = None, name: str = "features-tab"):
        super().__init__(parent)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._serial: dict[str, int] = {}
        self._handlers: dict[tuple[str, int], tuple[Callable, Callable | None]] = {}
        self._closed = threading.Event()
        self._pending = 0
        self._delivered.connect(self._on_delivered)

    def call(self, key: str, fn: Callable[[], Any], on_done: Callable[[Any], None],
             on_error: Callable[[str], None] | None = None) -> None:
        if self._closed.is_set():
            return
        serial = self._serial.get(key, 0) + 1
        self._serial[key] = serial
        self._handlers[(key, serial)] = (on_done, on_error)
        self._pending += 1
        closed, emit = self._closed, self._delivered.emit

        def work():
            if closed.is_set():
                return
            try:
                result, error = fn(), None
            except Exception as exc:  # shown to the user, never raised on the worker
                import logging

                logging.getLogger(__name__).exception("background call %s failed", key)
                result, error = None, describe_exception(exc)
            if not closed.is_set():
                emit(key, serial, result, error)

        self._pool.submit(work)

    def busy(self) -> bool:
        return self._pending > 0

    def _on_delivered(self, key: str, serial: int, result, error) -> None:
        self._pending = max(0, self._pending - 1)
        on_done, on_error = self._handlers.pop((key, serial), (None, None))
        if on_done is None or self._serial.get(key) != serial:
            return  # a newer call with this key was made: this result is stale
        if error is not None:
            if on_error is not None:
                on_error(error)
        else:
            on_done(result)

    def close(self) -> None:
        self._closed.set()
        self._pool.shutdown(wait=True, cancel_futures=True)
