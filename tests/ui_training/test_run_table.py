"""The runs table's numbers (``studio.runs``, Qt-free): best/last over a resumed training's jobs, sweep
members, and the settings diff."""

from __future__ import annotations

import pytest

from mistudio.jobs.repository import JobRecord, JobsRepo
from mistudio.ui.training.run_table import diff_settings, format_setting


def _job(studio, job_id, config, *, status="completed", progress=0):
    JobsRepo(studio.store).insert(JobRecord(
        id=job_id, kind="sae.train", status=status, title="run", target="tr_x",
        params={"config": config}, artifact_dir="/tmp", log_path="/tmp/x.log",
        progress=progress, total=progress))
    return studio.jobs.find(job_id)


def _metrics(studio, job_id, name, points):
    JobsRepo(studio.store).add_metrics([{"job_id": job_id, "step": s, "name": name,
                                         "value": v, "t": float(s)} for s, v in points])


def test_best_and_last_leave_out_the_stretch_a_resume_replaced(studio):
    cfg = {"architecture": "topk", "k": 8, "expansion_factor": 4, "batch_size": 100,
           "activation_path": "/x"}
    first = _job(studio, "job_a", cfg, status="cancelled", progress=30)
    second = _job(studio, "job_b", cfg, progress=50)
    # the first job reached step 30, was resumed from its step-20 checkpoint: its points
    # at 20 and 30 (EV 0.9 at 30, a spike) were replaced by the second job's
    _metrics(studio, "job_a", "explained_variance", [(10, 0.5), (20, 0.6), (30, 0.9)])
    _metrics(studio, "job_b", "explained_variance", [(20, 0.61), (40, 0.7), (50, 0.68)])
    _metrics(studio, "job_a", "l0", [(10, 9.0), (20, 8.0), (30, 2.0)])
    _metrics(studio, "job_b", "l0", [(20, 8.0), (40, 7.5), (50, 7.9)])
    (row,) = studio.runs.summarize("tr_x", [first, second])
    history = {10: 0.5, 20: 0.61, 40: 0.7, 50: 0.68}  # what the run actually did
    assert row.best["explained_variance"] == pytest.approx(max(history.values()))
    assert row.last["explained_variance"] == pytest.approx(history[50])
    assert row.best["l0"] == pytest.approx(7.5) and row.last["l0"] == pytest.approx(7.9)
    assert row.best["mse"] is None and row.last["dead_fraction"] is None
    assert row.tokens == 50 * 100 and row.sparsity_setting() == ("k", 8.0)
    assert row.status == "completed"


def test_a_sweep_lists_each_sae_with_its_own_settings_and_metrics(studio):
    cfg = {"architecture": "relu", "l1_coefficient": 5.0, "d_sae": 64, "sweep": {"lr": [1e-3,
           2e-3]}, "activation_path": "/x", "batch_size": 10}
    job = _job(studio, "job_s", cfg, progress=3)
    rows = studio.runs.summarize("tr_s", [job])
    names = [r.member for r in rows]
    assert len(rows) == 2 and all(names)
    for i, r in enumerate(rows):
        _metrics(studio, "job_s", f"{r.member}/mse", [(1, 3.0 + i), (2, 2.0 + i), (3, 2.5 + i)])
    rows = studio.runs.summarize("tr_s", [job])
    assert [r.best["mse"] for r in rows] == [2.0, 3.0]
    assert [r.last["mse"] for r in rows] == [2.5, 3.5]
    assert [r.lr for r in rows] == [1e-3, 2e-3] and rows[0].d_sae == 64
    assert rows[0].sparsity_setting() == ("L1", 5.0)
    diff = diff_settings(rows[0].settings, rows[1].settings)
    assert [k for k, _a, _b in diff] == ["lr", "member_name"]


def test_diff_settings():
    a = {"k": 32, "lr": 1e-4, "seed": 0, "only_a": True, "sweep": {}}
    b = {"k": 64, "lr": 1e-4 * (1 + 1e-15), "seed": 0, "only_b": "x", "sweep": {}}
    assert diff_settings(a, b) == [("k", 32, 64), ("only_a", True, None),
                                   ("only_b", None, "x")]
    everything = diff_settings(a, b, only_differences=False)
    assert [k for k, *_ in everything] == ["k", "lr", "only_a", "only_b", "seed", "sweep"]
    assert format_setting(None) == "—" and format_setting(2e-4) == "0.0002"
    assert format_setting({"k": [1, 2]}) == "k=[1, 2]"
