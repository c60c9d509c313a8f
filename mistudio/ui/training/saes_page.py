"""The Training tab's SAE list: every SAE the app holds (trained and imported), and
"Add SAE" (from the catalogue of published SAEs, or from a folder / Hub repo).

The list re-reads the service when an SAE job finishes (training, import, catalogue
download), so a downloaded SAE appears without a restart. The SAEs (hundreds in a large data
folder) are read on a worker thread when the page is first shown, not when the tab opens.
"""

from __future__ import annotations

from PySide6.QtWidgets import (QAbstractItemView, QFileDialog, QHBoxLayout, QHeaderView,
                               QInputDialog, QLabel, QMenu, QMessageBox, QTableWidget,
                               QTableWidgetItem, QToolButton, QVBoxLayout, QWidget)

from mistudio.errors import UserError
from mistudio.ui.kit.background import BackgroundCalls
from mistudio.ui.kit.palette import css, span

COLUMNS = ("Name", "Source", "Architecture", "d_in", "d_sae", "Model", "Hook point", "Id")
#: Job kinds whose completion adds SAEs to the list.
SAE_JOB_KINDS = ("sae.train", "sae.import", "sae.catalogue_download")


class SAEsPage(QWidget):
    def __init__(self, studio, bridge=None, parent: QWidget | None = None):
        super().__init__(parent)
        self.studio = studio
        self.browser = None
        self.add_btn = QToolButton()
        self.add_btn.setText("Add SAE")
        self.add_btn.setPopupMode(QToolButton.InstantPopup)
        menu = QMenu(self.add_btn)
        self.catalogue_action = menu.addAction("From the catalogue...", self.open_catalogue)
        menu.addAction("From a folder...", self._import_folder)
        menu.addAction("From a Hugging Face repo...", self._import_repo)
        self.add_btn.setMenu(menu)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.Stretch)
        self.table.verticalHeader().setVisible(False)
        self.empty = QLabel("Reading the SAEs…")
        self.empty.setStyleSheet(css("text.muted", "padding: 12px"))
        self.message = QLabel()
        self.message.setWordWrap(True)
        top = QHBoxLayout()
        top.addWidget(QLabel("<b>SAEs</b> (trained and imported)"))
        top.addStretch(1)
        top.addWidget(self.add_btn)
        lay = QVBoxLayout(self)
        lay.addLayout(top)
        lay.addWidget(self.empty)
        lay.addWidget(self.table, 1)
        lay.addWidget(self.message)
        if bridge is not None:
            bridge.status.connect(self._on_status)
        self._calls = BackgroundCalls(self, name="saes-page")
        self.loaded = False  # the list was read at least once
        self._wanted = False  # read when first shown

    def showEvent(self, event) -> None:
        super().showEvent(event)
        if not self._wanted:
            self.refresh()

    def refresh(self) -> None:
        """Read the SAEs on this page's worker; the table follows (a newer read wins)."""
        self._wanted = True
        self._calls.call("saes", self.studio.trainings.list_saes, self._show,
                         self._read_failed)

    def _read_failed(self, message: str) -> None:
        self.empty.setText(f"Could not read the SAEs: {message}")
        self.empty.setVisible(True)

    def _show(self, saes: list) -> None:
        self.loaded = True
        self.empty.setText("No SAEs yet: train one, or Add SAE > From the catalogue to "
                           "download a published one.")
        self.empty.setVisible(not saes)
        self.table.setVisible(bool(saes))
        self.table.setRowCount(len(saes))
        for i, s in enumerate(saes):
            source = s.source + (f" ({s.source_ref})" if s.source_ref else "")
            for j, v in enumerate((s.name, source, s.architecture, str(s.d_in), f"{s.d_sae:,}",
                                   s.model_name, s.hook_name, s.id)):
                self.table.setItem(i, j, QTableWidgetItem(v))

    def _on_status(self, job_id: str, payload: dict) -> None:
        if payload.get("status") in ("completed", "failed"):
            job = self.studio.get_job(job_id)
            if job.kind in SAE_JOB_KINDS:
                if payload.get("status") == "failed" and job.kind != "sae.train":
                    self.message.setText(span("error", f"{job.title} failed: {job.error}"))
                if self._wanted:  # not shown yet: read when it is
                    self.refresh()

    def close_calls(self) -> None:
        """Stop the worker (the tab is closing)."""
        self._calls.close()

    # ------------------------------------------------------------------ adding

    def open_catalogue(self):
        from mistudio.ui.training.catalogue_browser import CatalogueBrowser

        if self.browser is None:
            self.browser = CatalogueBrowser(self.studio, self)
            self.browser.download_started.connect(
                lambda job: self.message.setText(f"{job.title}: follow it in the Jobs panel."))
        self.browser.show()
        self.browser.raise_()
        return self.browser

    def _import_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder with an SAE (SAELens, "
                                                  "sparsify or Gemma Scope files)")
        if folder:
            self._start_import(folder)

    def _import_repo(self) -> None:
        repo, ok = QInputDialog.getText(self, "Import an SAE from the Hub",
                                        "Repository id (owner/name), then a slash and the "
                                        "SAE's folder if it has one:")
        if ok and repo.strip():
            owner_name, _, sub = repo.strip().partition("/")
            name, _, subfolder = sub.partition("/")
            self._start_import(f"{owner_name}/{name}", subfolder)

    def _start_import(self, source: str, subfolder: str = "") -> None:
        try:
            job = self.studio.trainings.start_import(source, subfolder=subfolder)
        except UserError as exc:
            QMessageBox.warning(self, "Cannot import", str(exc))
            return
        self.message.setText(f"{job.title}...")
