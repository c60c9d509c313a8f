"""The Features tab on a real (tiny) analysis: open, search, label, favourite, navigate,
prompt, map lasso, export. Values shown are compared with the engine's reader."""

from __future__ import annotations

import numpy as np


def open_and_wait(qtbot, tab, feature):
    tab.open_feature(feature)
    qtbot.waitUntil(lambda: tab.detail.detail is not None and tab.detail.detail.feature == feature,
                    timeout=10_000)


def alive_feature(studio, sae_id, fa_id, nth=0):
    res = studio.features.results(sae_id, fa_id)
    order = np.argsort(-res.columns["density"], kind="stable")
    return int(order[nth]), res


def test_table_holds_every_feature_with_the_engines_numbers(qtbot, features_tab):
    tab, studio, sae_id, fa_id = features_tab
    res = studio.features.results(sae_id, fa_id)
    table = tab.bundle.table
    assert len(table) == res.d_sae == tab.table.model.rowCount()
    assert np.allclose(table.columns["density"], res.columns["density"])
    alive = ~res.columns["dead"]
    assert np.allclose(table.columns["max"][alive], res.columns["max_act"][alive])
    assert np.isnan(table.columns["max"][~alive]).all()
    # sort by density, descending, through the header: the first row is the densest feature
    tab.table.view.sortByColumn(2, tab.table.view.horizontalHeader().sortIndicatorOrder().DescendingOrder)
    assert tab.table.model.feature_at(0) == int(np.argmax(res.columns["density"]))


def test_open_feature_shows_the_engines_detail(qtbot, features_tab):
    tab, studio, sae_id, fa_id = features_tab
    f, res = alive_feature(studio, sae_id, fa_id)
    open_and_wait(qtbot, tab, f)
    d = tab.detail
    counts, edges = res.histogram(f)
    assert np.array_equal(d.hist.counts, counts) and np.allclose(d.hist.edges, edges)
    assert "density" in d.hist.plotItem.titleLabel.text
    top = res.examples(f, "top")
    shown = d.top_view.examples
    assert len(shown) == len(top)
    for ex, view in zip(top, shown):
        assert view.tokens == ex.tokens and np.allclose(view.values, ex.values)
        assert view.max_pos == ex.centre
    lens = res.logit_lens(f, "raw")
    assert [t for t, _ in d.lens.cell_texts("top")] == [repr(s)[1:-1] for _, s, _ in lens.top]
    # hover text: token, id, value; the context toggle narrows the window around the max
    tip = d.top_view.tooltip_text(0, top[0].centre)
    assert f"id {top[0].token_ids[top[0].centre]}" in tip and f"{top[0].values[top[0].centre]:.4g}" in tip
    d.context_box.setCurrentIndex(0)  # ±5 tokens
    assert all(len(d.top_view.visible_range(v)) <= 11 for v in shown)
    d.context_box.setCurrentIndex(d.context_box.count() - 1)  # the whole window
    assert all(len(d.top_view.visible_range(v)) == len(v.tokens) for v in shown)
    d.convention_box.setCurrentIndex(1)
    folded = res.logit_lens(f, "folded")
    assert [float(v) for _, v in d.lens.cell_texts("bottom")] == \
        [round(v, 3) for _, _, v in folded.bottom]
    assert d.correlated.features() == [i for i, _ in res.correlated(f)]
    assert d.neighbours.features() == [i for i, _ in res.decoder_neighbours(f)]
    # interval groups: both schemes, highest first, headings with the share of active tokens
    groups = res.intervals(f, "interval")
    caption = d.interval_view.examples[0].caption
    top_group = next(g for g in reversed(groups) if g.examples)
    assert f"contains {top_group.share * 100:.1f}%" in caption
    d.scheme_box.setCurrentIndex(1)
    n_q = sum(len(g.examples) for g in res.intervals(f, "quantile"))
    assert len(d.interval_view.examples) == n_q


def test_search_label_favourite_and_find_them_again(qtbot, features_tab):
    tab, studio, sae_id, fa_id = features_tab
    f, _ = alive_feature(studio, sae_id, fa_id, 1)
    open_and_wait(qtbot, tab, f)
    d = tab.detail
    d.label_edit.setText("zebra crossings")
    d.label_edit.editingFinished.emit()
    d.notes_edit.setPlainText("fires after 'the capital of'")
    d.flush_edits()
    d.fav.setChecked(True)
    # saved on the tab's write thread, in order
    want = ("zebra crossings", "fires after 'the capital of'", True)
    stored = lambda: studio.feature_labels.annotation(sae_id, f)  # noqa: E731
    qtbot.waitUntil(lambda: (stored().label, stored().notes, stored().favourite) == want,
                    timeout=5000)
    tab.table.search.setText("ZEBRA")
    qtbot.waitUntil(lambda: tab.table.model.rowCount() == 1, timeout=3000)
    assert tab.table.model.feature_at(0) == f
    assert tab.table.model.index(0, 1).data() == "zebra crossings"
    tab.table.search.setText("")
    tab.table.favourites.setChecked(True)
    qtbot.waitUntil(lambda: tab.table.model.rowCount() == 1, timeout=3000)
    assert tab.table.model.feature_at(0) == f


