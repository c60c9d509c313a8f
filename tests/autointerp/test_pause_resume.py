"""A batch run paused mid-way and resumed, or stopped and run again, ends with the same
results as an uninterrupted run, and never redoes a feature whose result is in the file."""

from __future__ import annotations

import threading
import time

import pytest

from mistudio.autointerp import job
from mistudio.errors import JobCancelled
from mistudio.jobs.context import JobContext
from tests.autointerp.conftest import ScriptedModel
from tests.autointerp.conftest import alive_features as _alive


class PerFeatureModel(ScriptedModel):
    """Explains each feature differently (its explanation quotes the prompt's first example),
    so a mix-up between features would show in the results; ``on_generate(n)`` is called at
    the start of the n-th explanation."""

    def __init__(self, on_generate=None):
        super().__init__(needle="e", p_hit=0.8)
        self.on_generate = on_generate or (lambda n: None)

    def generate(self, system, user, max_new_tokens=48):
        self.on_generate(len(self.generate_calls) + 1)
        self.generate_calls.append(user)
        first = user.split("Example 1: ", 1)[1].split("\n", 1)[0]
        return f"words like {first[:30]}\nmore"


def _params(feats, out, **kw):
    return {"features": feats, "scorer": "detection", "results_file": str(out), "seed": 3,
            "n_train": 5, "batch_size": 4, "explain_batch": 1, **kw}


def _wait_for(pred, timeout=30.0):
    t = time.monotonic()
    while not pred():
        assert time.monotonic() - t < timeout, "timed out"
        time.sleep(0.02)


def test_pause_mid_batch_then_resume_equals_uninterrupted(res, tmp_path):
    feats = _alive(res, 4)
    ref_file = tmp_path / "ref.jsonl"
    job.run_batch(PerFeatureModel(), res, _params(feats, ref_file), JobContext.standalone())
    reference = job.read_results(ref_file)
    assert len(reference) == 8

    statuses = []
    ctx = JobContext.standalone(tmp_path / "j", on_event=lambda _id, kind, p: statuses.append(
        p["status"]) if kind == "status" else None)
    # the pause is asked for while the 2nd feature is being explained, as a click would
    model = PerFeatureModel(on_generate=lambda n: ctx.request_pause() if n == 2 else None)
    out = tmp_path / "paused.jsonl"
    got = {}
    worker = threading.Thread(target=lambda: got.update(
        job.run_batch(model, res, _params(feats, out), ctx)))
    worker.start()
    _wait_for(lambda: "paused" in statuses)
    # paused after the 2nd feature: its result is written, nothing more is done meanwhile
    time.sleep(0.3)
    assert [d["feature"] for d in job.read_results(out)] == feats[:2]
    assert len(model.generate_calls) == 2 and not model.batches
    ctx.request_resume()
    worker.join(30)
    assert not worker.is_alive() and statuses[-1] == "running"
    assert job.read_results(out) == reference
    assert len(model.generate_calls) == len(feats)  # each feature explained once
    assert got["explained"] == 4 and got["scored"] == 4


def test_stopped_run_started_again_skips_cached_results(res, tmp_path):
    """Cancel while paused in the scoring phase, then run again (a new process would do the
    same: it only has the results file): explained and scored features are not asked about
    again, and the results equal an uninterrupted run's."""
    feats = _alive(res, 4)
    ref_file = tmp_path / "ref.jsonl"
    job.run_batch(PerFeatureModel(), res, _params(feats, ref_file), JobContext.standalone())

    out = tmp_path / "stopped.jsonl"
    ctx = JobContext.standalone()
    first = PerFeatureModel()
    scored_before_stop = 2

    def answer_probs(system, users, words, _orig=first.answer_probs):
        # the scorer of feature 3 asks its first batch: stop the run there
        if sum(d["type"] == "score" for d in job.read_results(out)) == scored_before_stop:
            ctx.request_cancel()
            raise JobCancelled()
        return _orig(system, users, words)

    first.answer_probs = answer_probs
    with pytest.raises(JobCancelled):
        job.run_batch(first, res, _params(feats, out), ctx)
    assert len(first.generate_calls) == 4

    again = PerFeatureModel()
    summary = job.run_batch(again, res, _params(feats, out), JobContext.standalone())
    assert again.generate_calls == []  # every explanation came from the file
    asked = {u for b in again.batches for u in b}
    # only the two unscored features were scored again (real + shuffled baseline)
    done = [d for d in job.read_results(out) if d["type"] == "score"]
    assert [d["feature"] for d in done] == feats
    n_questions = sum(len(d["items"]) for d in done[scored_before_stop:])
    assert len(asked) <= 2 * n_questions and sum(len(b) for b in again.batches) == \
        2 * n_questions
    assert summary["explained_now"] == 0
    assert job.read_results(out) == job.read_results(ref_file)
