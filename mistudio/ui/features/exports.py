"""The Features tab's export / import menu: labels (JSON/CSV), Neuronpedia JSON, feature
vectors, and images of the visible view. Writes run off the GUI thread with progress shown
in the tab's message line."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QFileDialog, QMenu

from mistudio.ui.features import image_export


class FeatureExports:
    def __init__(self, tab):
        self.tab = tab
        self.last_path: Path | None = None

    def menu(self) -> QMenu:
        m = QMenu(self.tab)
        m.addAction("Export labels (JSON / CSV)...", self.export_labels_dialog)
        m.addAction("Import labels (JSON / CSV)...", self.import_labels_dialog)
        m.addSeparator()
        m.addAction("Export selected features as Neuronpedia JSON (folder)...",
                    self.neuronpedia_dialog)
        m.addAction("Export selected features' vectors...", self.vectors_dialog)
        m.addSeparator()
        m.addAction("Save the visible view as PNG / SVG...", self.image_dialog)
        return m

    # ------------------------------------------------------------------ what to export

    def selected(self) -> list[int] | None:
        """The table's selected rows; None (= all features) when nothing is selected."""
        rows = self.tab.table.selected_features()
        return rows or None

    def visible_view(self):
        page = self.tab.pages.currentWidget()
        if page is self.tab.map_page:
            return self.tab.map_page.plot
        if page is self.tab.heatmap_page:
            return self.tab.heatmap_page.heatmap
        if page is self.tab.prompt:
            return self.tab.prompt.tokens
        return self.tab.detail.scroll.widget()

    # ------------------------------------------------------------------ actions (testable)

    def _run(self, what: str, fn, after=None) -> None:
        tab = self.tab
        tab.show_message(f"{what}...")

        def done(path):
            self.last_path = Path(path) if path is not None else None
            tab.show_message(f"{what}: done ({path}).", "done")
            if after is not None:
                after()

        def failed(msg):
            tab.show_error(f"{what} failed: {msg}")

        tab.slow_calls.call("export", fn, done, failed)

    def export_labels(self, path: str | Path) -> None:
        sae_id, sel = self.tab.state.sae_id, self.selected()
        labels = self.tab.studio.feature_labels

        def work():
            n = labels.export_labels(sae_id, path, indices=sel)
            return f"{path}, {n} features"

        self._run("Exporting labels", work)

    def import_labels(self, path: str | Path) -> None:
        sae_id = self.tab.state.sae_id
        labels = self.tab.studio.feature_labels

        def work():
            got = labels.import_labels(sae_id, path)
            return f"{got['features']} features from {Path(path).name}"

        self._run("Importing labels", work, after=self.tab.reload_annotations)

    def export_neuronpedia(self, path: str | Path) -> None:
        sae_id, fa_id, sel = self.tab.state.sae_id, self.tab.state.analysis_id, self.selected()
        svc = self.tab.studio.features
        self._run("Exporting Neuronpedia JSON",
                  lambda: svc.export_neuronpedia(sae_id, path, analysis=fa_id, features=sel))

    def export_vectors(self, path: str | Path) -> None:
        sae_id, sel = self.tab.state.sae_id, self.selected()
        fmt = Path(path).suffix.lower().lstrip(".") or "npy"
        svc = self.tab.studio.features
        self._run("Exporting feature vectors",
                  lambda: svc.export_vectors(sae_id, path, fmt=fmt, features=sel))

    def save_image(self, path: str | Path) -> None:
        """The visible view as PNG / SVG: painted here a strip per event-loop turn (widgets
        paint on the GUI thread only), encoded and written on the worker (a long PNG takes
        ~150 ms to encode)."""
        self.tab.show_message("Saving the view...")
        image_export.CaptureInTurns(
            self.visible_view(), path, parent=self.tab,
            on_done=lambda shot: self._run("Saving the view",
                                           lambda: image_export.write(shot, path)))

    # ------------------------------------------------------------------ dialogs

    def _ask(self, title: str, filters: str, suffix: str) -> str | None:
        path, _ = QFileDialog.getSaveFileName(self.tab, title, f"features.{suffix}", filters)
        return path or None

    def export_labels_dialog(self) -> None:
        if self.tab.state.sae_id and (p := self._ask("Export labels", "JSON (*.json);;CSV (*.csv)",
                                                     "json")):
            self.export_labels(p)

    def import_labels_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self.tab, "Import labels", "",
                                              "Labels (*.json *.csv)")
        if path and self.tab.state.sae_id:
            self.import_labels(path)

    def neuronpedia_dialog(self) -> None:
        # a folder: the export writes batch-<i>.json files, as SAEDashboard's converter does
        if self.tab.state.analysis_id and (p := QFileDialog.getExistingDirectory(
                self.tab, "Folder for the Neuronpedia batch files")):
            self.export_neuronpedia(p)

    def vectors_dialog(self) -> None:
        if self.tab.state.sae_id and (p := self._ask(
                "Feature vectors", "NumPy (*.npy);;safetensors (*.safetensors);;JSON (*.json)",
                "npy")):
            self.export_vectors(p)

    def image_dialog(self) -> None:
        if p := self._ask("Save view", "PNG image (*.png);;SVG image (*.svg)", "png"):
            try:
                self.save_image(p)
            except Exception as exc:  # UserError or a paint failure: say it, keep going
                self.tab.show_error(str(exc))
