"""Run a short blocking call (reading a config, building a meta model) off the GUI thread.

Long work is a job; this is for the sub-second-to-few-second reads the inspector makes
(first use imports transformers), so the window never freezes on a click.
"""

from __future__ import annotations

import threading
from typing import Callable

from PySide6.QtCore import QObject, Signal


class BackgroundCall(QObject):
    """``BackgroundCall(fn, on_done, on_error)``: fn runs on a thread; the callbacks run on
    the GUI thread provided they are bound methods of QObjects living there (a plain
    lambda has no thread affinity and would run on the worker thread)."""

    finished = Signal(object)
    failed = Signal(object)
    _live: set = set()

    def __init__(self, fn: Callable[[], object], on_done, on_error=None):
        super().__init__()
        self.finished.connect(on_done)
        if on_error is not None:
            self.failed.connect(on_error)
        self.finished.connect(self._drop)
        self.failed.connect(self._drop)
        BackgroundCall._live.add(self)
        self._thread = threading.Thread(target=self._run, args=(fn,), daemon=True,
                                        name="ui-background")
        self._thread.start()

    def _run(self, fn) -> None:
        try:
            result = fn()
        except Exception as exc:  # shown to the user by on_error
            self.failed.emit(exc)
            return
        self.finished.emit(result)

    def _drop(self, *_):
        BackgroundCall._live.discard(self)

    def running(self) -> bool:
        return self._thread.is_alive()

    def wait(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)
