"""The Training tab's state without Qt: trainings built from their jobs (a resume continues
the same training), metrics read once then live, cards, the interrupted banner, compare."""

from __future__ import annotations

import pytest

from mistudio.jobs.repository import JobRecord
from mistudio.ui.training.state import KEY_METRICS, TrainingState


def _job(job_id, target, created, status="completed", **kw):
    return JobRecord(id=job_id, kind="sae.train", status=status, title=f"run {target}",
                     target=target, created_at=created, params={"config": {"batch_size": 64}},
                     **kw)


def test_jobs_group_into_trainings_oldest_first():
    state = TrainingState()
    state.set_jobs([_job("j2", "tr_a", "2026-01-02"), _job("j1", "tr_a", "2026-01-01"),
                    _job("j3", "tr_b", "2026-01-03")])
    assert [j.id for j in state.jobs["tr_a"]] == ["j1", "j2"]  # a resume continues it
    assert state.latest("tr_a").id == "j2" and state.key_of("j3") == "tr_b"
    assert state.newest() == "tr_b"
    # an update of a known job replaces it in place
    state.remember(_job("j2", "tr_a", "2026-01-02", status="failed"))
    assert [j.status for j in state.jobs["tr_a"]] == ["completed", "failed"]
    assert state.remember(JobRecord(id="j9", kind="sae.train", status="queued")) == "j9"  # no training id
    state.set_jobs([])
    assert state.jobs == {} and state.key_of("j1") is None and state.newest() is None


def test_metrics_are_read_once_then_grow_live():
    state = TrainingState()
    state.set_jobs([_job("j1", "tr_a", "1"), _job("j2", "tr_a", "2")])
    reads = []

    def stored(job_id):
        reads.append(job_id)
        return [{"step": 1 if job_id == "j1" else 2, "name": "loss", "value": 3.0 - len(reads),
                 "t": 0.0}]

    run = state.run_metrics("tr_a", stored)
    assert reads == ["j1", "j2"] and state.run_metrics("tr_a", stored) is run
    assert reads == ["j1", "j2"]  # cached: never read again
    assert state.last("tr_a", "loss") == pytest.approx(1.0)
    run.add_live_rows([{"step": 3, "values": {"loss": 0.5, "l0": 12.0}, "t": 1.0}])
    assert state.card_metrics("tr_a") == {"loss": 0.5, "l0": 12.0,
                                          "explained_variance": None, "dead_fraction": None}


def test_a_finished_run_shows_its_final_metrics_before_its_history_is_read():
    state = TrainingState()
    state.set_jobs([_job("j1", "tr_a", "1", result={"saes": [{"metrics": {
        "explained_variance": 0.9, "l0": 30}}]})])
    assert state.last("tr_a", "explained_variance") == 0.9 and state.last("tr_a", "l0") == 30.0
    assert state.last("tr_a", "loss") is None
    assert set(state.card_metrics("tr_a")) == set(KEY_METRICS)


def test_card_view_says_status_progress_and_why_it_stopped():
    state = TrainingState()
    state.set_jobs([_job("j1", "tr_a", "1", status="running", progress=25, total=100,
                         message="step 25", eta_s=12.0)])
    view = state.card_view("tr_a", can_resume=False)
    assert (view.title, view.status, view.fraction, view.step, view.total, view.eta_s) == (
        "run tr_a", "running", 0.25, 25, 100, 12.0)
    assert view.message == ""  # a running card shows progress, not the message
    state.remember(_job("j1", "tr_a", "1", status="interrupted", message="app closed"))
    stopped = state.card_view("tr_a", can_resume=True)
    assert stopped.message == "app closed" and stopped.can_resume and stopped.fraction is None
    state.remember(_job("j1", "tr_a", "1", status="failed", error="out of memory"))
    assert state.card_view("tr_a", False).message == "out of memory"
    state.remember(_job("j1", "tr_a", "1", status="completed"))
    assert state.card_view("tr_a", False).fraction == 1.0
    live = state.progress_view("tr_a", {"done": 30, "total": 120, "eta_s": 4.0})
    assert live == {"fraction": 0.25, "step": 30, "total": 120, "eta_s": 4.0,
                    "tokens_per_s": None}


def test_the_banner_counts_interrupted_trainings_that_can_resume():
    state = TrainingState()
    state.set_jobs([_job("j1", "tr_a", "1", status="interrupted"),
                    _job("j2", "tr_b", "2", status="interrupted"),
                    _job("j3", "tr_c", "3", status="completed")])
    assert state.resumable(lambda job: True) == ["tr_a", "tr_b"]
    assert state.resumable(lambda job: job.id != "j2") == ["tr_a"]
    assert state.banner_text(0) == ""
    assert state.banner_text(1).startswith("1 training was interrupted") and "its card" in \
        state.banner_text(1)
    assert state.banner_text(2).startswith("2 trainings were interrupted")


def test_charts_draw_the_selected_and_the_compared_until_deleted():
    state = TrainingState()
    state.set_jobs([_job("j1", "tr_a", "1"), _job("j2", "tr_b", "2"), _job("j3", "tr_c", "3")])
    state.selected = "tr_b"
    state.set_compare("tr_a", True)
    assert state.chart_keys() == ["tr_a", "tr_b"] and state.charted("tr_a")
    assert not state.charted("tr_c")
    state.set_compare("tr_a", False)
    assert state.chart_keys() == ["tr_b"]
    state.set_compare("tr_c", True)
    state.metrics["tr_b"] = object()
    state.forget("tr_b")
    assert state.selected is None and "tr_b" not in state.metrics
    state.forget("tr_c")
    assert state.compare == set()
