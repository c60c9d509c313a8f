"""Pieces of the feature detail panel: histograms, the logit-lens tables, neighbour chips."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtWidgets import (QAbstractItemView, QHBoxLayout, QHeaderView, QListView,
                               QListWidget, QListWidgetItem, QTableWidget, QTableWidgetItem,
                               QVBoxLayout, QWidget)

from mistudio.ui.features.table_model import format_density
from mistudio.ui.kit import palette


class HistogramPlot(QWidget):
    """Bars over bin edges; an optional vertical marker (the current prompt's activation).

    The pyqtgraph plot inside (~10 ms to build) is made on first show or ``ensure()`` (the
    tab calls it when idle), so the panel holding it builds in a few milliseconds; what is
    set before keeps and is drawn then.
    """

    def __init__(self, parent=None, colour: str = "", height=150):
        super().__init__(parent)
        self.setMinimumHeight(height)
        self.setMaximumHeight(height + 60)
        self.colour = colour or palette.colour("activation")
        self.counts = np.zeros(0)
        self.edges = np.zeros(1)
        self.title = ""
        self.marker_value: float | None = None
        self._plot: pg.PlotWidget | None = None
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)

    def ensure(self) -> pg.PlotWidget:
        """The plot, built now if it is not yet."""
        if self._plot is None:
            plot = pg.PlotWidget()
            plot.setBackground("w")
            plot.setMouseEnabled(x=False, y=False)
            plot.hideButtons()
            self.bars = pg.BarGraphItem(x0=[], x1=[], height=[], brush=self.colour, pen=None)
            plot.addItem(self.bars)
            self._marker = pg.InfiniteLine(
                angle=90, pen=pg.mkPen(palette.colour("error"), width=2),
                label="prompt {value:.3g}",
                labelOpts={"position": 0.9, "color": palette.colour("error")})
            self._marker.setVisible(False)
            plot.addItem(self._marker)
            self._plot = plot
            self.layout().addWidget(plot)
            if self.isVisible():
                plot.show()
            self._draw()
            self._draw_marker()
        return self._plot

    def showEvent(self, event) -> None:
        self.ensure()
        super().showEvent(event)

    @property
    def plotItem(self):
        return self.ensure().plotItem

    @property
    def marker(self) -> pg.InfiniteLine:
        self.ensure()
        return self._marker

    def set_histogram(self, counts, edges, title: str = "") -> None:
        self.counts = np.asarray(counts, dtype=float)
        self.edges = np.asarray(edges, dtype=float)
        self.title = title
        if self._plot is not None:
            self._draw()

    def _draw(self) -> None:
        if len(self.counts):
            self.bars.setOpts(x0=self.edges[:-1], x1=self.edges[1:], height=self.counts)
        else:
            self.bars.setOpts(x0=[], x1=[], height=[])
        self._plot.setTitle(self.title, size="9pt")
        self._plot.getViewBox().autoRange()

    def set_marker(self, value: float | None) -> None:
        self.marker_value = None if value is None else float(value)
        if self._plot is not None:
            self._draw_marker()

    def _draw_marker(self) -> None:
        if self.marker_value is None:
            self._marker.setVisible(False)
        else:
            self._marker.setValue(self.marker_value)
            self._marker.setVisible(True)


def density_title(density: float, firing: int, n_tokens: int) -> str:
    return (f"Activations (non-zero) · density {format_density(density)} "
            f"({firing:,} of {n_tokens:,} tokens)")


class LogitLensView(QWidget):
    """Top and bottom tokens of the decoder direction through the unembedding, and the
    histogram over the whole vocabulary."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.top = self._table("Promoted (top)")
        self.bottom = self._table("Suppressed (bottom)")
        self.hist = HistogramPlot(colour=palette.colour("bar.strong"), height=110)
        tables = QHBoxLayout()
        tables.addWidget(self.top)
        tables.addWidget(self.bottom)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(tables)
        lay.addWidget(self.hist)

    @staticmethod
    def _table(title: str) -> QTableWidget:
        t = QTableWidget(0, 2)
        t.setHorizontalHeaderLabels([title, "logit"])
        t.verticalHeader().setVisible(False)
        t.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        t.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        t.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        row = t.fontMetrics().height() + 6
        t.verticalHeader().setDefaultSectionSize(row)
        t.setMinimumHeight(row * 11 + 8)  # the 10 tokens and the header, no scrolling
        t.setMaximumHeight(row * 11 + 8)
        return t

    def set_lens(self, lens) -> None:
        for table, pairs in ((self.top, lens.top), (self.bottom, lens.bottom)):
            table.setRowCount(len(pairs))
            for r, (tid, text, value) in enumerate(pairs):
                item = QTableWidgetItem(repr(text)[1:-1])
                item.setToolTip(f"token id {tid}")
                table.setItem(r, 0, item)
                v = QTableWidgetItem(f"{value:+.3f}")
                v.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                table.setItem(r, 1, v)
        self.hist.set_histogram(lens.hist_counts, lens.hist_edges,
                                f"Logit effect over the vocabulary ({lens.convention} W_U)")

    def cell_texts(self, which: str) -> list[tuple[str, str]]:
        t = self.top if which == "top" else self.bottom
        return [(t.item(r, 0).text(), t.item(r, 1).text()) for r in range(t.rowCount())]


class ChipList(QListWidget):
    """Features as clickable chips that wrap like words (neighbours, a token's features)."""

    feature_clicked = Signal(int)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setViewMode(QListView.ViewMode.IconMode)
        self.setFlow(QListView.Flow.LeftToRight)
        self.setWrapping(True)
        self.setResizeMode(QListView.ResizeMode.Adjust)
        self.setMovement(QListView.Movement.Static)
        self.setSpacing(3)
        self.setUniformItemSizes(False)
        self.setMaximumHeight(90)
        self.setStyleSheet("QListWidget { border: none; background: transparent }"
                           "QListWidget::item { border: 1px solid %s; border-radius: 9px;"
                           " padding: 1px 6px; background: %s }"
                           "QListWidget::item:hover { background: %s }"
                           % (palette.colour("border"), palette.colour("surface.chip"),
                              palette.colour("banner.warning.bg")))
        self.itemClicked.connect(lambda it: self.feature_clicked.emit(int(it.data(Qt.ItemDataRole.UserRole))))

    def set_chips(self, chips: list[tuple[int, str, str]]) -> None:
        """``chips``: (feature, text, tooltip)."""
        self.clear()
        for feature, text, tip in chips:
            item = QListWidgetItem(text)
            item.setData(Qt.ItemDataRole.UserRole, int(feature))
            item.setToolTip(tip)
            # the style sheet's padding and border are not in the font metrics
            item.setSizeHint(QSize(self.fontMetrics().horizontalAdvance(text) + 34,
                                   self.fontMetrics().height() + 10))
            self.addItem(item)

    def features(self) -> list[int]:
        return [int(self.item(i).data(Qt.ItemDataRole.UserRole)) for i in range(self.count())]
