"""The Datasets tab: bring in text, tokenize it for a model, see exactly what it will be fed.

Left: the datasets as cards (status, documents, tokenizations, size on disk, source) with
Add; files or folders dropped on the tab open the Add dialog. Right: Tokenize / Rename /
Delete for the selected dataset, and its Overview (provenance, tokenizations), Documents (paged, searchable),
Tokens (sequences as chips) and Statistics. Imports and tokenizations run as jobs; their
progress and errors show in the banner above the list and stay there until dismissed.

The datasets and their tokenizations (hundreds in a long-used data folder) are read on the
tab's background thread (``BackgroundCalls``); the selected dataset's pages draw from that
read, so a click reads nothing but the page of documents or sequences it shows.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QHBoxLayout, QInputDialog, QLabel, QMessageBox, QProgressBar,
                               QPushButton, QSplitter, QTabWidget, QTextBrowser, QVBoxLayout,
                               QWidget)

from mistudio.app.datasets import DatasetService
from mistudio.errors import UserError
from mistudio.paths import human_bytes
from mistudio.ui.datasets.browsers import DocumentsBrowser, TokensBrowser
from mistudio.ui.datasets.cards import DatasetCardsView
from mistudio.ui.datasets.dialogs import AddDatasetDialog, TokenizeDialog
from mistudio.ui.datasets.state import ENDED, Banner, DatasetsState, overview_html
from mistudio.ui.datasets.stats_view import StatsView
from mistudio.ui.datasets.table_models import DatasetListModel
from mistudio.ui.kit.background import BackgroundCalls
from mistudio.ui.kit.palette import colour, css

EMPTY_TEXT = ("No datasets yet. <b>Add dataset…</b> imports local files (.txt, .jsonl, .json, "
              ".csv, .parquet; or drop them here) or a Hugging Face dataset; <b>Add demo "
              "corpus</b> works offline.")
READING_TEXT = "Reading the datasets…"


def read_datasets(studio) -> tuple[list, list]:
    """Every dataset and every tokenization (background thread): two queries."""
    return studio.datasets.list(), studio.datasets.tokenizations()

class JobBanner(QWidget):
    """Progress of the datasets jobs, and the last error (kept until dismissed): draws the
    state's :class:`~mistudio.ui.datasets.state.Banner`."""

    def __init__(self, studio, state: DatasetsState, parent=None):
        super().__init__(parent)
        self.studio = studio
        self.state = state
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.bar = QProgressBar()
        self.bar.setMaximumWidth(180)
        self.cancel_btn = QPushButton("Cancel")
        self.cancel_btn.clicked.connect(self._cancel)
        self.dismiss_btn = QPushButton("Dismiss")
        self.dismiss_btn.clicked.connect(self._dismiss)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(6, 4, 6, 4)
        lay.addWidget(self.label, 1)
        lay.addWidget(self.bar)
        lay.addWidget(self.cancel_btn)
        lay.addWidget(self.dismiss_btn)
        self.setVisible(False)

    def render(self) -> None:
        banner: Banner = self.state.banner
        if not banner.visible:
            self.setVisible(False)
            return
        running = banner.kind == "running"
        if running:
            self.setStyleSheet(f"background: {colour('banner.info.bg')}; border-radius: 4px")
            if banner.fraction is None:
                self.bar.setRange(0, 0)
            else:
                self.bar.setRange(0, 1000)
                self.bar.setValue(int(banner.fraction * 1000))
        else:
            self.setStyleSheet(f"background: {colour('banner.error.bg')}; "
                               f"color: {colour('banner.error.fg')}; border-radius: 4px")
        self.label.setText(banner.text)
        self.bar.setVisible(running)
        self.cancel_btn.setVisible(running)
        self.dismiss_btn.setVisible(not running)
        self.setVisible(True)

    def _dismiss(self) -> None:
        self.state.dismiss()
        self.render()

    def _cancel(self) -> None:
        if self.state.banner.job_id:
            self.studio.cancel_job(self.state.banner.job_id)


