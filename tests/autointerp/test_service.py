"""``studio.autointerp``: results stored and queried per feature, searchable, a cancelled run
resumed without redoing finished features."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

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
    assert e.model_id == model.id and e.prompt_version == "delphi-v1" and e.seed == 0
    assert s.baseline_feature == run.features[1] and 0 <= s.score <= 1
    # the stored score is the balanced accuracy of the stored per-example answers
    items = s.details
    pos = [i for i in items if i["truth"]]
    neg = [i for i in items if not i["truth"]]
    tpr = sum(i["p_yes"] > 0.5 for i in pos) / len(pos)
    tnr = sum(i["p_yes"] <= 0.5 for i in neg) / len(neg)
    assert s.score == pytest.approx((tpr + tnr) / 2, abs=1e-3)
    word = e.explanation.split()[0] if e.explanation.split() else ""
    if word:
        assert f in {x.feature for x in ai.explanations(sae_id, text=word)}
    # a run cut short: its results file holds one explanation; resuming skips it
    job2 = ai.start(sae_id, features="top4", model="tiny-chat", device="cpu", seed=5)
    studio.jobs.cancel(job2.id)
    studio.jobs.wait(job2.id, timeout=120)
    run2 = ai.get_run(job2.target)
    results = Path(run2.folder) / "results.jsonl"
    if run2.status == "completed":
        pytest.skip("the run finished before the cancel reached it")
    first = {"type": "explanation", "feature": run2.features[0], "explanation": "kept",
             "raw": "kept", "shown": []}
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps(first) + "\n")
    done = studio.jobs.wait(ai.resume(run2.id).id, timeout=120)
    assert done.status == "completed" and done.result["explained_now"] == 3
    expl, _ = ai.run_results(run2.id)
    assert expl[run2.features[0]].explanation == "kept" and len(expl) == 4
