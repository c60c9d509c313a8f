"""The Statistics page: counts, length histogram (pyqtgraph), top tokens, metadata counts.
Everything shown was computed once by the import/tokenize jobs and read from the store."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QHBoxLayout, QLabel, QSplitter, QTableWidget, QTableWidgetItem,
                               QVBoxLayout, QWidget)

from mistudio.ui.datasets.token_chips import visible_token
from mistudio.ui.kit.palette import colour


class StatsView(QWidget):
    filter_requested = Signal(str, str)  # column, value: "show me these documents"

    def __init__(self, parent=None):
        super().__init__(parent)
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        # pyqtgraph costs ~0.3 s to import: the plot is built the first time this page shows,
        # so the Datasets tab (the first one on screen) does not slow the app's start.
        self.plot = None
        self.bars = None
        self._pending_hist: tuple[dict, str] | None = None
        self._plot_slot = QVBoxLayout()
        self.top_tokens = QTableWidget(0, 3)
        self.top_tokens.setHorizontalHeaderLabels(["Token", "Id", "Count"])
        self.top_tokens.verticalHeader().setVisible(False)
        self.top_tokens.horizontalHeader().setStretchLastSection(True)
        self.categories = QTableWidget(0, 3)
        self.categories.setHorizontalHeaderLabels(["Column", "Value", "Documents"])
        self.categories.verticalHeader().setVisible(False)
        self.categories.horizontalHeader().setStretchLastSection(True)
        self.categories.setToolTip("Double-click a value to browse its documents")
        self.categories.cellDoubleClicked.connect(self._category_clicked)
        tables = QSplitter(Qt.Orientation.Horizontal)
        for title, table in (("Most common tokens", self.top_tokens),
                             ("Metadata values", self.categories)):
            box = QWidget()
            bl = QVBoxLayout(box)
            bl.setContentsMargins(0, 0, 0, 0)
            bl.addWidget(QLabel(f"<b>{title}</b>"))
            bl.addWidget(table)
            tables.addWidget(box)
        lay = QVBoxLayout(self)
        top = QHBoxLayout()
        top.addWidget(self.summary, 1)
        lay.addLayout(top)
        lay.addLayout(self._plot_slot, 2)
        lay.addWidget(tables, 3)

    def _category_clicked(self, row: int, _col: int) -> None:
        column = self.categories.item(row, 0).text()
        value = self.categories.item(row, 1).text()
        self.filter_requested.emit(column, value)

    def show_stats(self, dataset, tokenization=None) -> None:
        st = dataset.stats or {}
        lines = [f"<b>{dataset.n_docs or 0:,}</b> documents · <b>{dataset.n_chars or 0:,}</b> "
                 "characters"]
        if st.get("n_empty_skipped"):
            lines.append(f"{st['n_empty_skipped']:,} empty documents skipped at import")
        length = st.get("char_length", {})
        unit = "characters"
        if tokenization is not None and tokenization.status == "ready":
            ts = tokenization.stats or {}
            length = ts.get("doc_tokens", length)
            unit = "tokens"
            lines.append(
                f"Tokenization <b>{tokenization.id}</b> ({tokenization.tokenizer}, context "
                f"{tokenization.seq_len}): <b>{tokenization.n_seq or 0:,}</b> sequences, "
                f"<b>{tokenization.n_tokens or 0:,}</b> tokens, "
                f"{ts.get('distinct_tokens', 0):,} distinct ids = "
                f"{ts.get('vocab_coverage', 0):.1%} of the vocabulary; padding "
                f"{ts.get('padding_fraction', 0):.1%}; {ts.get('n_docs_too_short', 0):,} "
                f"short documents left out, {ts.get('n_docs_truncated', 0):,} truncated")
        if length.get("count"):
            lines.append(f"Document length ({unit}): median {length['median']:,.0f}, mean "
                         f"{length['mean']:,.1f}, 5-95% {length['p05']:,.0f}–"
                         f"{length['p95']:,.0f}, max {length['max']:,}")
        self.summary.setText("<br>".join(lines))
        self._histogram(length, unit)
        self._fill_tokens((tokenization.stats or {}).get("top_tokens", [])
                          if tokenization is not None else [])
        self._fill_categories(st.get("categories", {}))

    def _ensure_plot(self) -> None:
        if self.plot is not None:
            return
        import pyqtgraph as pg

        self.plot = pg.PlotWidget()
        self.plot.setBackground("w")
        self.plot.setMinimumHeight(180)
        self.plot.showGrid(x=True, y=True, alpha=0.2)
        self.bars = pg.BarGraphItem(x=[], height=[], width=1, brush=colour("bar"))
        self.plot.addItem(self.bars)
        self._plot_slot.addWidget(self.plot)

    def showEvent(self, event) -> None:
        super().showEvent(event)
        if self._pending_hist is not None:
            self._histogram(*self._pending_hist)

    def _histogram(self, length: dict, unit: str) -> None:
        if not self.isVisible() and self.plot is None:
            self._pending_hist = (length, unit)  # drawn when the page is first shown
            return
        self._pending_hist = None
        self._ensure_plot()
        edges, counts = length.get("hist_edges"), length.get("hist_counts")
        self.plot.setTitle(f"Document length ({unit})", color=colour("text.strong"), size="10pt")
        if not edges or not counts:
            self.bars.setOpts(x=[], height=[], width=1)
            return
        width = edges[1] - edges[0]
        centres = [(a + b) / 2 for a, b in zip(edges[:-1], edges[1:])]
        self.bars.setOpts(x=centres, height=counts, width=width * 0.9)
        self.plot.setLabel("bottom", unit)
        self.plot.setLabel("left", "documents")
        self.plot.autoRange()

    def _fill_tokens(self, top: list) -> None:
        self.top_tokens.setRowCount(len(top))
        for r, (tid, text, count) in enumerate(top):
            for c, value in enumerate((visible_token(text), str(tid), f"{count:,}")):
                item = QTableWidgetItem(value)
                if c:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight
                                          | Qt.AlignmentFlag.AlignVCenter)
                self.top_tokens.setItem(r, c, item)

    def _fill_categories(self, categories: dict) -> None:
        rows = [(col, v, c) for col, values in categories.items() for v, c in values]
        self.categories.setRowCount(len(rows))
        for r, (col, value, count) in enumerate(rows):
            for c, text in enumerate((col, value, f"{count:,}")):
                self.categories.setItem(r, c, QTableWidgetItem(text))