class DatasetsTab(QWidget):
    def __init__(self, studio, bridge, parent: QWidget | None = None):
        super().__init__(parent)
        self.studio = studio
        self.bridge = bridge
        self.state = DatasetsState()  # what is listed, selected, running; the widgets draw it
        self.add_dialog: AddDatasetDialog | None = None
        self.tokenize_dialog: TokenizeDialog | None = None
        self.setAcceptDrops(True)
        self.calls = BackgroundCalls(self, name="datasets-tab")  # the list's reads
        self._loaded = False
        self._filling = False  # the list is being filled: its selection is not a click
        self._tokenizations: dict[str, list] = {}  # dataset id -> its tokenizations, as read
        self._wanted: str | None = None  # a dataset to select once the list has it
        self._wanted_tokenization: str | None = None  # likewise, on the Tokens page

        # left: list and actions
        self.add_btn = QPushButton("Add dataset…")
        self.add_btn.clicked.connect(lambda: self.open_add_dialog())
        self.demo_btn = QPushButton("Add demo corpus")
        self.demo_btn.setToolTip("10,033 Wikipedia summaries with topics (offline, CC BY-SA 4.0); "
                                 "shows it if it is already imported")
        self.demo_btn.clicked.connect(self.add_demo)
        # the class's answer: building the service sweeps the datasets table, which the
        # first list read does on the tab's thread
        self.demo_btn.setVisible(DatasetService.demo_available())
        self.tokenize_btn = QPushButton("Tokenize…")
        self.tokenize_btn.clicked.connect(self.open_tokenize_dialog)
        self.rename_btn = QPushButton("Rename…")
        self.rename_btn.clicked.connect(self.rename_selected)
        self.delete_btn = QPushButton("Delete…")
        self.delete_btn.clicked.connect(lambda: self.delete_selected(confirm=True))
        self.banner = JobBanner(studio, self.state)
        self.list_model = DatasetListModel(self)
        self.list_view = DatasetCardsView()
        self.list_view.setModel(self.list_model)
        self.list_view.selectionModel().currentRowChanged.connect(self._on_select)
        self.empty = QLabel(READING_TEXT)  # the empty state once the list is read
        self.empty.setWordWrap(True)
        self.empty.setStyleSheet(css("text.muted", "padding: 10px"))
        buttons = QHBoxLayout()
        for b in (self.add_btn, self.demo_btn):
            buttons.addWidget(b)
        buttons.addStretch(1)
        left = QWidget()
        ll = QVBoxLayout(left)
        ll.setContentsMargins(0, 0, 0, 0)
        ll.addLayout(buttons)
        ll.addWidget(self.banner)
        ll.addWidget(self.empty)
        ll.addWidget(self.list_view, 1)
        actions = QHBoxLayout()  # actions on the selected dataset, above its details
        self.title = QLabel()
        self.title.setStyleSheet("font-weight: bold; font-size: 14px")
        actions.addWidget(self.title, 1)
        for b in (self.tokenize_btn, self.rename_btn, self.delete_btn):
            actions.addWidget(b)

        # right: details
        self.overview = QTextBrowser()
        self.overview.setOpenExternalLinks(False)
        self.documents = DocumentsBrowser(studio)
        self.tokens = TokensBrowser(studio)
        self.stats = StatsView()
        self.stats.filter_requested.connect(self._filter_documents)
        self.detail = QTabWidget()
        self.detail.addTab(self.overview, "Overview")
        self.detail.addTab(self.documents, "Documents")
        self.detail.addTab(self.tokens, "Tokens")
        self.detail.addTab(self.stats, "Statistics")
        self.tokens.combo.currentIndexChanged.connect(lambda _i: self._show_stats())
        self.tokens.delete_requested.connect(self.delete_tokenization)

        right = QWidget()
        rl = QVBoxLayout(right)
        rl.setContentsMargins(0, 0, 0, 0)
        rl.addLayout(actions)
        rl.addWidget(self.detail, 1)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(left)
        split.addWidget(right)
        split.setStretchFactor(1, 1)
        split.setSizes([400, 900])
        lay = QVBoxLayout(self)
        lay.addWidget(split)

        bridge.status.connect(self._on_status)
        bridge.progress.connect(self._on_progress)
        self.refresh()

    @property
    def selected_id(self) -> str | None:
        return self.state.selected_id

    # ------------------------------------------------------------------ list

    def refresh(self, select: str | None = None, *, tokenization: str | None = None) -> None:
        """Read the datasets and tokenizations again (in the background); ``select`` a
        dataset and show one of its ``tokenization``s once they are listed."""
        if select:
            self._wanted = select
        if tokenization:
            self._wanted_tokenization = tokenization
        studio = self.studio
        self.calls.call("datasets", lambda: read_datasets(studio), self._show_datasets,
                        self._show_banner_error)

    def is_loaded(self) -> bool:
        """The list shows what was last asked for (no read of it is on its way)."""
        return self._loaded and not self.calls.busy()

    def _show_datasets(self, result) -> None:
        records, tokenizations = result
        self._loaded = True
        self._tokenizations = {}
        for t in tokenizations:
            self._tokenizations.setdefault(t.dataset_id, []).append(t)
        chosen = self.state.set_records(records, keep=self._wanted)
        wanted_tokenization = self._wanted_tokenization
        self._wanted = self._wanted_tokenization = None
        self.list_model.set_records(records, tokenizations)
        self.empty.setText(EMPTY_TEXT)
        self.empty.setVisible(not records)
        if chosen is not None:  # the card shows selected; the details are drawn once, below
            self._filling = True
            try:
                self.list_view.select_row(self.list_model.row_of(chosen))
            finally:
                self._filling = False
        self._select(chosen, force=True)
        if chosen is not None:
            self._sync_tokens(chosen, wanted_tokenization)
        self._sync_buttons()

    def _sync_tokens(self, dataset_id: str, select: str | None = None) -> None:
        """The Tokens page lists the dataset's ready tokenizations as last read."""
        ready = [t.id for t in self._tokenizations_of(dataset_id) if t.status == "ready"]
        combo = self.tokens.combo
        shown = [combo.itemData(i) for i in range(combo.count())]
        if select or ready != shown:
            self.tokens.set_tokenizations(self._tokenizations_of(dataset_id), select=select)
            self._show_stats()  # of the tokenization now chosen

    def _on_select(self, current, _previous) -> None:
        if current.isValid() and not self._filling:
            self._select(self.list_model.records[current.row()].id)

    def _select(self, dataset_id: str | None, *, force: bool = False) -> None:
        if dataset_id == self.state.selected_id and not force:
            return  # already shown (no read)
        ds = self.state.record(dataset_id)  # as the list read it: no query per click
        changed = self.state.select(dataset_id, ds.status if ds else None, force=force)
        if changed is None:
            return
        self.overview.setHtml(overview_html(ds, self._tokenizations_of(ds.id) if ds else []))
        if changed:
            self.documents.set_dataset(ds)
            self.tokens.set_tokenizations(self._tokenizations_of(ds.id) if ds else [])
        self._show_stats()
        self._sync_buttons()

    def _tokenizations_of(self, dataset_id: str) -> list:
        """Its tokenizations as the last list read found them (none if the dataset just
        went away: a failed import removes its row while the list still shows it)."""
        return list(self._tokenizations.get(dataset_id, []))

    def _get(self, dataset_id: str | None):
        if not dataset_id:
            return None
        try:
            return self.studio.datasets.get(dataset_id)
        except UserError:
            return None

    def current(self):
        """The selected dataset as the database has it now (for actions on it)."""
        return self._get(self.selected_id)

    def _sync_buttons(self) -> None:
        allowed = self.state.actions(self.state.record(self.selected_id))
        self.title.setText(allowed.title)
        self.tokenize_btn.setEnabled(allowed.tokenize)
        self.rename_btn.setEnabled(allowed.rename)
        self.delete_btn.setEnabled(allowed.delete)

    def _show_banner_error(self, text: str) -> None:
        self.state.job_failed(text)
        self.banner.render()

    def _show_stats(self) -> None:
        ds = self.state.record(self.selected_id)
        if ds is None or ds.status != "ready":
            return
        tok = self.tokens.tokenization
        self.stats.show_stats(ds, tok if tok is not None and tok.dataset_id == ds.id else None)

    def _filter_documents(self, column: str, value: str) -> None:
        self.documents.set_filter(column, value)
        self.detail.setCurrentWidget(self.documents)

    # ------------------------------------------------------------------ actions

    def open_add_dialog(self, path: str = "") -> AddDatasetDialog:
        dlg = AddDatasetDialog(self.studio, self, path=path)
        dlg.accepted.connect(lambda: self.start_import(dlg.source(), dlg.name()))
        self.add_dialog = dlg
        dlg.open()
        return dlg

    def start_import(self, source: dict, name: str | None = None):
        try:
            rec, job = self.studio.datasets.add(source, name=name)
        except UserError as exc:
            self._show_banner_error(f"Cannot import: {exc}")
            return None
        self.state.job_running(job.id, f"Importing {rec.name}…", None)
        self.banner.render()
        self.refresh(select=rec.id)
        return job

    def add_demo(self):
        """Import the demo corpus, or show it if the whole corpus is already here (a second
        copy would only take space; the CLI or the Add dialog's limit can still make one)."""
        shown = self.state.existing_demo()
        if shown is not None:
            self.refresh(select=shown)
            self.detail.setCurrentWidget(self.overview)
            return None
        return self.start_import({"kind": "demo"})

    def open_tokenize_dialog(self) -> TokenizeDialog | None:
        ds = self.current()
        if ds is None or ds.status != "ready":
            return None
        dlg = TokenizeDialog(self.studio, ds, self)
        dlg.accepted.connect(lambda: self.start_tokenize(ds.id, dlg.tokenizer(), dlg.settings(),
                                                         force=dlg.force.isChecked()))
        self.tokenize_dialog = dlg
        dlg.open()
        return dlg

    def start_tokenize(self, dataset_id: str, tokenizer: str, settings: dict, *,
                       force: bool = False):
        try:
            tok, job = self.studio.datasets.tokenize(dataset_id, tokenizer, settings, force=force)
        except UserError as exc:
            self._show_banner_error(f"Cannot tokenize: {exc}")
            return None
        if job is None:  # already made: show it
            self.refresh(select=dataset_id, tokenization=tok.id)
            self.detail.setCurrentWidget(self.tokens)
            return None
        self.state.job_running(job.id, f"Tokenizing with {tok.tokenizer}…", 0.0)
        self.banner.render()
        return job

    def rename_selected(self) -> None:
        ds = self.current()
        if ds is None:
            return
        name, ok = QInputDialog.getText(self, "Rename dataset", "Name", text=ds.name)
        if ok:
            try:
                self.studio.datasets.rename(ds.id, name)
            except UserError as exc:
                self._show_banner_error(str(exc))
            self.refresh()

    def delete_selected(self, *, confirm: bool = True) -> bool:
        ds = self.current()
        if ds is None:
            return False
        n_tok = len(self._tokenizations_of(ds.id))
        if confirm and QMessageBox.question(
                self, "Delete dataset",
                f"Delete '{ds.name}' ({human_bytes(ds.size_bytes or 0)}) and its {n_tok} "
                "tokenization(s) from the data folder? Your original files are not touched.",
                QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                QMessageBox.StandardButton.No) != QMessageBox.StandardButton.Yes:
            return False
        try:
            self.studio.datasets.delete(ds.id)
        except UserError as exc:
            self._show_banner_error(str(exc))
            return False
        self.state.forget_selection()
        self.refresh()
        return True

    def delete_tokenization(self, tokenization_id: str, *, confirm: bool = True) -> bool:
        try:
            tok = self.studio.datasets.get_tokenization(tokenization_id)
        except UserError as exc:
            self._show_banner_error(str(exc))
            return False
        if confirm and QMessageBox.question(
                self, "Delete tokenization",
                f"Delete the tokenization {tok.id} ({tok.tokenizer}, context {tok.seq_len}, "
                f"{human_bytes(tok.size_bytes or 0)})? The dataset's text and activation sets "
                "extracted from it are kept.",
                QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                QMessageBox.StandardButton.No) != QMessageBox.StandardButton.Yes:
            return False
        try:
            self.studio.datasets.delete_tokenization(tok.id)
        except UserError as exc:
            self._show_banner_error(str(exc))
            return False
        # gone: the Tokens page drops it now, the cards follow the list read
        self._tokenizations[tok.dataset_id] = [
            t for t in self._tokenizations_of(tok.dataset_id) if t.id != tok.id]
        self.tokens.tokenization = None
        if tok.dataset_id == self.selected_id:
            self._sync_tokens(tok.dataset_id)
        self.refresh()
        return True

    # ------------------------------------------------------------------ drag and drop

    def dragEnterEvent(self, event) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        paths = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if paths:
            event.acceptProposedAction()
            self.open_add_dialog(paths[0])

    # ------------------------------------------------------------------ jobs

    def _job(self, job_id: str):
        try:
            return self.studio.get_job(job_id)
        except UserError:
            return None

    def _on_progress(self, job_id: str, payload: dict) -> None:
        job = self._job(job_id)
        if not self.state.on_progress(job, payload):
            return
        self.banner.render()
        self.list_model.set_progress(job.target, self.state.progress.get(job.target))

    def _on_status(self, job_id: str, payload: dict) -> None:
        status = payload.get("status")
        if status not in ENDED:
            return
        job = self._job(job_id)
        if not self.state.on_ended(job, status):
            return
        self.list_model.set_progress(job.target, None)
        self.banner.render()
        made = None
        if job.kind == "datasets.tokenize" and status == "completed" and job.result:
            if job.target == self.selected_id:
                made = job.result.get("tokenization_id")
        self.refresh(select=self.selected_id or job.target, tokenization=made)

    # ------------------------------------------------------------------ lifetime

    def shutdown(self) -> None:
        """Stop the background work this tab started (the main window calls it on close)."""
        self.calls.close()
        self.documents.shutdown()

    def closeEvent(self, event) -> None:
        self.shutdown()
        super().closeEvent(event)

    # ------------------------------------------------------------------ screenshots

    def screenshot_states(self):
        """Extra screens for ``mistudio screenshot``: each page of the selected dataset, a
        search, and the Add dialog's Hub page."""
        from mistudio.ui.kit.background import wait_until

        wait_until(self.is_loaded, 30)
        ds = self.current()
        if ds is not None and ds.status == "ready":
            self.detail.setCurrentWidget(self.documents)
            self.documents.view.selectRow(0)
            yield "documents", None
            words = (self.documents.full_text.toPlainText().split() or ["the"])
            self.documents.search_edit.setText(max(words[:12], key=len).strip(".,;:()"))
            self.documents.run_search()
            wait_until(lambda: not self.documents.searching, 30)
            yield "documents-search", None
            self.documents.clear_search()
            self.detail.setCurrentWidget(self.tokens)
            yield "tokens", None
            self.detail.setCurrentWidget(self.stats)
            yield "statistics", None
            self.detail.setCurrentWidget(self.overview)
        dlg = self.open_add_dialog()
        dlg.tabs.setCurrentIndex(1)
        dlg.hub_id_edit.setText("roneneldan/TinyStories")
        yield "add-dialog-hub", dlg
        dlg.tabs.setCurrentIndex(0)
        yield "add-dialog-local", dlg
        dlg.reject()


if __name__ == "__main__":  # preview: python -m mistudio.ui.datasets.tab
    import sys
    import tempfile

    from PySide6.QtWidgets import QApplication

    from mistudio.secrets_test_support import MemorySecrets
    from mistudio.studio import Studio
    from mistudio.ui.workers import JobBridge, qt_thread_factory

    app = QApplication(sys.argv)
    studio = Studio(tempfile.mkdtemp(prefix="mistudio-preview-"), secrets=MemorySecrets(),
                    thread_factory=qt_thread_factory)
    bridge = JobBridge()
    studio.add_job_listener(bridge)
    tab = DatasetsTab(studio, bridge)
    if studio.datasets.demo_available():
        tab.add_demo()
    tab.resize(1200, 800)
    tab.show()
    code = app.exec()
    studio.close(timeout=5)
    sys.exit(code)
