"""Paged browsers: documents (with search and column filter) and tokenized sequences
(token chips). Only one page is ever in memory; pages come from ``studio.datasets``."""

from __future__ import annotations

import math
import time

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QAbstractItemView, QComboBox, QHBoxLayout, QLabel, QLineEdit,
                               QPlainTextEdit, QPushButton, QScrollArea, QSplitter, QTableView,
                               QVBoxLayout, QWidget)

from mistudio.errors import UserError
from mistudio.ui.datasets.table_models import DocumentPageModel, SequencePageModel
from mistudio.ui.datasets.token_chips import TokenChipsView
from mistudio.ui.kit.background import BackgroundCalls, BackgroundTask
from mistudio.ui.kit.palette import css
from mistudio.ui.kit.labels import hint_label

DOCS_PER_PAGE = 100
SEQS_PER_PAGE = 50
SEARCH_LIMIT = 100_000
SEARCH_CHUNK_ROWS = 65_536  # documents per scan step: the stop latency and batch size


class Pager(QWidget):
    def __init__(self, on_page, parent=None):
        super().__init__(parent)
        self.on_page = on_page
        self.page = 0
        self.n_pages = 0
        self.prev_btn = QPushButton("◀ Previous")
        self.next_btn = QPushButton("Next ▶")
        self.label = QLabel()
        self.jump = QLineEdit()
        self.jump.setFixedWidth(70)
        self.jump.setPlaceholderText("page")
        self.prev_btn.clicked.connect(lambda: self.go(self.page - 1))
        self.next_btn.clicked.connect(lambda: self.go(self.page + 1))
        self.jump.returnPressed.connect(self._jump)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        for w in (self.prev_btn, self.label, self.next_btn, self.jump):
            lay.addWidget(w)
        lay.addStretch(1)

    def _jump(self) -> None:
        try:
            self.go(int(self.jump.text()) - 1)
        except ValueError:
            pass
        self.jump.clear()

    def set_total(self, n_items: int, per_page: int, *, more: bool = False) -> None:
        self.n_pages = max(1, math.ceil(n_items / per_page)) if n_items else 0
        self.per_page = per_page
        self.more = more
        self.page = min(self.page, max(0, self.n_pages - 1))

    def go(self, page: int) -> None:
        if self.n_pages == 0:
            self.page = 0
        else:
            self.page = max(0, min(page, self.n_pages - 1))
        self.refresh_label()
        self.on_page(self.page)

    def refresh_label(self) -> None:
        total = f"{self.n_pages:,}{'+' if getattr(self, 'more', False) else ''}"
        self.label.setText(f"page {self.page + 1 if self.n_pages else 0:,} of {total}")
        self.prev_btn.setEnabled(self.page > 0)
        self.next_btn.setEnabled(self.page + 1 < self.n_pages)


def search_documents(studio, dataset_id: str, query: str, column_equals: dict, limit: int,
                     chunk_rows: int, task) -> bool:
    """One search over a dataset, run by the UI kit's background calls: matches are
    reported in batches (at most ~10 a second; ``task.report((indices, scanned, total))``)
    so a scan of millions of documents never blocks the GUI thread; the scan ends at the
    next chunk once ``task.cancelled()``. Returns whether every document was scanned."""
    corpus = studio.datasets.corpus(dataset_id)
    total = corpus.n_docs
    batch: list[np.ndarray] = []
    n_found, last_emit, scanned = 0, 0.0, 0
    for idx, scanned in corpus.search_chunks(query, column_equals=column_equals,
                                             chunk_rows=chunk_rows):
        if task.cancelled():
            break
        idx = idx[: max(0, limit - n_found)]
        n_found += len(idx)
        if len(idx):
            batch.append(idx)
        now = time.monotonic()
        first_page = n_found >= DOCS_PER_PAGE and last_emit == 0.0
        if batch and (first_page or now - last_emit >= 0.1) or n_found >= limit:
            task.report((np.concatenate(batch) if batch else np.zeros(0, np.int64), scanned,
                         total))
            batch, last_emit = [], now
        if n_found >= limit:
            break
    if batch or not n_found:
        task.report((np.concatenate(batch) if batch else np.zeros(0, np.int64), scanned,
                     total))
    return not task.cancelled() and scanned >= total and n_found < limit


