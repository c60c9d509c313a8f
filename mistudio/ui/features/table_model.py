"""The feature table's Qt model: a thin view over ``FeatureTable`` rows in a numpy order.

Sort and filter happen in ``FeatureTable`` (vectorised); the model only maps a view row to
a data row and formats cells on demand, so 65k features cost no more than the ~40 visible.
"""

from __future__ import annotations

import math

import numpy as np
from PySide6.QtCore import QAbstractTableModel, QModelIndex, Qt, Signal
from PySide6.QtGui import QColor

from mistudio.ui.features.table_data import COLUMNS, FeatureFilter, FeatureTable
from mistudio.ui.kit import palette

FEATURE_ROLE = Qt.ItemDataRole.UserRole + 1
RIGHT = int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)


def format_density(d: float) -> str:
    if d is None or math.isnan(d):
        return ""
    if d == 0:
        return "0 (dead)"
    pct = d * 100
    return f"{pct:.3g}%" if pct >= 0.001 else f"{d:.1e}"


def format_value(v: float) -> str:
    return "" if v is None or math.isnan(v) else f"{v:.3g}"


_ROLES = frozenset({Qt.ItemDataRole.DisplayRole, FEATURE_ROLE, Qt.ItemDataRole.TextAlignmentRole,
                    Qt.ItemDataRole.ForegroundRole, Qt.ItemDataRole.ToolTipRole})


class FeatureTableModel(QAbstractTableModel):
    view_changed = Signal(int, int)  # shown, total

    def __init__(self, parent=None):
        super().__init__(parent)
        self.table: FeatureTable | None = None
        self.order = np.zeros(0, np.int64)
        self.filter = FeatureFilter()
        self.sort_key = "index"
        self.descending = False
        self._faint: QColor | None = None  # dead rows' text; see refresh_colours

    def refresh_colours(self) -> None:
        """The palette changed (light/dark): cells take its colours at their next paint."""
        self._faint = None
        self.refresh_rows()

    # ---------------------------------------------------------------- data

    def set_table(self, table: FeatureTable | None, flt: FeatureFilter | None = None) -> None:
        """Show ``table`` (through ``flt`` when given): one reset, its order computed first."""
        if flt is not None:
            self.filter = flt
        self.beginResetModel()
        self.table = table
        self.order = (table.view(self.filter, self.sort_key, self.descending)
                      if table is not None else np.zeros(0, np.int64))
        self.endResetModel()
        self.view_changed.emit(len(self.order), len(table) if table is not None else 0)

    def apply(self, flt: FeatureFilter | None = None, sort_key: str | None = None,
              descending: bool | None = None) -> None:
        if flt is not None:
            self.filter = flt
        if sort_key is not None:
            self.sort_key = sort_key
        if descending is not None:
            self.descending = descending
        self.set_table(self.table)

    def refresh_rows(self) -> None:
        """Cells changed in place (a label, a favourite): repaint without resetting."""
        if len(self.order):
            self.dataChanged.emit(self.index(0, 0),
                                  self.index(len(self.order) - 1, len(COLUMNS) - 1))

    def feature_at(self, row: int) -> int:
        return int(self.table.columns["index"][self.order[row]])

    def row_of_feature(self, feature_index: int) -> int | None:
        if self.table is None:
            return None
        r = self.table.row_of(feature_index)
        if r is None:
            return None
        hits = np.flatnonzero(self.order == r)
        return int(hits[0]) if len(hits) else None

    def visible_features(self) -> np.ndarray:
        if self.table is None:
            return np.zeros(0, np.int64)
        return self.table.columns["index"][self.order]

    # ---------------------------------------------------------------- Qt API

    def rowCount(self, parent=QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.order)

    def columnCount(self, parent=QModelIndex()) -> int:
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):
        if orientation != Qt.Orientation.Horizontal:
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section].title
        if role == Qt.ItemDataRole.ToolTipRole:
            return COLUMNS[section].tip
        return None

    def data(self, index: QModelIndex, role=Qt.ItemDataRole.DisplayRole):
        # called ~10 times per visible cell at each repaint: roles the table does not use
        # return first, and nothing here asks the application palette per cell
        if role not in _ROLES or not index.isValid() or self.table is None:
            return None
        col = COLUMNS[index.column()]
        r = self.order[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            v = self.table.columns[col.key][r]
            if col.key == "density":
                return format_density(float(v))
            if col.kind == "float":
                return format_value(float(v))
            if col.kind == "bool":
                return "★" if v else ""
            if col.kind == "int":
                return str(int(v))
            return str(v)
        if role == FEATURE_ROLE:
            return int(self.table.columns["index"][r])
        if role == Qt.ItemDataRole.TextAlignmentRole and col.kind in ("int", "float"):
            return RIGHT
        if role == Qt.ItemDataRole.ForegroundRole:
            if self.table.columns["density"][r] != 0:
                return None
            if self._faint is None:
                self._faint = QColor(palette.colour("text.faint"))
            return self._faint
        if role == Qt.ItemDataRole.ToolTipRole and col.kind == "str":
            v = self.table.columns[col.key][r]
            return str(v) or None
        return None

    def sort(self, column: int, order=Qt.SortOrder.AscendingOrder) -> None:
        self.apply(sort_key=COLUMNS[column].key,
                   descending=order == Qt.SortOrder.DescendingOrder)
