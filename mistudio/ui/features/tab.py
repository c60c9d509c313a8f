"""The Features tab: browse, understand and label every feature of an SAE.

Top: the SAE and analysis picker (start an analysis, its progress in place). Left: the
feature table (65k rows sort and filter in milliseconds; see table_data.py). Right: the
open feature's detail, the map (UMAP / t-SNE of decoder directions, lasso into a list), the
correlation heatmap and the prompt view. Everything slow (reading an analysis, a feature's
examples, a prompt, a map) runs off the GUI thread through ``BackgroundCalls``; the tab's
state lives in ``FeaturesState`` (Qt-free).
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QHBoxLayout, QInputDialog, QLabel, QMenu, QSplitter,
                               QStackedLayout, QToolButton, QVBoxLayout, QWidget)

from mistudio.errors import UserError
from mistudio.ui.empty_state import EmptyState
from mistudio.ui.features import loaders
from mistudio.ui.features.annotations import FeatureAnnotations
from mistudio.ui.kit.background import BackgroundCalls
from mistudio.ui.features.detail import FeatureDetailPanel
from mistudio.ui.features.exports import FeatureExports
from mistudio.ui.features.interpretation import FeatureExplainer
from mistudio.ui.features.map_page import HeatmapPage, MapPage
from mistudio.ui.features.picker import AnalysisPicker
from mistudio.ui.features.prompt_view import PromptView
from mistudio.ui.features.state import FeaturesState
from mistudio.ui.features.table_panel import FeatureTablePanel
from mistudio.ui.kit import palette
from mistudio.ui.kit.gc_freeze import freeze_long_lived
from mistudio.ui.kit.lazy_pages import LazyPages
from mistudio.ui.kit.native_libraries import import_torch_quietly


class FeaturesTab(QWidget):
    steer_feature_requested = Signal(str, int)  # sae id, feature index (the main window routes it)

    def __init__(self, studio, bridge, parent: QWidget | None = None):
        super().__init__(parent)
        self.studio = studio
        self.bridge = bridge
        self.state = FeaturesState()
        self.calls = BackgroundCalls(self, name="features-tab")  # quick reads: the table, a feature, lists, maps
        # slow work (an ablation loads the model; an export writes many files) has its own
        # thread, so clicking through features stays quick meanwhile
        self.slow_calls = BackgroundCalls(self, name="features-slow")

        self.picker = AnalysisPicker()
        self.picker.sae_changed.connect(self.select_sae)
        self.picker.analysis_changed.connect(self.select_analysis)
        self.picker.analyze_requested.connect(self.start_analysis)
        self.picker.cancel_requested.connect(lambda job: job and self.studio.cancel_job(job))
        self.exports = FeatureExports(self)
        self.export_btn = QToolButton(text="Export / import")
        self.export_btn.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.export_btn.setMenu(self.exports.menu())
        self.message = QLabel()
        self.message.setWordWrap(True)
        self.message.setStyleSheet(palette.css("error"))

        self.annotations = FeatureAnnotations(self)  # label / list writes, off the GUI thread
        self.table = FeatureTablePanel()
        self.table.feature_activated.connect(self.open_feature)
        self.table.view.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.table.view.customContextMenuRequested.connect(
            lambda pos: self.table_menu().exec(self.table.view.viewport().mapToGlobal(pos)))
        # The pages right of the table are built after the tab's first paint, one per
        # event-loop turn (or on first need): together they cost more than a frame (plots).
        self.pages = LazyPages(busy=self.calls.busy)
        self.pages.add_lazy("detail", "Feature", self._build_detail)
        self.pages.add_lazy("map", "Map", self._build_map)
        self.pages.add_lazy("heatmap", "Heatmap", self._build_heatmap)
        self.pages.add_lazy("prompt", "Prompt", self._build_prompt)
        self.pages.currentChanged.connect(self._page_changed)
        self.detail_empty = EmptyState("Pick a feature", "Click a row of the table, a point "
                                       "on the map or a feature of a prompt to see what it "
                                       "does.")
        self.detail_host = QWidget()
        self.detail_stack = QStackedLayout(self.detail_host)
        self.detail_stack.addWidget(self.detail_empty)
        self.detail_stack.addWidget(self.pages)
        self.split = QSplitter(Qt.Orientation.Horizontal)
        self.split.addWidget(self.table)
        self.split.addWidget(self.detail_host)
        self.split.setSizes([520, 760])

        self.no_sae = EmptyState(
            "No SAE yet", "Features are what an SAE learned. Train one in the <b>Training</b> "
            "tab, or import one (SAELens, sparsify or Gemma Scope files), then come back "
            "here to analyse it.")
        self.no_analysis = EmptyState(
            "No analysis of this SAE yet", "An analysis reads text through the model and the "
            "SAE once and gathers every feature's dashboard: top examples, histograms, logit "
            "lens, correlations. Press <b>Analyze</b> above (a background job with progress; "
            "the defaults suit most SAEs).", action_text="Analyze",
            on_action=lambda: self.picker.analyze_btn.click())
        self.body_host = QWidget()
        self.body = QStackedLayout(self.body_host)
        for w in (self.no_sae, self.no_analysis, self.split):
            self.body.addWidget(w)
        self.body.setCurrentWidget(self.split)  # the usual view, until the SAEs are read
        self.table.count.setText("Reading the SAEs...")
        self.picker.analyze_btn.setEnabled(False)  # until we know there is an SAE
        self.export_btn.setEnabled(False)

        top = QHBoxLayout()
        top.addWidget(self.picker, 1)
        top.addWidget(self.export_btn)
        lay = QVBoxLayout(self)
        lay.addLayout(top)
        lay.addWidget(self.message)
        lay.addWidget(self.body_host, 1)
        self.message.setVisible(False)

        bridge.status.connect(self._on_job_status)
        bridge.progress.connect(self._on_job_progress)
        self.refresh_saes()

    # the state, under the names the tab's parts (and its tests) read
    @property
    def bundle(self) -> loaders.TableBundle | None:
        return self.state.bundle

    @property
    def lists(self) -> list:
        return self.state.lists

    @property
    def last_error(self) -> str:
        return self.state.last_error

    # ================================================================== pages

    @property
    def detail(self) -> FeatureDetailPanel:
        return self.pages.page("detail")

    @property
    def explainer(self) -> FeatureExplainer:
        self.pages.page("detail")
        return self._explainer

    @property
    def map_page(self) -> MapPage:
        return self.pages.page("map")

    @property
    def heatmap_page(self) -> HeatmapPage:
        return self.pages.page("heatmap")

    @property
    def prompt(self) -> PromptView:
        return self.pages.page("prompt")

    def paintEvent(self, event) -> None:
        super().paintEvent(event)
        self.pages.build_when_idle()  # after the first paint: the pages, one per turn

    def _build_detail(self) -> FeatureDetailPanel:
        d = FeatureDetailPanel()
        d.feature_requested.connect(self.open_feature)
        d.back_requested.connect(self.back)
        d.forward_requested.connect(self.forward)
        d.label_edited.connect(lambda text: self._annotate(label=text))
        d.notes_edited.connect(lambda text: self._annotate(notes=text))
        d.favourite_toggled.connect(lambda on: self._annotate(favourite=on))
        d.add_to_list_requested.connect(self._add_current_to_list)
        d.steer_requested.connect(self._steer)
        d.ablate_requested.connect(self.ablate_current)
        self._explainer = FeatureExplainer(self, d.interp)
        self._explainer.finished.connect(self._explained)
        return d

    def _build_map(self) -> MapPage:
        m = MapPage()
        m.compute_requested.connect(self.compute_map)
        m.method_changed.connect(lambda _m: self.load_map())
        m.colour_changed.connect(self._colour_map)
        m.plot.feature_clicked.connect(self.open_feature)
        m.plot.lasso_drawn.connect(self.lasso_to_list)
        m.set_lists(self.lists)
        m.plot.labels = self.state.labels()
        return m

    def _build_heatmap(self) -> HeatmapPage:
        h = HeatmapPage()
        h.show_requested.connect(self.show_heatmap)
        h.heatmap.feature_clicked.connect(self.open_feature)
        return h

    def _build_prompt(self) -> PromptView:
        p = PromptView(self)
        p.feature_requested.connect(self.open_feature)
        return p

    def _map(self) -> MapPage | None:
        """The map page if it was built (nothing to update on it otherwise)."""
        return self.pages.built("map")

    # ================================================================== picking

    def show_error(self, text: str) -> None:
        self.show_message(text, "error")

    def show_message(self, text: str, kind: str = "info") -> None:
        self.state.say(text, kind)
        self.message.setStyleSheet(palette.css(self.state.message_role))
        self.message.setText(self.state.message)
        self.message.setVisible(bool(self.state.message))

    def refresh_saes(self) -> None:
        """Re-read the SAEs (and the analyses of the one kept) off the GUI thread."""
        keep = self.state.sae_id
        self.calls.call("saes", lambda: loaders.load_saes(self.studio, keep),
                        self._saes_loaded, self.show_error)

    def _saes_loaded(self, got: "loaders.SaeChoices") -> None:
        self.picker.set_saes(got.saes, keep=got.picked)
        self.picker.set_tokenizations(got.tokenizations)
        has_sae = bool(got.saes)
        self.picker.analyze_btn.setEnabled(has_sae)
        self.export_btn.setEnabled(has_sae)
        if not has_sae:
            self.state.select_sae(None)
            self.body.setCurrentWidget(self.no_sae)
            return
        self._sae_picked(got.picked, got.analyses)

    def select_sae(self, sae_id: str) -> None:
        """The user picked an SAE: its analyses are read off the GUI thread."""
        self._sae_picked(sae_id, None)

    def _sae_picked(self, sae_id: str | None, analyses) -> None:
        changed = self.state.select_sae(sae_id or None)
        if changed:
            self.detail_stack.setCurrentWidget(self.detail_empty)
        if analyses is None:
            self.refresh_analyses()
        else:
            self._analyses_loaded(sae_id, analyses)
        self.reload_lists()

    def refresh_analyses(self) -> None:
        sae_id = self.state.sae_id
        if not sae_id:
            return
        self.calls.call("analyses", lambda: self.studio.features.list_analyses(sae_id),
                        lambda got: self._analyses_loaded(sae_id, got), self.show_error)

    def _analyses_loaded(self, sae_id: str, analyses) -> None:
        if sae_id != self.state.sae_id:
            return  # another SAE was picked meanwhile
        self.state.job_of_analysis = {a.id: a.job_id for a in analyses}
        self.picker.set_analyses(analyses, keep=self.state.analysis_id)
        running = next((a for a in analyses if a.status in ("queued", "running")), None)
        self.picker.show_job(running.job_id if running else None,
                             message="Analysis queued..." if running else "")
        current = self.picker.current_analysis()
        if current:
            self.select_analysis(current)
        else:
            self.state.analysis_id = None
            self.body.setCurrentWidget(self.no_analysis)

    def select_analysis(self, analysis_id: str) -> None:
        if not analysis_id or self.state.shows_table_of(analysis_id):
            return
        self.state.analysis_id = analysis_id
        sae_id = self.state.sae_id
        self.table.count.setText("Loading features...")
        self.body.setCurrentWidget(self.split)
        self.calls.call("table", lambda: loaders.load_table(self.studio, sae_id, analysis_id),
                        self._table_loaded, self.show_error)

    def _table_loaded(self, bundle: loaders.TableBundle) -> None:
        if not self.state.take_table(bundle):
            return
        self.table.show_table(bundle.table)
        # the table (and the window's modules and widgets) live long: keep later full
        # collections from rescanning them (a 150-230 ms freeze each; kit/gc_freeze.py)
        freeze_long_lived()
        if self._map() is not None:
            self._map().plot.labels = self.state.labels()
            self.load_map()
        if self.state.feature is not None:
            self._load_detail(self.state.feature)
        self.show_error("")

    def start_analysis(self, kwargs: dict) -> None:
        try:
            job = self.studio.features.start_analysis(self.state.sae_id, **kwargs)
        except UserError as exc:
            self.show_error(str(exc))
            return
        self.show_error("")
        self.picker.show_job(job.id, message="Analysis queued...")
        self.refresh_analyses()

    def _on_job_status(self, job_id: str, payload: dict) -> None:
        try:
            job = self.studio.get_job(job_id)
        except UserError:  # deleted meanwhile
            return
        status = payload.get("status")
        effect = self.state.job_effect(job.kind, status, job.target)
        if effect == "saes":
            self.refresh_saes()  # a new SAE to pick
        elif effect == "analyses":
            if status != "completed":
                self.show_error(f"The analysis {status}: {job.error or job.message or ''}".strip())
            self.refresh_analyses()
        elif effect == "map":
            self.load_map()
        elif effect == "map_stopped" and self._map() is not None:
            self._map().status.setText(f"Map {status}: {job.error or ''}")
            self._map().compute.setEnabled(True)

    def _on_job_progress(self, job_id: str, payload: dict) -> None:
        msg = payload.get("message") or ""
        if job_id == self.picker.job_id:
            eta = payload.get("eta_s")
            tail = f" · {int(eta)} s left" if eta else ""
            self.picker.show_job(job_id, payload.get("done", 0), payload.get("total"),
                                 msg + tail)
        elif job_id == self.state.map_job and self._map() is not None:
            self._map().status.setText(f"Computing map: {msg}")

    # ================================================================== one feature

    def open_feature(self, feature: int) -> None:
        """Show ``feature`` (from the table, a chip, the map, the heatmap or a prompt)."""
        if self.bundle is None:
            return
        self._flush_edits()
        self.state.history.open(int(feature))
        self._show_current()

    def back(self) -> None:
        self._flush_edits()
        self.state.history.back()
        self._show_current()

    def forward(self) -> None:
        self._flush_edits()
        self.state.history.forward()
        self._show_current()

    def _flush_edits(self) -> None:
        if self.pages.built("detail") is not None:  # no panel yet: nothing typed in it
            self.detail.flush_edits()

    def _show_current(self) -> None:
        f = self.state.feature
        if f is None:
            return
        self.table.select_feature(f, emit=False)
        if self._map() is not None:
            self._map().plot.mark(f)
        self.detail.set_history(self.state.history.can_back(), self.state.history.can_forward())
        self.pages.setCurrentWidget(self.detail)
        self._load_detail(f)

    def _load_detail(self, f: int) -> None:
        sae_id, fa_id = self.state.sae_id, self.state.analysis_id
        sources = self.bundle.sources if self.bundle else None
        self.calls.call("detail",
                        lambda: loaders.load_detail(self.studio, sae_id, fa_id, f, sources),
                        self._detail_loaded, self.show_error)

    def _explained(self, features) -> None:
        """An explanation job completed: the table's Explanation column is re-read (its
        features' texts become searchable)."""
        sae_id, fa_id = self.state.sae_id, self.state.analysis_id

        def done(texts):
            if self.state.owns_table(sae_id):
                self.bundle.table.set_explanations(texts)
                self.table.model.refresh_rows()

        self.calls.call("explained", lambda: loaders.newest_explanations(
            self.studio, sae_id, fa_id or ""), done, self.show_error)

    def table_menu(self) -> QMenu:
        """The table's context menu: auto-interpretation of the selected rows."""
        menu = QMenu(self)
        self.explainer.add_actions(menu, self.table.selected_features())
        return menu

    def _detail_loaded(self, got) -> None:
        detail, ann, in_lists, topics = got
        if detail.feature != self.state.feature:
            return
        self.detail_stack.setCurrentWidget(self.pages)
        self.detail.source_note = self.state.source_note()
        self.detail.topics = topics
        self.detail.set_detail(detail, self.bundle.n_tokens if self.bundle else 0,
                               self.state.labels())
        self.detail.set_annotation(ann)
        self.detail.set_lists(self.lists, {rec.id for rec in in_lists})
        prompt = self.pages.built("prompt")
        self.detail.set_prompt_marker(prompt.value_of(detail.feature) if prompt else None)
        self.explainer.load(detail.feature)

    # ================================================================== labels & lists

    def _annotate(self, **changes) -> None:
        self.annotations.annotate(**changes)

    def reload_annotations(self) -> None:
        """Labels changed outside the panel (an import): re-read them into the table."""
        self.annotations.reload_annotations()

    def reload_lists(self, then=None) -> None:
        self.annotations.reload_lists(then)

    def ask_list_name(self, suggested: str = "") -> str | None:
        name, ok = QInputDialog.getText(self, "New list", "Name of the new list:", text=suggested)
        return name if ok and name.strip() else None

    def _add_current_to_list(self, list_id: str) -> None:
        self.annotations.add_current_to_list(list_id)

    def lasso_to_list(self, polygon) -> None:
        self.annotations.lasso(polygon)

    def _steer(self) -> None:
        if self.state.feature is not None and self.state.sae_id:
            self.steer_feature_requested.emit(self.state.sae_id, int(self.state.feature))

    # ================================================================== ablation

    def ablate_current(self) -> None:
        f, sae_id, fa_id = self.state.feature, self.state.sae_id, self.state.analysis_id
        if f is None:
            return
        self.detail.ablate_btn.setEnabled(False)
        self.detail.ablation_note.setText("Ablating (the model loads once)...")

        def done(results):
            freeze_long_lived()  # the model (torch with it) stays loaded: see kit/gc_freeze
            self.detail.ablate_btn.setEnabled(True)
            if self.state.feature != f:
                return
            lines, summary = ablation_lines(results)
            self.detail.set_ablation(lines, summary)

        def failed(msg):
            self.detail.ablate_btn.setEnabled(True)
            self.detail.ablation_note.setText("")
            self.show_error(msg)

        def work():
            import_torch_quietly()  # the first ablation imports torch: the GUI stays live
            return self.studio.features.ablate(sae_id, f, fa_id)

        self.slow_calls.call("ablate", work, done, failed)

    # ================================================================== map & heatmap

    def _page_changed(self, _i: int) -> None:
        if self._map() is not None and self.pages.currentWidget() is self._map():
            self.load_map()

    def load_map(self) -> None:
        if (self.bundle is None or self._map() is None
                or self.pages.currentWidget() is not self._map()):
            return
        sae_id, method = self.state.sae_id, self.map_page.method.currentData()
        maps = self.studio.feature_maps
        self.calls.call("map", lambda: (maps.load_map(sae_id, method),
                                        maps.active_job(sae_id, method)),
                        lambda got: self._map_loaded(method, *got), self.show_error)

    def _map_loaded(self, method: str, coords, running) -> None:
        self.map_page.compute.setEnabled(running is None)
        if coords is None:
            self.state.map_job = running.id if running else None
            self.map_page.show_empty(self.state.map_empty_text(method, running is not None))
            return
        self.map_page.plot.set_points(coords)
        self.map_page.show_plot()
        self.map_page.status.setText(f"{len(coords):,} features")
        self._colour_map()
        self.map_page.plot.mark(self.state.feature)

    def compute_map(self, method: str) -> None:
        try:
            job = self.studio.feature_maps.start_map(self.state.sae_id, method)
        except UserError as exc:
            self.show_error(str(exc))
            return
        self.state.map_job = job.id
        self.map_page.compute.setEnabled(False)
        self.map_page.show_empty("Computing the map (see its progress in the Jobs panel)...")

    def _colour_map(self) -> None:
        plot = self.map_page.plot
        if self.bundle is None or not len(plot.coords):
            return
        t = self.bundle.table
        mode = self.map_page.colour.currentData()
        if mode == "density":
            plot.colour_by_density(t.columns["density"])
        elif mode == "label":
            plot.colour_by_mask(t.columns["label"] != "", "label")
        else:
            members = self.state.members_of(self.map_page.list_box.currentData())
            plot.colour_by_mask(np.isin(t.columns["index"], members), "list")

    def heatmap_features(self, source: str) -> list[int]:
        if source == "selected":
            return self.table.selected_features()
        if source == "shown":
            return [int(i) for i in self.table.model.visible_features()[:200]]
        d = self.detail.detail if self.pages.built("detail") else None
        if d is None:
            return []
        return [d.feature] + [i for i, _ in d.correlated] + [i for i, _ in d.decoder_neighbours]

    def show_heatmap(self, source: str) -> None:
        feats = self.heatmap_features(source)
        sae_id, fa_id = self.state.sae_id, self.state.analysis_id
        what = self.heatmap_page.what.currentData()
        self.calls.call("heatmap",
                        lambda: loaders.load_correlation(self.studio, sae_id, fa_id, feats, what),
                        lambda got: self.heatmap_page.heatmap.set_matrix(*got),
                        self.show_error)

    # ================================================================== lifetime

    def shutdown(self) -> None:
        self._flush_edits()
        self.annotations.close()  # after the writes still queued
        self.calls.close()
        self.slow_calls.close()
        if self.pages.built("prompt") is not None:
            self.pages.built("prompt").shutdown()