class DocumentsBrowser(QWidget):
    def __init__(self, studio, parent=None):
        super().__init__(parent)
        self.studio = studio
        self.dataset = None
        self.matches = None  # indices of the current search/filter, or None for all
        self.complete = True
        self.searching = False
        self.batches_received = 0  # of the current search (results arrive in batches)
        self._stale = False  # the dataset changed while this page was hidden
        self.searches = BackgroundCalls(self, name="dataset-search")
        self.search: BackgroundTask | None = None  # the search running now
        self._scanned = (0, 0)
        self.filter: dict[str, str] = {}
        self.search_edit = QLineEdit()
        self.search_edit.setPlaceholderText("Search the documents (case-insensitive)…")
        self.search_edit.returnPressed.connect(self.run_search)
        search_btn = QPushButton("Search")
        search_btn.clicked.connect(self.run_search)
        self.filter_label = QLabel()
        self.clear_btn = QPushButton("Clear")
        self.clear_btn.clicked.connect(self.clear_search)
        self.stop_btn = QPushButton("Stop")
        self.stop_btn.setToolTip("Stop searching; the matches found so far stay listed.")
        self.stop_btn.clicked.connect(self.stop_search)
        self.stop_btn.setVisible(False)
        self.status = QLabel()
        self.status.setStyleSheet(css("text.secondary"))
        top = QHBoxLayout()
        top.addWidget(self.search_edit, 1)
        top.addWidget(search_btn)
        top.addWidget(self.filter_label)
        top.addWidget(self.stop_btn)
        top.addWidget(self.clear_btn)
        self.model = DocumentPageModel(self)
        self.view = QTableView()
        self.view.setModel(self.model)
        self.view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.view.verticalHeader().setVisible(False)
        self.view.verticalHeader().setDefaultSectionSize(22)
        self.view.setWordWrap(False)
        self.view.horizontalHeader().setStretchLastSection(True)
        self.view.selectionModel().currentRowChanged.connect(self._show_row)
        self.full_text = QPlainTextEdit()
        self.full_text.setReadOnly(True)
        self.attribution = hint_label()
        self.pager = Pager(self.show_page)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.view)
        split.addWidget(self.full_text)
        split.setSizes([400, 160])
        lay = QVBoxLayout(self)
        lay.addLayout(top)
        lay.addWidget(self.status)
        lay.addWidget(split, 1)
        lay.addWidget(self.pager)
        lay.addWidget(self.attribution)

    def set_dataset(self, dataset) -> None:
        self.stop_search()
        self.dataset = dataset
        self.matches = None
        self.filter = {}
        self.search_edit.clear()
        self.attribution.setText((dataset.source or {}).get("attribution", "") if dataset else "")
        self.pager.page = 0
        if self.isVisible():
            self._reload()
        else:  # behind another page (the tab opens on the Overview): read when first shown
            self._stale = True

    def showEvent(self, event) -> None:
        super().showEvent(event)
        if self._stale:
            self._reload()

    def _reload(self) -> None:
        self._stale = False
        self.filter_label.setText(", ".join(f"{k} = {v}" for k, v in self.filter.items()))
        self.clear_btn.setVisible(bool(self.filter) or self.matches is not None)
        if self.dataset is None or self.dataset.status != "ready":
            self.model.set_page([], [])
            self.pager.set_total(0, DOCS_PER_PAGE)
            self.pager.refresh_label()
            self.status.setText("")
            return
        if self.matches is None:
            total, more = self.dataset.n_docs or 0, False
            self.status.setText(f"{total:,} documents")
        else:
            total, more = len(self.matches), not self.complete
            self._show_search_status()
        self.pager.set_total(total, DOCS_PER_PAGE, more=more)
        self.pager.go(self.pager.page)

    def _show_search_status(self) -> None:
        n = len(self.matches) if self.matches is not None else 0
        scanned, total = self._scanned
        if self.searching:
            share = f"{scanned / total:.0%}" if total else "0%"
            self.status.setText(f"Searching… {n:,} matching documents so far ({share} of "
                                f"{total:,} scanned)")
        elif self.complete:
            self.status.setText(f"{n:,} matching documents")
        elif n >= SEARCH_LIMIT:
            self.status.setText(f"The first {n:,} matching documents (search stopped at "
                                f"{SEARCH_LIMIT:,}; refine the query to see others)")
        else:
            self.status.setText(f"{n:,}+ matching documents (stopped after scanning "
                                f"{scanned:,} of {total:,})")

    def show_page(self, page: int) -> None:
        if self.dataset is None or self.dataset.status != "ready":
            return
        start = page * DOCS_PER_PAGE
        try:
            corpus = self.studio.datasets.corpus(self.dataset.id)
        except UserError as exc:
            self.status.setText(str(exc))
            return
        if self.matches is None:
            rows = corpus.rows(start, DOCS_PER_PAGE)
        else:
            rows = corpus.take(self.matches[start:start + DOCS_PER_PAGE])
        self.model.set_page(rows, corpus.columns)
        self.view.resizeColumnToContents(0)
        self.view.setColumnWidth(1, max(360, self.view.width() // 2))
        self.full_text.clear()

    def run_search(self) -> None:
        """Start searching in the background; matches are paged in as they are found."""
        if self.dataset is None:
            return
        self.stop_search()
        query = self.search_edit.text()
        self.pager.page = 0
        if not query and not self.filter:
            self.matches = None
            self._reload()
            return
        self.matches = np.zeros(0, dtype=np.int64)
        self.complete = False
        self.searching = True
        self.batches_received = 0
        self._scanned = (0, self.dataset.n_docs or 0)
        self.stop_btn.setVisible(True)
        self._reload()
        studio, dataset_id, column_equals = self.studio, self.dataset.id, dict(self.filter)
        self.search = self.searches.call(
            "search", lambda task: search_documents(studio, dataset_id, query, column_equals,
                                                    SEARCH_LIMIT, SEARCH_CHUNK_ROWS, task),
            self._on_search_finished, self._on_search_failed, on_report=self._on_found,
            pass_task=True)

    def stop_search(self) -> None:
        if self.search is not None:
            self.search.cancel()  # ends at its next chunk; nothing more of it is delivered
            self.search = None
        if self.searching:
            self.searching = False
            self.complete = False
            self.stop_btn.setVisible(False)
            if self.matches is not None:
                self._show_search_status()

    def shutdown(self) -> None:
        """Stop searching for good (the tab closes)."""
        self.stop_search()
        self.searches.close()

    def _on_found(self, found) -> None:
        indices, scanned, total = found  # (a stopped or replaced search's never arrive)
        self.batches_received += 1
        shown_before = len(self.matches)
        self.matches = np.concatenate([self.matches, indices]) if len(indices) else self.matches
        self._scanned = (scanned, total)
        page_end = (self.pager.page + 1) * DOCS_PER_PAGE
        self.pager.set_total(len(self.matches), DOCS_PER_PAGE, more=True)
        if shown_before < page_end and len(self.matches) > shown_before:
            self.pager.go(self.pager.page)  # the page on screen gained rows
        else:
            self.pager.refresh_label()
        self._show_search_status()

    def _on_search_finished(self, complete: bool) -> None:
        self.search = None
        self.searching = False
        self.complete = complete
        self.stop_btn.setVisible(False)
        self.pager.set_total(len(self.matches), DOCS_PER_PAGE, more=not complete)
        self.pager.refresh_label()
        if not len(self.matches):
            self.pager.go(0)
        self._show_search_status()

    def _on_search_failed(self, message: str) -> None:
        self.search = None
        self.searching = False
        self.stop_btn.setVisible(False)
        self.status.setText(f"Search failed: {message}")

    def set_filter(self, column: str, value: str) -> None:
        self.filter = {column: value}
        self.run_search()

    def clear_search(self) -> None:
        self.stop_search()
        self.search_edit.clear()
        self.filter = {}
        self.matches = None
        self.pager.page = 0
        self._reload()

    def _show_row(self, current, _previous) -> None:
        row = self.model.data(self.model.index(current.row(), 0), Qt.ItemDataRole.UserRole) \
            if current.isValid() else None
        self.full_text.setPlainText(row["text"] if row else "")


class TokensBrowser(QWidget):
    delete_requested = Signal(str)  # tokenization id; the tab confirms and deletes

    def __init__(self, studio, parent=None):
        super().__init__(parent)
        self.studio = studio
        self.tokenization = None
        self.combo = QComboBox()
        self.combo.currentIndexChanged.connect(self._on_combo)
        self.info = QLabel()
        self.info.setStyleSheet(css("text.secondary"))
        self.model = SequencePageModel(self)
        self.view = QTableView()
        self.view.setModel(self.model)
        self.view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.view.verticalHeader().setVisible(False)
        self.view.verticalHeader().setDefaultSectionSize(22)
        self.view.horizontalHeader().setStretchLastSection(True)
        self.view.selectionModel().currentRowChanged.connect(self._show_row)
        self.chips = TokenChipsView()
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.chips)
        self.pager = Pager(self.show_page)
        self.delete_btn = QPushButton("Delete tokenization…")
        self.delete_btn.setToolTip("Delete this tokenization's files (the dataset's text and "
                                   "activation sets extracted from it are kept)")
        self.delete_btn.clicked.connect(lambda: self.tokenization is not None and
                                        self.delete_requested.emit(self.tokenization.id))
        top = QHBoxLayout()
        top.addWidget(QLabel("Tokenization"))
        top.addWidget(self.combo, 1)
        top.addWidget(self.delete_btn)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.view)
        split.addWidget(scroll)
        split.setSizes([260, 300])
        lay = QVBoxLayout(self)
        lay.addLayout(top)
        lay.addWidget(self.info)
        lay.addWidget(split, 1)
        lay.addWidget(self.pager)

    def set_tokenizations(self, tokenizations: list, select: str | None = None) -> None:
        ready = [t for t in tokenizations if t.status == "ready"]
        current = select or (self.tokenization.id if self.tokenization else None)
        self.combo.blockSignals(True)
        self.combo.clear()
        for t in ready:
            s = t.settings
            self.combo.addItem(f"{t.tokenizer} · context {t.seq_len} · {s.get('packing')}"
                               f"{' · BOS' if s.get('prepend_bos') else ''} ({t.id})", t.id)
        ids = [t.id for t in ready]
        self.combo.setCurrentIndex(ids.index(current) if current in ids else 0)
        self.combo.blockSignals(False)
        self._on_combo()

    def _on_combo(self) -> None:
        tok_id = self.combo.currentData()
        self.tokenization = self.studio.datasets.get_tokenization(tok_id) if tok_id else None
        self.chips.clear()
        self.delete_btn.setEnabled(self.tokenization is not None)
        if self.tokenization is None:
            self.info.setText("Not tokenized yet: press Tokenize… to prepare it for a model.")
            self.model.set_page([])
            self.pager.set_total(0, SEQS_PER_PAGE)
            self.pager.refresh_label()
            return
        t = self.tokenization
        self.info.setText(f"{t.n_seq:,} sequences × {t.seq_len} tokens, {t.n_tokens:,} real "
                          f"tokens. Hover a token for its id; dimmed chips are padding.")
        self.pager.set_total(t.n_seq or 0, SEQS_PER_PAGE)
        self.pager.go(0)

    def show_page(self, page: int) -> None:
        if self.tokenization is None:
            return
        rows = self.studio.datasets.sequences(self.tokenization.id, page * SEQS_PER_PAGE,
                                              SEQS_PER_PAGE)
        self.model.set_page(rows)
        self.view.resizeColumnToContents(0)
        self.view.resizeColumnToContents(1)
        if rows:
            self.view.selectRow(0)

    def _show_row(self, current, _previous) -> None:
        if not current.isValid():
            self.chips.clear()
            return
        row = self.model.rows[current.row()]
        meta = self.studio.datasets.open_tokenization(self.tokenization.id).meta
        special = {meta.get(k) for k in ("bos_token_id", "eos_token_id", "pad_token_id",
                                         "separator_token_id") if meta.get(k) is not None}
        self.chips.set_sequence(row["ids"], row["text"], row["raw"], row["length"], special)
