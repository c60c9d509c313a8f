"""The Runs table loads its rows off the GUI thread: the rows arrive, their numbers are the
stored ones, sorting and selection survive a reload, and the event loop keeps ticking
while a (deliberately slow) load runs."""

from __future__ import annotations

import math
import threading
import time

import pytest

from tests.ui_training.test_training_tab import _make_tab

N_RUNS, N_STEPS = 12, 300
NAMES = ("explained_variance", "l0", "mse", "dead_fraction", "loss")


def _store_runs(studio) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """N_RUNS finished trainings with metrics; returns job id -> metric -> [(step, value)]."""
    from mistudio.store.db import now_iso
    from mistudio.jobs.repository import JobRecord, JobsRepo

    stored = {}
    for r in range(N_RUNS):
        job_id = f"job_{r:03d}"
        JobsRepo(studio.store).insert(JobRecord(
            id=job_id, kind="sae.train", status="completed", title=f"run {r:02d}",
            target=f"tr_{r:03d}", params={"config": {"architecture": "topk", "k": 4 + r,
                                                     "d_sae": 64, "batch_size": 32,
                                                     "activation_path": "/x"}},
            artifact_dir="/tmp", log_path="/tmp/x.log", progress=N_STEPS, total=N_STEPS))
        JobsRepo(studio.store).update(job_id, status="completed", finished_at=now_iso())
        series = {n: [(s, math.sin(0.37 * s + r + i) + 0.01 * r)
                      for s in range(1, N_STEPS + 1)] for i, n in enumerate(NAMES)}
        JobsRepo(studio.store).add_metrics([
            {"job_id": job_id, "step": s, "name": n, "value": v, "t": float(s)}
            for n, pts in series.items() for s, v in pts])
        stored[job_id] = series
    return stored


class TickProbe:
    """A QTimer on the GUI thread; ``longest_gap()`` is the longest the loop was blocked."""

    def __init__(self, interval_ms: int = 10):
        from PySide6.QtCore import QTimer

        self.ticks = [time.perf_counter()]
        self.timer = QTimer()
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(lambda: self.ticks.append(time.perf_counter()))
        self.timer.start()

    def longest_gap(self) -> float:
        self.timer.stop()
        return max(b - a for a, b in zip(self.ticks, self.ticks[1:]))


def test_runs_rows_load_off_the_gui_thread(qt_studio, qtbot):
    studio, bridge = qt_studio
    stored = _store_runs(studio)
    tab = _make_tab(studio, bridge, qtbot)
    loader = tab.runs_loader
    original = loader.records_fn
    load_threads = []

    def slow_records():  # a slow store: 1.5 s that must not be spent on the GUI thread
        load_threads.append(threading.current_thread())
        time.sleep(1.5)
        return original()

    loader.records_fn = slow_records
    probe = TickProbe()
    t = time.perf_counter()
    tab.pages.setCurrentWidget(tab.runs)  # shows the page: asks for the rows
    assert time.perf_counter() - t < 1.0
    qtbot.waitUntil(lambda: len(tab.runs.model.rows) == N_RUNS, timeout=30_000)
    gap = probe.longest_gap()
    assert load_threads and all(th is not threading.main_thread() for th in load_threads)
    assert gap < 1.0, f"the event loop stalled {gap:.2f} s while the rows loaded"
    # the numbers are the stored ones (best: max EV, min of the others; last: final step)
    for row in tab.runs.model.rows:
        series = stored["job_" + row.key[3:]]
        ev = [v for _s, v in series["explained_variance"]]
        assert row.best["explained_variance"] == pytest.approx(max(ev))
        assert row.last["explained_variance"] == pytest.approx(ev[-1])
        assert row.best["l0"] == pytest.approx(min(v for _s, v in series["l0"]))
        assert row.best["mse"] == pytest.approx(min(v for _s, v in series["mse"]))

    # sorting and selection survive a reload whose rows arrive later
    from PySide6.QtCore import Qt

    col = tab.runs.model.headerData(8, Qt.Horizontal)
    tab.runs.table.sortByColumn(8, Qt.DescendingOrder)
    before = tab.runs.column_values(col)
    assert before == sorted(before, reverse=True)
    tab.runs.select_runs(["run 03", "run 07"])
    loader.records_fn = original
    got = []
    loader.rows_ready.connect(got.append)
    tab.refresh_runs()
    tab.refresh_runs()  # asked again while loading: coalesced into one more load
    qtbot.waitUntil(lambda: bool(got) and not loader.busy(), timeout=30_000)
    assert len(got) == 1  # the first load's rows were superseded, never shown
    assert tab.runs.column_values(col) == before
    assert sorted(r.name for r in tab.runs.selected_rows()) == ["run 03", "run 07"]
    assert "k" in {k for k, _a, _b in tab.runs.diff_rows()}


def test_closing_the_tab_stops_the_loader_thread(qt_studio, qtbot):
    studio, bridge = qt_studio
    _store_runs(studio)
    tab = _make_tab(studio, bridge, qtbot)
    tab.pages.setCurrentWidget(tab.runs)
    qtbot.waitUntil(lambda: len(tab.runs.model.rows) == N_RUNS, timeout=30_000)
    mine = tab.runs_loader.thread_prefix  # other tests' windows may have their own loaders
    assert any(t.name.startswith(mine) for t in threading.enumerate())
    tab.close()
    assert not any(t.name.startswith(mine) for t in threading.enumerate())
    assert not tab._runs_timer.isActive() and not tab.charts._timer.isActive()
    tab.refresh_runs()  # after close: nothing starts
    assert not any(t.name.startswith(mine) for t in threading.enumerate())
