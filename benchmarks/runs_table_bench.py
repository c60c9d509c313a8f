"""Runs table refresh: how long the Training tab's GUI thread is blocked.

A store with ``--runs`` finished trainings of ``--steps`` metric points each, with the
~15 metrics the engine reports per point (as ``job_metrics`` rows). Measured in the same
process, a first refresh (empty cache) each time:

- GUI thread: the old path (``compute_run_rows`` + ``RunsView.set_rows`` on the GUI
  thread, as the tab did before ``RunsLoader``) against the new one (``RunsLoader``
  computes the rows on its thread; the GUI thread only puts them in the table). For the
  new path the number is the longest gap between ticks of a 5 ms QTimer probe while the
  rows load, i.e. the longest the window could not repaint or react.
- Query: the Runs table's SQL aggregation (``studio.runs.summarize``) against reading every
  stored metric row of each job (``jobs_repo.metrics``) and picking best/last in Python.

    QT_QPA_PLATFORM=offscreen python benchmarks/runs_table_bench.py [--runs 50] [--steps 2000]
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time

METRICS = ("loss", "mse", "explained_variance", "l0", "l1", "aux_loss", "sparsity_loss",
           "cosine_sim", "l2_ratio", "dead_fraction", "dense_fraction", "lr", "sparsity_coef",
           "tokens_per_s", "step_time_ms")


def build_store(n_runs: int, n_steps: int):
    from mistudio.secrets_test_support import MemorySecrets
    from mistudio.store.db import now_iso
    from mistudio.jobs.repository import JobRecord, JobsRepo
    from mistudio.studio import Studio

    studio = Studio(tempfile.mkdtemp(prefix="runs-bench-"), secrets=MemorySecrets(),
                    setup_logs=False)
    jobs = []
    for r in range(n_runs):
        job = JobRecord(id=f"job_{r:04d}", kind="sae.train", status="completed",
                        title=f"run {r}", target=f"tr_{r:04d}",
                        params={"config": {"architecture": "topk", "k": 16 + r, "d_sae": 4096,
                                           "batch_size": 4096, "activation_path": "/x"}},
                        artifact_dir="/tmp", log_path="/tmp/x.log", progress=n_steps,
                        total=n_steps)
        JobsRepo(studio.store).insert(job)
        JobsRepo(studio.store).update(job.id, status="completed", finished_at=now_iso())
        rows = [(job.id, s, name, math.sin(s + i) + 1.0, float(s))
                for s in range(1, n_steps + 1) for i, name in enumerate(METRICS)]
        with studio.store.db.conn:
            studio.store.db.conn.executemany(
                "insert into job_metrics (job_id, step, name, value, t) values (?,?,?,?,?)",
                rows)
        jobs.append(studio.jobs.find(job.id))
    return studio, jobs


def runs_table(studio, jobs):
    rows = []
    for job in jobs:
        rows += studio.runs.summarize(job.target, [job])
    return rows


def baseline(studio, jobs):
    from mistudio.app.runs import KEY_METRICS

    out = []
    for job in jobs:
        series: dict[str, list[float]] = {}
        for row in studio.jobs.metrics(job.id):
            series.setdefault(row["name"], []).append(row["value"])
        out.append({m: (pick(series[m]), series[m][-1]) for m, pick in KEY_METRICS.items()})
    return out


def timed(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def gui_old(studio, jobs_by_key, view) -> float:
    """Seconds the GUI thread is blocked by one refresh the old way (all on it)."""
    from mistudio.ui.training.runs_loader import compute_run_rows

    t = time.perf_counter()
    rows, _cache = compute_run_rows(studio, jobs_by_key, {})
    view.set_rows(rows)
    return time.perf_counter() - t


def gui_new(studio, jobs_by_key, view, app) -> tuple[float, float]:
    """(longest event-loop stall, seconds until the rows are in the table) for one refresh
    through RunsLoader, measured with a 5 ms QTimer probe on the GUI thread."""
    from PySide6.QtCore import QTimer

    from mistudio.ui.training.runs_loader import RunsLoader

    loader = RunsLoader(studio)
    got = []
    loader.rows_ready.connect(lambda rows: (view.set_rows(rows), got.append(rows)))
    ticks = []
    probe = QTimer()
    probe.setInterval(5)
    probe.timeout.connect(lambda: ticks.append(time.perf_counter()))
    probe.start()
    t0 = time.perf_counter()
    ticks.append(t0)
    loader.request(jobs_by_key)
    while not got:
        app.processEvents()
        time.sleep(0.001)  # the probe's own resolution; the loop never blocks longer
    ticks.append(time.perf_counter())
    total = ticks[-1] - t0
    probe.stop()
    loader.close()
    return max(b - a for a, b in zip(ticks, ticks[1:])), total


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    from PySide6.QtWidgets import QApplication

    from mistudio.ui.training.runs import RunsView

    app = QApplication.instance() or QApplication([])
    studio, jobs = build_store(args.runs, args.steps)
    try:
        ours = runs_table(studio, jobs)
        base = baseline(studio, jobs)
        for row, ref in zip(ours, base):  # same numbers either way
            for m, (best, last) in ref.items():
                assert math.isclose(row.best[m], best) and math.isclose(row.last[m], last)
        n_rows = args.runs * args.steps * len(METRICS)
        print(f"{args.runs} runs x {args.steps} steps x {len(METRICS)} metrics "
              f"({n_rows:,} stored rows)")

        jobs_by_key = {job.target: [job] for job in jobs}
        view = RunsView()
        old, stall, total = [], [], []
        for _ in range(args.repeat):  # interleaved, so load on the machine hits both
            old.append(gui_old(studio, jobs_by_key, view))
            s, t = gui_new(studio, jobs_by_key, view, app)
            stall.append(s)
            total.append(t)
        assert len(view.model.rows) == args.runs
        t_old, t_stall = statistics.median(old), statistics.median(stall)
        print(f"GUI thread blocked, old path (rows computed on it): {t_old * 1000:8.1f} ms")
        print(f"GUI thread longest stall, RunsLoader:               {t_stall * 1000:8.1f} ms "
              f"(rows shown after {statistics.median(total) * 1000:.1f} ms)")
        print(f"ratio old/new GUI-thread block: x{t_old / t_stall:.1f}")

        t_ours = timed(lambda: runs_table(studio, jobs), args.repeat)
        t_base = timed(lambda: baseline(studio, jobs), args.repeat)
        print(f"query, runs table (4 key metrics by index): {t_ours * 1000:8.1f} ms per refresh")
        print(f"query, baseline (every row of every job):   {t_base * 1000:8.1f} ms per refresh")
        print(f"ratio baseline/runs table: x{t_base / t_ours:.1f}")
    finally:
        studio.close()


if __name__ == "__main__":
    main()
