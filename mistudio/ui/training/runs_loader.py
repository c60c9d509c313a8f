"""The Runs table's rows, computed off the GUI thread.

Summarizing every training (``studio.runs``: its jobs re-read, the best/last of its key
metrics aggregated by SQLite) takes ~0.1-0.5 s with a few dozen long runs; on the GUI
thread that froze the window each time the Runs page was shown and every 2 s while it
stayed live. :class:`RunsLoader` runs :func:`compute_run_rows` through the UI kit's
:class:`~mistudio.ui.kit.background.BackgroundCalls` (one worker thread, so one SQLite
connection for the app's lifetime) and hands the rows back on the GUI thread; the GUI thread
only snapshots which jobs belong to which training and puts the rows in the table.

Requests made while a load runs are coalesced: a newer request makes the running load stale
(it stops at its next training, its rows are never shown) and the queued ones that never
started are skipped, so the table never shows an older state than the last request.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal

from mistudio.ui.kit.background import BackgroundCalls


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

    def __init__(self, studio, records_fn=None, parent: QObject | None = None):
        super().__init__(parent)
        self.studio = studio
        self.records_fn = records_fn
        self._cache: dict = {}
        self._calls = BackgroundCalls(self, name="runs-table")
        self.thread_prefix = self._calls.thread_prefix  # this loader's worker thread
        self._closed = False

    def busy(self) -> bool:
        return self._calls.busy()

    def request(self, jobs_by_key: dict[str, list]) -> None:
        if self._closed:
            return
        snapshot = {key: list(jobs) for key, jobs in jobs_by_key.items()}
        cache = dict(self._cache)

        def load(task):  # worker thread
            return compute_run_rows(self.studio, snapshot, cache, self.records_fn,
                                    task.cancelled)

        self._calls.call("rows", load, self._on_rows, self.failed.emit, pass_task=True)

    def load_now(self, jobs_by_key: dict[str, list]) -> list:
        """The rows computed on this thread (screenshots); updates the cache."""
        rows, self._cache = compute_run_rows(self.studio, jobs_by_key, self._cache,
                                             self.records_fn)
        return rows

    def _on_rows(self, result) -> None:
        rows, self._cache = result
        self.rows_ready.emit(rows)

    def close(self) -> None:
        """Stop: the running load ends at its next training; its thread is joined."""
        self._closed = True
        self._calls.close()
