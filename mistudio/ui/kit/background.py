"""The UI's one way to run a short blocking call off the GUI thread, and to wait for one.

Long work is a job (``mistudio.ui.workers`` runs those); this is for the sub-second-to-few-
second reads a tab makes (a config, a meta model, a hardware probe, a Hub overview), so the
window never freezes on a click.
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
