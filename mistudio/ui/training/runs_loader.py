"""The Runs table's rows, computed off the GUI thread.

Summarizing every training (``studio.runs``: its jobs re-read, the best/last of its key
metrics aggregated by SQLite) takes ~0.1-0.5 s with a few dozen long runs; on the GUI
thread that froze the window each time the Runs page was shown and every 2 s while it
stayed live. :class:`RunsLoader` runs :func:`compute_run_rows` on one worker thread (one
executor thread, so one SQLite connection for the app's lifetime, like Anki's
``taskman``) and hands the rows back by a queued signal; the GUI thread only snapshots
which jobs belong to which training and puts the rows in the table.

Requests made while a load runs are coalesced: when it finishes, one more load runs with
the latest snapshot, so the table never shows an older state than the last request.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from PySide6.QtCore import QObject, Signal



def compute_run_rows(studio, jobs_by_key: dict[str, list], cache: dict, records_fn=None,
                     cancelled=lambda: False) -> tuple[list, dict]:
    """(rows, new cache) for the Runs table (``studio.runs.rows``), the training records
    read first through ``records_fn``. Any thread."""
    try:
        records = {r.id: r for r in records_fn()} if records_fn is not None else {}
    except Exception:  # the engine's service may be missing
        records = {}
    return studio.runs.rows(jobs_by_key, cache, records, cancelled)


class RunsLoader(QObject):
    """``request(jobs_by_key)`` from the GUI thread; ``rows_ready(rows)`` arrives there.

    ``close()`` stops it for good: a running load stops at the next training, its thread
    is joined, and nothing is emitted afterwards."""

    rows_ready = Signal(object)  # list[RunRow]
    failed = Signal(str)
    _delivered = Signal(object, object, object)  # rows, cache, error (worker -> GUI thread)

    def __init__(self, studio, records_fn=None, parent: QObject | None = None):
        super().__init__(parent)
        self.studio = studio
        self.records_fn = records_fn
        self._cache: dict = {}
        self._pool: ThreadPoolExecutor | None = None
        self._busy = False
        self._again: dict | None = None
        self._closed = threading.Event()
        self.thread_prefix = f"runs-table-{id(self):x}"  # this loader's worker thread
        closed = self._closed  # destroyed without close() (a parent deleted): never emit again
        self.destroyed.connect(lambda *_: closed.set())
        self._delivered.connect(self._on_delivered)  # queued: emitted on the worker thread

    def busy(self) -> bool:
        return self._busy

    def request(self, jobs_by_key: dict[str, list]) -> None:
        if self._closed.is_set():
            return
        snapshot = {key: list(jobs) for key, jobs in jobs_by_key.items()}
        if self._busy:
            self._again = snapshot  # the latest wins; runs when the current load ends
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=self.thread_prefix)
        self._busy = True
        self._pool.submit(self._load, snapshot, dict(self._cache))

    def load_now(self, jobs_by_key: dict[str, list]) -> list:
        """The rows computed on this thread (screenshots); updates the cache."""
        rows, self._cache = compute_run_rows(self.studio, jobs_by_key, self._cache,
                                             self.records_fn)
        return rows

    def _load(self, snapshot: dict, cache: dict) -> None:  # worker thread
        try:
            rows, cache = compute_run_rows(self.studio, snapshot, cache, self.records_fn,
                                           self._closed.is_set)
            error = None
        except Exception as exc:  # shown on the Runs page; the table keeps its rows
            rows, error = None, exc
        if not self._closed.is_set():
            self._delivered.emit(rows, cache, error)

    def _on_delivered(self, rows, cache, error) -> None:
        self._busy = False
        if self._closed.is_set():
            return
        if self._again is not None:
            snapshot, self._again = self._again, None
            if error is None:
                self._cache = cache
            self.request(snapshot)  # newer state asked for meanwhile: skip this one
            return
        if error is not None:
            from mistudio.errors import describe_exception

            self.failed.emit(describe_exception(error))
            return
        self._cache = cache
        self.rows_ready.emit(rows)

    def close(self) -> None:
        """Stop: the running load ends at its next training; its thread is joined."""
        self._closed.set()
        self._again = None
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
