"""Auto-interpretation of the table's selected rows (one real job with a tiny chat model),
and what the tab leaves to its worker threads: the job is started off the GUI thread, a
label typed just before the tab closes is saved, the pages right of the table are built
after the first paint."""

from __future__ import annotations

import html
import threading

import numpy as np

from tests.autointerp.conftest import tiny_chat_dir  # noqa: F401  (fixture reused)
from tests.features_tab.test_features_tab import alive_feature, open_and_wait


def _menu_actions(menu):
    """Every action of a menu and its submenus, as (text, action)."""
    out = []
    for act in menu.actions():
        out.append((act.text(), act))
        if act.menu() is not None:
            out += _menu_actions(act.menu())
    return out


def test_explain_the_selected_rows_from_the_context_menu(qtbot, own_features_tab,
                                                          tiny_chat_dir, monkeypatch):
    tab, studio, sae_id, fa_id = own_features_tab
    # nothing selected, no instruct model: the entries say why they are off
    assert [a.isEnabled() for _t, a in _menu_actions(tab.table_menu())] == [False]
    f, _ = alive_feature(studio, sae_id, fa_id)
    g, _ = alive_feature(studio, sae_id, fa_id, nth=1)
    tab.table.select_feature(f)
    off = _menu_actions(tab.table_menu())
    assert len(off) == 1 and "no instruct model" in off[0][0] and not off[0][1].isEnabled()

    model, job = studio.models.add_local(str(tiny_chat_dir), name="tiny-chat")
    studio.jobs.wait(job.id, timeout=120)
    # select both rows (extended selection), open one of them
    sm = tab.table.view.selectionModel()
    for feature in (f, g):
        row = tab.table.model.row_of_feature(feature)
        sm.select(tab.table.model.index(row, 0), sm.SelectionFlag.Select | sm.SelectionFlag.Rows)
    assert sorted(tab.table.selected_features()) == sorted([f, g])
    open_and_wait(qtbot, tab, f)  # its interpretation read lists the models that can explain
    box = tab.detail.interp
    qtbot.waitUntil(lambda: box.info is not None and box.info.feature == f, timeout=10_000)
    assert tab.explainer.models == [(model.id, "tiny-chat")]
    for feature in (f, g):  # open_feature selects its row only: select both again
        row = tab.table.model.row_of_feature(feature)
        sm.select(tab.table.model.index(row, 0), sm.SelectionFlag.Select | sm.SelectionFlag.Rows)

    starts = []
    start = studio.autointerp.start
    monkeypatch.setattr(studio.autointerp, "start", lambda *a, **k: (
        starts.append(threading.current_thread()), start(*a, **k))[1])
    actions = dict(_menu_actions(tab.table_menu()))
    assert "Explain and score 2 selected features with" in actions
    actions["tiny-chat"].trigger()
    qtbot.waitUntil(lambda: bool(starts), timeout=10_000)
    assert starts[0] is not threading.main_thread()  # it reads every live feature's row
    qtbot.waitUntil(lambda: "Explained and scored 2 features" in tab.message.text(),
                    timeout=180_000)

    # both explanations stored, and shown in the table's column
    table = tab.bundle.table
    for feature in (f, g):
        stored = studio.autointerp.explanation(sae_id, feature, fa_id)
        assert stored is not None and stored.model_id == model.id
        qtbot.waitUntil(lambda: table.columns["explanation"][table.row_of(feature)] ==
                        stored.explanation, timeout=10_000)
    # the open feature's panel shows what the service returns: explanation and score
    qtbot.waitUntil(lambda: box.info is not None and box.info.explanation is not None,
                    timeout=10_000)
    stored = studio.autointerp.explanation(sae_id, f, fa_id)
    score = studio.autointerp.score(sae_id, f, fa_id, scorer="detection")
    assert box.info.explanation.explanation == stored.explanation
    assert html.escape(stored.explanation) in box.text.text()
    assert f"detection {score.score:.2f} balanced accuracy" in box.scores.text()
    # the balanced accuracy is the mean of the true-positive and true-negative rates
    tp, tn, fp, fn = score.tp, score.tn, score.fp, score.fn
    want = np.mean([tp / max(tp + fn, 1), tn / max(tn + fp, 1)])
    assert np.isclose(score.score, want)


def test_a_label_typed_just_before_closing_is_saved(qtbot, features_tab):
    tab, studio, sae_id, fa_id = features_tab
    f, _ = alive_feature(studio, sae_id, fa_id, nth=2)
    open_and_wait(qtbot, tab, f)
    tab.detail.label_edit.setText("typed at the last moment")
    tab.detail.label_edit.textEdited.emit("typed at the last moment")  # debounce running
    tab.shutdown()  # flushes the edit; waits for the write thread
    assert studio.feature_labels.annotation(sae_id, f).label == "typed at the last moment"


def test_pages_are_built_after_the_first_paint(qtbot, shared_analysis):
    from mistudio.ui.features.tab import FeaturesTab
    from mistudio.ui.workers import JobBridge

    studio, _sae_id, _fa_id = shared_analysis
    bridge = JobBridge()
    tab = FeaturesTab(studio, bridge)
    qtbot.addWidget(tab)
    try:
        # built: the picker and the table; not yet: the pages right of the table
        assert tab.pages.count() == 0 and tab.pages.built("detail") is None
        tab.show()
        qtbot.waitUntil(lambda: tab.pages.all_built(), timeout=10_000)
        assert [tab.pages.tabText(i) for i in range(tab.pages.count())] == \
            ["Feature", "Map", "Heatmap", "Prompt"]
        assert tab.detail.hist._plot is not None  # its plots too, each in a turn of its own
    finally:
        tab.shutdown()
        bridge.stop()
