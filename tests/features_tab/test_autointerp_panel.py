"""Auto-interpretation in the Features tab, on a real tiny analysis: the panel shows the stored
explanation and its scores (balanced accuracy beside the shuffled baseline), the table's
search finds a feature by a word of its explanation, and "Explain this feature" is disabled
with its reason when no chat model is registered, and runs a real job when one is."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mistudio.ui.features.table_data import COLUMNS
from tests.autointerp.conftest import tiny_chat_dir  # noqa: F401  (fixture reused)
from tests.features_tab.test_features_tab import alive_feature, open_and_wait


def balanced_accuracy(tp, tn, fp, fn):
    return (tp / (tp + fn) + tn / (tn + fp)) / 2


def store_results(studio, fa_id, sae_id, lines):
    """Store results the way a finished run does: its results file, imported by the service."""
    from mistudio.autointerp.repository import RunRecord

    folder = studio.paths.root / "autointerp" / "ai_paneltest"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.jsonl").write_text("".join(json.dumps(d) + "\n" for d in lines))
    rec = RunRecord(id="ai_paneltest", analysis_id=fa_id, sae_id=sae_id, model_id="m_explainer",
                    model_name="Explainer-Instruct", prompt_version="delphi-v1", seed=0,
                    folder=str(folder))
    return studio.autointerp.import_results(rec)


@pytest.fixture
def explained(qtbot, shared_analysis):
    """Results stored, then the tab opened on the shared analysis."""
    from tests.features_tab.conftest import make_tab

    studio, sae_id, fa_id = shared_analysis
    f, _ = alive_feature(studio, sae_id, fa_id)
    g, _ = alive_feature(studio, sae_id, fa_id, nth=1)
    det = dict(tp=7, tn=8, fp=2, fn=3)
    fuzz = dict(tp=9, tn=5, fp=5, fn=1)
    lines = [
        {"type": "explanation", "feature": f, "explanation": "Capitalised zeppelin names",
         "raw": "[EXPLANATION]: Capitalised zeppelin names"},
        {"type": "explanation", "feature": g, "explanation": "commas in lists", "raw": ""},
        {"type": "score", "feature": f, "scorer": "detection",
         "balanced_accuracy": balanced_accuracy(**det), "baseline": 0.45,
         "baseline_feature": g, **det, "mean_answer_mass": 0.8, "items": []},
        {"type": "score", "feature": f, "scorer": "fuzz",
         "balanced_accuracy": balanced_accuracy(**fuzz), "baseline": None,
         "baseline_feature": None, **fuzz, "mean_answer_mass": 0.7, "items": []},
    ]
    store_results(studio, fa_id, sae_id, lines)
    tab, bridge = make_tab(qtbot, studio)
    yield tab, studio, sae_id, fa_id, f, g, det, fuzz
    tab.shutdown()
    bridge.stop()
    studio.jobs.remove_listener(bridge)
    with studio.store.db.conn:
        studio.store.db.execute("DELETE FROM autointerp_explanations WHERE run_id = ?",
                                ["ai_paneltest"])
        studio.store.db.execute("DELETE FROM autointerp_scores WHERE run_id = ?",
                                ["ai_paneltest"])


def test_panel_shows_the_stored_explanation_and_scores(qtbot, explained):
    tab, studio, sae_id, fa_id, f, g, det, fuzz = explained
    open_and_wait(qtbot, tab, f)
    box = tab.detail.interp
    qtbot.waitUntil(lambda: box.info is not None and box.info.feature == f, timeout=10_000)
    assert "Capitalised zeppelin names" in box.text.text()
    scores = box.scores.text()
    assert f"detection {balanced_accuracy(**det):.2f} balanced accuracy" in scores  # 0.75
    assert "shuffled-explanation baseline 0.45" in scores and f"#{g}" in scores
    assert f"fuzz {balanced_accuracy(**fuzz):.2f}" in scores  # 0.70
    assert "Explainer-Instruct" in box.source.text() and "delphi-v1" in box.source.text()
    # the only model (tiny-gpt2) has no chat template: the button says why it is off
    assert not box.explain_btn.isEnabled()
    assert "chat template" in box.explain_btn.toolTip() and "chat template" in box.status.text()


def test_search_finds_a_feature_by_a_word_of_its_explanation(qtbot, explained):
    tab, studio, sae_id, fa_id, f, g, det, fuzz = explained
    table = tab.bundle.table
    assert table.columns["explanation"][table.row_of(f)] == "Capitalised zeppelin names"
    tab.table.search.setText("ZEPPELIN")
    qtbot.waitUntil(lambda: tab.table.model.rowCount() == 1, timeout=5_000)
    assert tab.table.model.feature_at(0) == f
    col = [c.key for c in COLUMNS].index("explanation")
    assert tab.table.model.index(0, col).data() == "Capitalised zeppelin names"


def test_explain_this_feature_runs_the_job_in_place(qtbot, own_features_tab, tiny_chat_dir):
    tab, studio, sae_id, fa_id = own_features_tab
    model, job = studio.models.add_local(str(tiny_chat_dir), name="tiny-chat")
    studio.jobs.wait(job.id, timeout=120)
    # only the model whose tokenizer has a chat template is offered (not the analysed gpt2)
    assert len(studio.models.list()) >= 2
    assert [m.name for m in studio.autointerp.chat_models()] == ["tiny-chat"]
    f, _ = alive_feature(studio, sae_id, fa_id)
    open_and_wait(qtbot, tab, f)
    box = tab.detail.interp
    qtbot.waitUntil(lambda: box.explain_btn.isEnabled(), timeout=10_000)
    assert box.model_box.currentText() == "tiny-chat"
    box.explain_btn.click()
    assert not box.explain_btn.isEnabled()  # one job at a time for this feature
    qtbot.waitUntil(lambda: not tab.explainer.jobs, timeout=120_000)
    stored = studio.autointerp.explanation(sae_id, f, fa_id)
    assert stored is not None and stored.model_id == model.id
    qtbot.waitUntil(lambda: box.info.explanation is not None, timeout=10_000)
    assert box.info.explanation.explanation == stored.explanation
    assert "detection" in box.scores.text() and box.status.text() == "Explained."
    table = tab.bundle.table
    qtbot.waitUntil(lambda: table.columns["explanation"][table.row_of(f)] ==
                    stored.explanation, timeout=10_000)
    assert np.isfinite(studio.autointerp.score(sae_id, f, fa_id).score)
