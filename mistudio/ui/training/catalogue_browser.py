"""Add SAE > From the catalogue: browse SAELens's published SAEs and download one.

:class:`CatalogueBrowserState` (Qt-free) holds the filters, the matching entries and the
page; :class:`CatalogueBrowser` renders it. The catalogue is parsed on a worker thread
(~2 s the first time); downloads are jobs (``sae.catalogue_download``) that show in the
Jobs panel and end as imported SAEs in the SAE list.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QAbstractItemView, QCheckBox, QComboBox, QDialog, QFileDialog,
                               QHBoxLayout, QHeaderView, QLabel, QLineEdit, QPushButton,
                               QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

from mistudio.errors import UserError
from mistudio.ui.kit.background import BackgroundCalls
from mistudio.ui.kit.palette import css, span

PAGE_ROWS = 100
COLUMNS = ("Release", "SAE id", "Model", "Hook point", "Width", "L0", "Loads?")


@dataclass
class CatalogueBrowserState:
    """Filters, matches and page of the catalogue browser (no Qt)."""

    service: object
    model: str = ""
    release: str = ""
    text: str = ""
    registered_only: bool = False
    loadable_only: bool = False
    page: int = 0
    entries: list = field(default_factory=list)
    selected: str = ""

    def refresh(self) -> None:
        self.entries = self.service.browse(model=self.model, release=self.release,
                                           text=self.text,
                                           registered_only=self.registered_only,
                                           loadable_only=self.loadable_only)
        self.page = min(self.page, max(0, self.pages() - 1))
        if self.selected and not any(e.key == self.selected for e in self.entries):
            self.selected = ""

    def pages(self) -> int:
        return max(1, -(-len(self.entries) // PAGE_ROWS))

    def rows(self) -> list:
        return self.entries[self.page * PAGE_ROWS:(self.page + 1) * PAGE_ROWS]

    def model_choices(self) -> list[tuple[str, str]]:
        """(label, Hub id) of every model in the catalogue, the user's registered ones first."""
        return [(f"★ {m}" if mine else m, m) for m, mine in self.service.model_choices()]

    def release_choices(self) -> list[str]:
        cat = self.service.catalogue()
        return sorted({e.release for e in cat.filter(model=self.model)})

    def selected_entry(self):
        return next((e for e in self.entries if e.key == self.selected), None)

    def summary(self) -> str:
        first = self.page * PAGE_ROWS
        shown = len(self.rows())
        return (f"{len(self.entries):,} SAEs match; {first + 1 if shown else 0:,}-"
                f"{first + shown:,} shown (page {self.page + 1} of {self.pages()})")


