"""Runs table refresh time: the rows the Training tab's Runs page computes on the GUI thread.

A store with ``--runs`` finished trainings of ``--steps`` metric points each, with the
~15 metrics the engine reports per point (as ``job_metrics`` rows). Measured in the same
process: the Runs table's query (only the four key metrics of each job, through the
``(job_id, name, step)`` index; ``run_table.summarize``) against the baseline of reading
every stored metric row of each job (``jobs_repo.metrics``, what the charts load) and
picking best/last in Python.

    python benchmarks/runs_table_bench.py [--runs 50] [--steps 2000]
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
    from mistudio.store.jobs_repo import JobRecord
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
        studio.jobs_repo.insert(job)
        studio.jobs_repo.update(job.id, status="completed", finished_at=now_iso())
        rows = [(job.id, s, name, math.sin(s + i) + 1.0, float(s))
                for s in range(1, n_steps + 1) for i, name in enumerate(METRICS)]
        with studio.store.db.conn:
            studio.store.db.conn.executemany(
                "insert into job_metrics (job_id, step, name, value, t) values (?,?,?,?,?)",
                rows)
        jobs.append(studio.jobs_repo.get(job.id))
    return studio, jobs


def runs_table(studio, jobs):
    from mistudio.ui.training.run_table import summarize

    rows = []
    for job in jobs:
        rows += summarize(job.target, [job], None, studio.store.db)
    return rows


def baseline(studio, jobs):
    from mistudio.ui.training.run_table import KEY_METRICS

    out = []
    for job in jobs:
        series: dict[str, list[float]] = {}
        for row in studio.jobs_repo.metrics(job.id):
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    studio, jobs = build_store(args.runs, args.steps)
    try:
        ours = runs_table(studio, jobs)
        base = baseline(studio, jobs)
        for row, ref in zip(ours, base):  # same numbers either way
            for m, (best, last) in ref.items():
                assert math.isclose(row.best[m], best) and math.isclose(row.last[m], last)
        t_ours = timed(lambda: runs_table(studio, jobs), args.repeat)
        t_base = timed(lambda: baseline(studio, jobs), args.repeat)
        n_rows = args.runs * args.steps * len(METRICS)
        print(f"{args.runs} runs x {args.steps} steps x {len(METRICS)} metrics "
              f"({n_rows:,} stored rows)")
        print(f"runs table (4 key metrics by index): {t_ours * 1000:8.1f} ms per refresh")
        print(f"baseline (every row of every job):   {t_base * 1000:8.1f} ms per refresh")
        print(f"ratio baseline/runs table: x{t_base / t_ours:.1f}")
    finally:
        studio.close()


if __name__ == "__main__":
    main()
