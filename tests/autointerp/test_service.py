"""``studio.autointerp``: results stored and queried per feature, searchable; a run whose
process crashed resumed without redoing finished features."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mistudio.autointerp.job import read_results
from mistudio.errors import UserError


def test_service_stores_queries_and_resumes(studio_analysis, tiny_chat_dir):
    studio, sae_id, fa_id = studio_analysis
    model, job = studio.models.add_local(str(tiny_chat_dir), name="tiny-chat")
    studio.jobs.wait(job.id, timeout=120)
    ai = studio.autointerp
    with pytest.raises(UserError, match="Unknown scorer"):
        ai.start(sae_id, features="top2", model="tiny-chat", scorer="vibes")
    assert ai.explanation(sae_id, 0) is None and ai.score(sae_id, 0) is None
    job = ai.start(sae_id, features="top2", model="tiny-chat", scorer="detection",
                   device="cpu")
    done = studio.jobs.wait(job.id, timeout=120)
    assert done.status == "completed", done.error
    run = ai.get_run(job.target)
    assert run.status == "completed" and len(run.features) == 2
    f = run.features[0]
    e = ai.explanation(sae_id, f)
    s = ai.score(sae_id, f)
    assert e.model_id == model.id and e.prompt_version == "delphi-v2" and e.seed == 0
    assert s.baseline_feature == run.features[1] and 0 <= s.score <= 1
    # the stored score is the balanced accuracy of the stored per-example answers
    items = s.details
    pos = [i for i in items if i["truth"]]
    neg = [i for i in items if not i["truth"]]
    tpr = sum(i["p_yes"] > 0.5 for i in pos) / len(pos)
    tnr = sum(i["p_yes"] <= 0.5 for i in neg) / len(neg)
    assert s.score == pytest.approx((tpr + tnr) / 2, abs=1e-3)
    from sklearn.metrics import roc_auc_score

    assert s.auroc == pytest.approx(roc_auc_score([i["truth"] for i in items],
                                                  [i["p_yes"] for i in items]), abs=1e-3)
    assert s.baseline_auroc is not None and 0 <= s.baseline_auroc <= 1
    word = e.explanation.split()[0] if e.explanation.split() else ""
    if word:
        assert f in {x.feature for x in ai.explanations(sae_id, text=word)}
    # resuming a stopped run: test_run_resumes_after_the_process_crashed below


CRASHING_RUN = """
import os, sys
from mistudio.autointerp import job as autointerp_job
from mistudio.studio import Studio

write = autointerp_job._append

def write_then_crash(path, item):
    # a hard crash (no cleanup, no status written) right after the first result is on disk
    write(path, item)
    os._exit(3)

autointerp_job._append = write_then_crash
studio = Studio(sys.argv[1])
job = studio.autointerp.start(sys.argv[2], features="top2", model="tiny-chat",
                              scorer="detection", device="cpu", explain_batch=1)
studio.jobs.wait(job.id, timeout=100)
os._exit(0)
"""


def test_run_resumes_after_the_process_crashed(studio_analysis, tiny_chat_dir, data_dir):
    """The process running a batch dies: the next start of the app marks its job
    interrupted, and resuming the run redoes nothing that is in its results file."""
    import subprocess
    import sys

    from mistudio.secrets_test_support import MemorySecrets
    from mistudio.studio import Studio

    studio, sae_id, _ = studio_analysis
    model, job = studio.models.add_local(str(tiny_chat_dir), name="tiny-chat")
    studio.jobs.wait(job.id, timeout=120)
    proc = subprocess.run([sys.executable, "-c", CRASHING_RUN, str(data_dir), sae_id],
                          capture_output=True, text=True, timeout=110,
                          cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == 3, proc.stderr[-2000:]
    run = studio.autointerp.runs(sae_id)[0]
    assert run.status in ("queued", "running")  # nobody recorded the crash
    before = [d for d in read_results(Path(run.folder) / "results.jsonl")
              if d["type"] == "explanation"]
    assert len(before) == 1
    again = Studio(data_dir, secrets=MemorySecrets())  # the app started again
    try:
        done = again.jobs.wait(again.autointerp.resume(run.id).id, timeout=120)
        assert done.status == "completed", done.error
        assert done.result["explained_now"] == 2 - len(before)
        assert done.result["explained"] == 2 and done.result["scored"] == 2
        expl, scores = again.autointerp.run_results(run.id)
        assert len(expl) == 2 and len(scores) == 2
        for d in before:  # what was made before the crash is kept, not made again
            assert expl[d["feature"]].explanation == d["explanation"]
    finally:
        again.close(timeout=10)