class CatalogueBrowser(QDialog):
    """The catalogue window. ``download_started(job)`` after a download is submitted."""

    download_started = Signal(object)

    def __init__(self, studio, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Add SAE from the catalogue")
        self.resize(1100, 640)
        self.studio = studio
        self.state = CatalogueBrowserState(studio.sae_catalogue)
        self.loaded = False
        self.source_label = QLabel("Reading the catalogue...")
        self.source_label.setWordWrap(True)
        self.source_label.setStyleSheet(css("text.secondary"))
        self.file_btn = QPushButton("Use a newer file...")
        self.file_btn.setToolTip("Read SAELens's pretrained_saes.yaml from a file (e.g. "
                                 "sae_lens/pretrained_saes.yaml of a newer sae-lens).")
        self.file_btn.clicked.connect(self._choose_file)
        self.model_combo = QComboBox()
        self.release_combo = QComboBox()
        self.search = QLineEdit()
        self.search.setPlaceholderText("Search release, id, hook (e.g. layer_8 16k)")
        self.mine = QCheckBox("Only my models")
        self.mine.setToolTip("Only SAEs of models registered in the Models tab.")
        self.loadable = QCheckBox("Only loadable")
        self.loadable.setToolTip("Hide SAEs this app cannot load (other conversions, hook_z).")
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(1, QHeaderView.Stretch)
        self.table.verticalHeader().setVisible(False)
        self.summary = QLabel()
        self.prev_btn, self.next_btn = QPushButton("< Previous"), QPushButton("Next >")
        self.details = QLabel("Select an SAE.")
        self.details.setWordWrap(True)
        self.details.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.details.setMinimumHeight(52)  # room for the reason an SAE cannot load
        self.download_btn = QPushButton("Download and import")
        self.download_btn.setEnabled(False)
        close = QPushButton("Close")
        close.clicked.connect(self.reject)

        top = QHBoxLayout()
        top.addWidget(self.source_label, 1)
        top.addWidget(self.file_btn)
        filters = QHBoxLayout()
        for label, w in (("Model:", self.model_combo), ("Release:", self.release_combo)):
            filters.addWidget(QLabel(label))
            filters.addWidget(w, 1)
        filters.addWidget(self.search, 1)
        filters.addWidget(self.mine)
        filters.addWidget(self.loadable)
        pager = QHBoxLayout()
        pager.addWidget(self.summary, 1)
        pager.addWidget(self.prev_btn)
        pager.addWidget(self.next_btn)
        bottom = QHBoxLayout()
        bottom.addWidget(self.details, 1)
        bottom.addWidget(self.download_btn)
        bottom.addWidget(close)
        lay = QVBoxLayout(self)
        lay.addLayout(top)
        lay.addLayout(filters)
        lay.addWidget(self.table, 1)
        lay.addLayout(pager)
        lay.addLayout(bottom)

        self.model_combo.currentIndexChanged.connect(self._on_model)
        self.release_combo.currentIndexChanged.connect(self._on_filters)
        self.search.textChanged.connect(self._on_filters)
        self.mine.toggled.connect(self._on_filters)
        self.loadable.toggled.connect(self._on_filters)
        self.prev_btn.clicked.connect(lambda: self.go_to_page(self.state.page - 1))
        self.next_btn.clicked.connect(lambda: self.go_to_page(self.state.page + 1))
        self.table.itemSelectionChanged.connect(self._on_selection)
        self.download_btn.clicked.connect(self.download_selected)
        self._set_busy(True)
        self._calls = BackgroundCalls(self, name="sae-catalogue")
        self.finished.connect(lambda *_: self._calls.close(wait=False))
        self._calls.call("catalogue", self.state.service.catalogue, self._on_loaded,
                         self._on_load_failed)

    # ------------------------------------------------------------------ loading

    def _set_busy(self, busy: bool) -> None:
        for w in (self.model_combo, self.release_combo, self.search, self.mine, self.loadable,
                  self.table, self.file_btn):
            w.setEnabled(not busy)

    def _on_load_failed(self, message: str) -> None:
        self._set_busy(False)
        self.source_label.setText(f"<b>The catalogue could not be read:</b> {message}")

    def _on_loaded(self, catalogue) -> None:
        self._set_busy(False)
        self.source_label.setText(f"{len(catalogue.entries):,} SAEs. Source: "
                                  f"{catalogue.description}.")
        self._updating = True
        self.model_combo.clear()
        self.model_combo.addItem("All models", "")
        for label, model in self.state.model_choices():
            self.model_combo.addItem(label, model)
        self._updating = False
        self.loaded = True
        self._on_model()

    def _choose_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "SAELens pretrained_saes.yaml", "",
                                              "YAML (*.yaml *.yml);;All files (*)")
        if path:
            self.use_file(path)

    def use_file(self, path: str) -> None:
        """Read the catalogue from ``path`` from now on (parsed on the worker thread)."""
        self._set_busy(True)
        self.source_label.setText(f"Reading {path}...")
        self._calls.call("catalogue", lambda: self.state.service.set_catalogue_file(path),
                         self._on_loaded, self._on_load_failed)

    # ------------------------------------------------------------------ filters

    _updating = False

    def _on_model(self, *_):
        if self._updating or not self.loaded:
            return
        self.state.model = self.model_combo.currentData() or ""
        self._updating = True
        self.release_combo.clear()
        self.release_combo.addItem("All releases", "")
        for r in self.state.release_choices():
            self.release_combo.addItem(r, r)
        self._updating = False
        self._on_filters()

    def _on_filters(self, *_):
        if self._updating or not self.loaded:
            return
        s = self.state
        s.release = self.release_combo.currentData() or ""
        s.text = self.search.text()
        s.registered_only = self.mine.isChecked()
        s.loadable_only = self.loadable.isChecked()
        s.page = 0
        s.refresh()
        self.render()

    def go_to_page(self, page: int) -> None:
        self.state.page = max(0, min(page, self.state.pages() - 1))
        self.render()

    # ------------------------------------------------------------------ rendering

    def render(self) -> None:
        rows = self.state.rows()
        self.table.blockSignals(True)  # the rows change under the selection
        self.table.clearSelection()
        self.table.setRowCount(len(rows))
        for i, e in enumerate(rows):
            hook = e.hook_name + (" (from the name)" if e.hook_inferred and e.hook_name else "")
            values = (e.release, e.sae_id, e.hub_model, hook,
                      f"{e.d_sae:,}" if e.d_sae else "?",
                      f"{e.l0:g}" if e.l0 is not None else "", "yes" if e.loadable else "no")
            for j, v in enumerate(values):
                item = QTableWidgetItem(v)
                if j == 0:
                    item.setData(Qt.UserRole, e.key)
                if not e.loadable:
                    item.setForeground(Qt.darkGray)
                    item.setToolTip(f"Cannot be loaded: {e.reason}")
                self.table.setItem(i, j, item)
            if e.key == self.state.selected:
                self.table.selectRow(i)
        self.table.blockSignals(False)
        self.summary.setText(self.state.summary())
        self.prev_btn.setEnabled(self.state.page > 0)
        self.next_btn.setEnabled(self.state.page < self.state.pages() - 1)
        self._show_details()

    def select(self, key: str) -> None:
        for i in range(self.table.rowCount()):
            if self.table.item(i, 0).data(Qt.UserRole) == key:
                self.table.selectRow(i)
                self.state.selected = key
                self._show_details()
                return

    def _on_selection(self) -> None:
        rows = self.table.selectionModel().selectedRows()
        self.state.selected = self.table.item(rows[0].row(), 0).data(Qt.UserRole) if rows else ""
        self._show_details()

    def _show_details(self) -> None:
        e = self.state.selected_entry()
        if e is None:
            self.details.setText("Select an SAE.")
            self.download_btn.setEnabled(False)
            return
        have = self.state.service.imported(e.key)
        parts = [f"<b>{e.key}</b>: {e.repo_id}/{e.path} for {e.hub_model}"
                 + (f" (catalogue name {e.model})" if e.model != e.hub_model else "")]
        if e.variance_explained is not None:
            parts.append(f"variance explained {e.variance_explained:g}")
        if e.neuronpedia:
            parts.append(f"Neuronpedia {e.neuronpedia}")
        if have:
            parts.append(f"already imported as {have[0].id}")
        if not e.loadable:
            parts.append(span("error", f"cannot be loaded: {e.reason}"))
        self.details.setText("; ".join(parts) + ".")
        self.download_btn.setEnabled(e.loadable)
        self.download_btn.setToolTip("" if e.loadable else e.reason)

    # ------------------------------------------------------------------ download

    def download_selected(self):
        e = self.state.selected_entry()
        if e is None:
            return None
        try:
            job = self.state.service.start_download(e.key)
        except UserError as exc:
            self.details.setText(span("error", str(exc)))
            return None
        self.details.setText(f"Downloading {e.key}: follow it in the Jobs panel; it appears "
                             "in the SAE list when done.")
        self.download_started.emit(job)
        return job


__all__ = ["CatalogueBrowser", "CatalogueBrowserState"]