def ablation_lines(results) -> tuple[dict[tuple[int, int], str], str]:
    """Hover lines per (row, position) and a one-line summary from ``studio.features.ablate``
    (``AblationResult``s: index i of each list is token i of the row)."""
    lines: dict[tuple[int, int], str] = {}
    deltas = []
    for r in results:
        for i, change in enumerate(r.loss_change):
            if change != change:  # NaN: the last token predicts nothing here
                continue
            deltas.append(change)
            nxt = repr(r.tokens[i + 1]) if i + 1 < len(r.tokens) else "?"
            text = f"feature ablated: loss on the next token {nxt} {change:+.4f}"
            up = r.logit_increase[i] if i < len(r.logit_increase) else []
            down = r.logit_decrease[i] if i < len(r.logit_decrease) else []
            if up:
                text += "\n  logits up: " + ", ".join(f"{t!r} {v:+.2f}" for _, t, v in up[:3])
            if down:
                text += "\n  logits down: " + ", ".join(f"{t!r} {v:+.2f}" for _, t, v in down[:3])
            lines[(r.seq, i)] = text
    mean = float(np.mean(deltas)) if deltas else 0.0
    return lines, (f"ablated on {len(results)} examples: mean loss change {mean:+.4f} "
                   "(hover a token)")


if __name__ == "__main__":  # preview: python -m mistudio.ui.features.tab [DATA_DIR]
    import sys

    from mistudio.ui.app import build_window, create_app

    app = create_app()
    win = build_window(sys.argv[1] if len(sys.argv) > 1 else None)
    win.show()
    win.show_tab("Features")
    app.exec()
