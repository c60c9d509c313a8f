"""The feature table with its filters and search box."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QEvent, Qt, QTimer, Signal
from PySide6.QtWidgets import (QAbstractItemView, QCheckBox, QComboBox, QDoubleSpinBox,
                               QHBoxLayout, QHeaderView, QLabel, QLineEdit, QTableView,
                               QVBoxLayout, QWidget)

from mistudio.ui.features.table_data import COLUMNS, FeatureFilter
from mistudio.ui.features.table_model import FeatureTableModel
from mistudio.ui.kit import palette


class FeatureTablePanel(QWidget):
    feature_activated = Signal(int)
    selection_changed = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.model = FeatureTableModel(self)
        self.lists: dict[str, np.ndarray] = {}  # list id -> members (set by the tab)

        self.search = QLineEdit()
        self.search.setPlaceholderText("Search labels, explanations, notes, tokens, or #index")
        self.search.setClearButtonEnabled(True)
        self._search_timer = QTimer(self, singleShot=True, interval=150)
        self._search_timer.timeout.connect(self.apply_filters)
        self.search.textChanged.connect(lambda _t: self._search_timer.start())

        self.alive = QComboBox()
        for text, key in (("All features", "all"), ("Alive", "alive"), ("Dead", "dead")):
            self.alive.addItem(text, key)
        self.labelled = QCheckBox("Labelled")
        self.favourites = QCheckBox("★ only")
        self.list_box = QComboBox()
        self.list_box.addItem("Any list", None)
        # density bounds as log10 (densities span 1e-7 .. 1); "off" at the extremes
        self.dmin = QDoubleSpinBox(decimals=1, minimum=-8.0, maximum=0.0, singleStep=0.5, value=-8.0)
        self.dmax = QDoubleSpinBox(decimals=1, minimum=-8.0, maximum=0.0, singleStep=0.5, value=0.0)
        for box in (self.dmin, self.dmax):
            box.setPrefix("10^")
            box.setToolTip("Density bound as a power of ten (-8 and 0: no bound)")
        for w in (self.alive, self.list_box):
            w.currentIndexChanged.connect(self.apply_filters)
        for w in (self.labelled, self.favourites):
            w.toggled.connect(self.apply_filters)
        for w in (self.dmin, self.dmax):
            w.valueChanged.connect(self.apply_filters)
        self.count = QLabel()
        self.count.setStyleSheet(palette.css("text.muted"))
        self.model.view_changed.connect(
            lambda shown, total: self.count.setText(f"{shown:,} of {total:,} features"))

        self.view = QTableView()
        self.view.setModel(self.model)
        self.view.setSortingEnabled(True)
        self.view.sortByColumn(0, Qt.SortOrder.AscendingOrder)
        self.view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.view.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.view.setWordWrap(False)
        self.view.setAlternatingRowColors(True)
        vh = self.view.verticalHeader()
        vh.setVisible(False)
        vh.setSectionResizeMode(QHeaderView.ResizeMode.Fixed)  # no per-row size pass
        vh.setDefaultSectionSize(self.fontMetrics().height() + 6)
        hh = self.view.horizontalHeader()
        widths = {"index": 60, "label": 170, "explanation": 200, "density": 80, "max": 60, "mean": 60,
                  "top_logits": 170, "top_token": 90, "favourite": 28}
        for i, c in enumerate(COLUMNS):
            self.view.setColumnWidth(i, widths[c.key])
        hh.setStretchLastSection(False)
        self.view.selectionModel().currentRowChanged.connect(self._current_changed)
        self.view.selectionModel().selectionChanged.connect(lambda *_: self.selection_changed.emit())

        bar1 = QHBoxLayout()
        bar1.addWidget(self.search, 1)
        bar1.addWidget(self.count)
        bar2 = QHBoxLayout()
        for w in (self.alive, QLabel("density"), self.dmin, QLabel("–"), self.dmax,
                  self.labelled, self.favourites, self.list_box):
            bar2.addWidget(w)
        bar2.addStretch(1)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(bar1)
        lay.addLayout(bar2)
        lay.addWidget(self.view, 1)

    def changeEvent(self, event) -> None:
        if event.type() == QEvent.Type.PaletteChange:  # light <-> dark
            self.model.refresh_colours()
        super().changeEvent(event)

    def current_filter(self) -> FeatureFilter:
        lo, hi = self.dmin.value(), self.dmax.value()
        list_id = self.list_box.currentData()
        return FeatureFilter(
            density_min=None if lo <= -8 else 10 ** lo,
            density_max=None if hi >= 0 else 10 ** hi,
            alive=self.alive.currentData(), labelled=self.labelled.isChecked(),
            favourites=self.favourites.isChecked(),
            members=self.lists.get(list_id) if list_id else None,
            query=self.search.text())

    def show_table(self, table) -> None:
        """A newly read table, through the filters the widgets show (one model reset)."""
        self.model.set_table(table, self.current_filter())

    def apply_filters(self) -> None:
        current = self.current_feature()
        self.model.apply(self.current_filter())
        if current is not None:
            self.select_feature(current, emit=False)

    def set_lists(self, lists, members: dict[str, np.ndarray]) -> None:
        self.lists = members
        keep = self.list_box.currentData()
        self.list_box.blockSignals(True)
        self.list_box.clear()
        self.list_box.addItem("Any list", None)
        for rec in lists:
            self.list_box.addItem(f"List: {rec.name} ({rec.size})", rec.id)
        i = self.list_box.findData(keep)
        self.list_box.setCurrentIndex(max(i, 0))
        self.list_box.blockSignals(False)

    def show_list(self, list_id: str) -> None:
        i = self.list_box.findData(list_id)
        if i >= 0:
            self.list_box.setCurrentIndex(i)

    # ------------------------------------------------------------------ selection

    def current_feature(self) -> int | None:
        idx = self.view.selectionModel().currentIndex()
        return self.model.feature_at(idx.row()) if idx.isValid() else None

    def selected_features(self) -> list[int]:
        rows = sorted({i.row() for i in self.view.selectionModel().selectedRows()})
        return [self.model.feature_at(r) for r in rows]

    def select_feature(self, feature: int, emit: bool = False) -> bool:
        row = self.model.row_of_feature(feature)
        if row is None:
            return False
        sm = self.view.selectionModel()
        self._emit = emit
        sm.setCurrentIndex(self.model.index(row, 0),
                           sm.SelectionFlag.ClearAndSelect | sm.SelectionFlag.Rows)
        self._emit = True
        self.view.scrollTo(self.model.index(row, 0))
        return True

    _emit = True

    def _current_changed(self, current, _previous) -> None:
        if current.isValid() and self._emit:
            self.feature_activated.emit(self.model.feature_at(current.row()))