def test_neighbour_chip_then_back_and_forward(qtbot, features_tab):
    tab, studio, sae_id, fa_id = features_tab
    f, res = alive_feature(studio, sae_id, fa_id)
    open_and_wait(qtbot, tab, f)
    chips = tab.detail.neighbours
    assert chips.count() > 0
    target = chips.features()[0]
    chips.itemClicked.emit(chips.item(0))
    qtbot.waitUntil(lambda: tab.detail.detail.feature == target, timeout=10_000)
    assert tab.table.current_feature() == target
    assert tab.detail.back_btn.isEnabled() and not tab.detail.fwd_btn.isEnabled()
    tab.detail.back_btn.click()
    qtbot.waitUntil(lambda: tab.detail.detail.feature == f, timeout=10_000)
    tab.detail.fwd_btn.click()
    qtbot.waitUntil(lambda: tab.detail.detail.feature == target, timeout=10_000)


def test_prompt_view_lists_the_engines_features_per_token(qtbot, features_tab):
    tab, studio, sae_id, fa_id = features_tab
    tab.pages.setCurrentWidget(tab.prompt)
    text = "Paris is the capital of France."
    tab.prompt.text.setPlainText(text)
    tab.prompt.k.setValue(4)
    tab.prompt.run_btn.click()
    qtbot.waitUntil(lambda: tab.prompt.result is not None, timeout=60_000)
    ref = studio.features.top_features(sae_id, text, k=4)
    view = tab.prompt.tokens.examples[0]
    assert view.tokens == ref.tokens
    strongest = [f[0][1] if f else 0.0 for f in ref.features]
    assert np.allclose(view.values, strongest)
    t = int(np.argmax(strongest))
    tab.prompt._token_clicked(0, t)
    assert tab.prompt.chips.features() == [f for f, v in ref.features[t] if v > 0]
    # a chip opens its feature; the histogram marks the prompt's activation of it
    chip_feature, chip_value = ref.features[t][0]
    tab.prompt.chips.itemClicked.emit(tab.prompt.chips.item(0))
    qtbot.waitUntil(lambda: tab.detail.detail is not None
                    and tab.detail.detail.feature == chip_feature, timeout=10_000)
    marker = tab.detail.hist.marker
    assert marker.isVisible()
    best = max(v for feats in ref.features for f, v in feats if f == chip_feature)
    assert np.isclose(marker.value(), best)
    # highlight one feature across the text
    tab.prompt.highlight.setChecked(True)
    want = [max([v for f, v in feats if f == chip_feature], default=0.0) for feats in ref.features]
    assert np.allclose(tab.prompt.tokens.examples[0].values, want)


def test_ablation_shows_the_loss_change_in_the_hover(qtbot, features_tab):
    tab, studio, sae_id, fa_id = features_tab
    f, res = alive_feature(studio, sae_id, fa_id)
    open_and_wait(qtbot, tab, f)
    tab.detail.ablate_btn.click()
    qtbot.waitUntil(lambda: bool(tab.detail.ablation), timeout=60_000)
    ref = studio.features.ablate(sae_id, f, fa_id)  # cached: the same objects
    first = ref[0]
    ex = tab.detail.detail.top_examples[0]
    i = ex.centre  # the max token of the first example
    view = tab.detail.top_view
    tip = view.tooltip_text(0, i)
    assert f"{first.loss_change[ex.pos]:+.4f}" in tip
    assert "mean loss change" in tab.detail.ablation_note.text()


def test_empty_states_say_what_to_do(qtbot, studio):
    from mistudio.ui.features.tab import FeaturesTab
    from mistudio.ui.workers import JobBridge

    bridge = JobBridge()
    tab = FeaturesTab(studio, bridge)
    qtbot.addWidget(tab)
    # the SAEs are read off the GUI thread; meanwhile nothing can be started
    assert not tab.picker.analyze_btn.isEnabled() and not tab.export_btn.isEnabled()
    qtbot.waitUntil(lambda: tab.body.currentWidget() is tab.no_sae, timeout=10_000)
    assert "Training" in tab.no_sae.body_text
    assert not tab.picker.analyze_btn.isEnabled() and not tab.export_btn.isEnabled()
    tab.shutdown()
    bridge.stop()


def test_analyze_from_the_tab_shows_progress_then_opens_the_analysis(qtbot, own_features_tab,
                                                                       analysis_tokens, tmp_path):
    from tests.analysis.conftest import random_sae, save_sae

    tab, studio, sae_id, fa_id = own_features_tab
    other = studio.trainings.import_sae(str(save_sae(tmp_path / "sae2", random_sae(seed=3))),
                                        name="second SAE")
    tab.refresh_saes()
    qtbot.waitUntil(lambda: tab.picker.sae_box.findData(other.id) >= 0, timeout=10_000)
    tab.picker.sae_box.setCurrentIndex(tab.picker.sae_box.findData(other.id))
    assert tab.state.sae_id == other.id
    qtbot.waitUntil(lambda: tab.body.currentWidget() is tab.no_analysis, timeout=10_000)
    seen = []
    tab.bridge.progress.connect(lambda job, p: seen.append(tab.picker.progress.isVisible()))
    tab.start_analysis({"tokenization": str(analysis_tokens), "max_tokens": 0, "device": "cpu",
                        "n_random": 20, "context_before": 4, "context_after": 2})
    assert tab.picker.job_id is not None and not tab.picker.analyze_btn.isEnabled()
    qtbot.waitUntil(lambda: tab.bundle is not None and tab.bundle.sae_id == other.id,
                    timeout=120_000)
    assert seen and all(seen)  # progress arrived while the bar showed it
    assert not tab.picker.progress.isVisible() and tab.picker.analyze_btn.isEnabled()
    new = studio.features.latest_analysis(other.id)
    assert tab.state.analysis_id == new.id and tab.body.currentWidget() is tab.split
    # a bad request is a message, not a crash
    tab.start_analysis({"tokenization": str(tmp_path / "missing"), "max_tokens": 0})
    assert tab.last_error
