"""The Map and Heatmap pages of the Features tab: their controls around the plots."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (QComboBox, QHBoxLayout, QLabel, QPushButton, QStackedLayout,
                               QVBoxLayout, QWidget)

from mistudio.ui.features.heatmap_view import CorrelationHeatmap
from mistudio.ui.features.map_view import FeatureMapPlot
from mistudio.ui.kit import palette


class MapPage(QWidget):
    compute_requested = Signal(str)  # method
    method_changed = Signal(str)
    colour_changed = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.plot = FeatureMapPlot()
        self.method = QComboBox()
        self.method.addItem("UMAP", "umap")
        self.method.addItem("t-SNE", "tsne")
        self.method.currentIndexChanged.connect(lambda _i: self.method_changed.emit(self.method.currentData()))
        self.colour = QComboBox()
        for text, key in (("Colour: density", "density"), ("Colour: labelled", "label"),
                          ("Colour: list", "list")):
            self.colour.addItem(text, key)
        self.list_box = QComboBox()
        self.list_box.setVisible(False)
        self.colour.currentIndexChanged.connect(self._colour_mode)
        self.list_box.currentIndexChanged.connect(lambda _i: self.colour_changed.emit())
        self.lasso = QPushButton("Lasso → list")
        self.lasso.setCheckable(True)
        self.lasso.setToolTip("Drag a loop around points: they become a new list")
        self.lasso.toggled.connect(self.plot.set_lasso_mode)
        self.compute = QPushButton("Compute map")
        self.compute.clicked.connect(lambda: self.compute_requested.emit(self.method.currentData()))
        self.status = QLabel()
        self.status.setStyleSheet(palette.css("text.muted"))
        bar = QHBoxLayout()
        for w in (self.method, self.colour, self.list_box, self.lasso, self.compute, self.status):
            bar.addWidget(w)
        bar.addStretch(1)
        self.empty = QLabel()
        self.empty.setWordWrap(True)
        self.empty.setStyleSheet(palette.css("text.secondary", "font-size: 12pt; padding: 30px"))
        self.stack_host = QWidget()
        self.stack = QStackedLayout(self.stack_host)
        self.stack.addWidget(self.empty)
        self.stack.addWidget(self.plot)
        lay = QVBoxLayout(self)
        lay.addLayout(bar)
        lay.addWidget(self.stack_host, 1)

    def _colour_mode(self) -> None:
        self.list_box.setVisible(self.colour.currentData() == "list")
        self.colour_changed.emit()

    def set_lists(self, lists) -> None:
        keep = self.list_box.currentData()
        self.list_box.blockSignals(True)
        self.list_box.clear()
        for rec in lists:
            self.list_box.addItem(f"{rec.name} ({rec.size})", rec.id)
        self.list_box.setCurrentIndex(max(self.list_box.findData(keep), 0))
        self.list_box.blockSignals(False)

    def show_empty(self, text: str) -> None:
        self.empty.setText(text)
        self.stack.setCurrentWidget(self.empty)

    def show_plot(self) -> None:
        self.stack.setCurrentWidget(self.plot)


class HeatmapPage(QWidget):
    show_requested = Signal(str)  # which features: "selected" | "list" | "neighbours"

    def __init__(self, parent=None):
        super().__init__(parent)
        self.heatmap = CorrelationHeatmap()
        self.source = QComboBox()
        self.source.addItem("Selected rows of the table", "selected")
        self.source.addItem("Rows shown in the table (first 200)", "shown")
        self.source.addItem("Current feature and its neighbours", "neighbours")
        self.what = QComboBox()
        self.what.addItem("activation correlation", "correlation")
        self.what.addItem("decoder cosine", "cosine")
        self.what.setToolTip("Activation correlation: Pearson r over the analysis's random "
                             "contexts (a uniform sample of its tokens). Decoder cosine: of "
                             "the features' decoder directions")
        self.show_btn = QPushButton("Show")
        self.show_btn.clicked.connect(lambda: self.show_requested.emit(self.source.currentData()))
        self.hover = QLabel()
        self.hover.setMinimumWidth(260)
        self.heatmap.hovered.connect(self.hover.setText)
        self.note = QLabel("Rows and columns in average-linkage clustered order. Hover a "
                           "cell for its pair; click it to open its row's feature.")
        self.note.setWordWrap(True)
        self.note.setStyleSheet(palette.css("text.muted"))
        bar = QHBoxLayout()
        for w in (QLabel("Features"), self.source, self.what, self.show_btn, self.hover):
            bar.addWidget(w)
        bar.addStretch(1)
        lay = QVBoxLayout(self)
        lay.addLayout(bar)
        lay.addWidget(self.note)
        lay.addWidget(self.heatmap, 1)
