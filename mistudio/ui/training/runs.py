"""The Runs page: every SAE of every training in a sortable table (key settings, best and
last metrics), and a "diff only" comparison of two selected runs' settings."""

from __future__ import annotations

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QSortFilterProxyModel, Qt, Signal
from PySide6.QtWidgets import (QAbstractItemView, QCheckBox, QGroupBox, QHBoxLayout,
                               QHeaderView, QLabel, QSplitter, QTableView, QTableWidget,
                               QTableWidgetItem, QVBoxLayout, QWidget)

from mistudio.app.runs import RunRow
from mistudio.ui.training.run_table import diff_settings, format_setting
from mistudio.ui.kit.palette import css
from mistudio.ui.kit.labels import hint_label

COLUMNS = ("Run", "Status", "Arch.", "Latents", "Sparsity", "lr", "Tokens",
           "EV best", "EV last", "L0 best", "L0 last", "MSE best", "MSE last",
           "Dead best", "Dead last")
METRIC_COLUMNS = {7: ("explained_variance", "best"), 8: ("explained_variance", "last"),
                  9: ("l0", "best"), 10: ("l0", "last"), 11: ("mse", "best"),
                  12: ("mse", "last"), 13: ("dead_fraction", "best"),
                  14: ("dead_fraction", "last")}
HEADER_TIPS = {
    4: "k (TopK, BatchTopK), L1 coefficient (ReLU) or L0 coefficient (JumpReLU)",
    6: "Tokens trained so far",
    7: "Explained variance: best = highest over the run", 9: "L0: best = lowest",
    11: "Reconstruction MSE: best = lowest", 13: "Dead fraction: best = lowest",
}
SORT_ROLE = Qt.UserRole + 1
NONE_SORT = float("-inf")


class RunsModel(QAbstractTableModel):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.rows: list[RunRow] = []

    def set_rows(self, rows: list[RunRow]) -> None:
        self.beginResetModel()
        self.rows = list(rows)
        self.endResetModel()

    def rowCount(self, parent=QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent=QModelIndex()) -> int:
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section, orientation, role=Qt.DisplayRole):
        if orientation != Qt.Horizontal:
            return None
        if role == Qt.DisplayRole:
            return COLUMNS[section]
        if role == Qt.ToolTipRole:
            return HEADER_TIPS.get(section)
        return None

    def value(self, row: RunRow, col: int):
        if col == 0:
            return row.name
        if col == 1:
            return row.status
        if col == 2:
            return row.architecture
        if col == 3:
            return row.d_sae
        if col == 4:
            return row.sparsity_setting()[1]
        if col == 5:
            return row.lr
        if col == 6:
            return row.tokens
        metric, which = METRIC_COLUMNS[col]
        return getattr(row, which).get(metric)

    def data(self, index, role=Qt.DisplayRole):
        if not index.isValid():
            return None
        row, col = self.rows[index.row()], index.column()
        value = self.value(row, col)
        if role == Qt.DisplayRole:
            if value is None:
                return "–"
            if col == 4:
                label, v = row.sparsity_setting()
                return f"{label} {v:g}"
            if col in (3, 6):
                return f"{int(value):,}"
            if col == 5:
                return f"{value:.3g}"
            if col in (13, 14):
                return f"{value:.1%}"
            if col >= 7:
                return f"{value:.4g}"
            return str(value)
        if role == SORT_ROLE:
            if value is None:
                return NONE_SORT if col >= 3 else ""
            return value.lower() if isinstance(value, str) else float(value)
        if role == Qt.TextAlignmentRole and col >= 3:
            return int(Qt.AlignRight | Qt.AlignVCenter)
        if role == Qt.ToolTipRole and col == 0:
            return f"{row.key}" + (f" · SAE {row.member}" if row.member else "")
        return None


class RunsView(QWidget):
    """Emits ``open_run(training key)`` on a double click."""

    open_run = Signal(str)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.model = RunsModel(self)
        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setSourceModel(self.model)
        self.proxy.setSortRole(SORT_ROLE)
        self.table = QTableView()
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        # creation order until a header is clicked
        self.table.horizontalHeader().setSortIndicator(-1, Qt.AscendingOrder)
        self.proxy.sort(-1)
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.ExtendedSelection)
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.setAlternatingRowColors(True)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeToContents)
        header.setSectionResizeMode(0, QHeaderView.Stretch)
        self.table.selectionModel().selectionChanged.connect(self._update_diff)
        self.table.doubleClicked.connect(
            lambda idx: self.open_run.emit(self.model.rows[self.proxy.mapToSource(idx).row()].key))

        self.diff_box = QGroupBox("Compare settings")
        self.diff_only = QCheckBox("Diff only")
        self.diff_only.setChecked(True)
        self.diff_only.setToolTip("Show only the settings that differ between the two runs")
        self.diff_only.toggled.connect(self._update_diff)
        self.diff_note = QLabel()
        self.diff_note.setWordWrap(True)
        self.diff_table = QTableWidget(0, 3)
        self.diff_table.verticalHeader().setVisible(False)
        self.diff_table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.diff_table.horizontalHeader().setSectionResizeMode(QHeaderView.Stretch)
        top = QHBoxLayout()
        top.addWidget(self.diff_note, 1)
        top.addWidget(self.diff_only)
        box_lay = QVBoxLayout(self.diff_box)
        box_lay.addLayout(top)
        box_lay.addWidget(self.diff_table, 1)

        hint = hint_label("Click a header to sort. Select two runs (Ctrl+click) to compare "
                          "their settings; double-click a run to open its charts.",
                          small=False, wrap=False)
        self.error = QLabel()  # a load that failed; the table keeps its last rows
        self.error.setWordWrap(True)
        self.error.setStyleSheet(css("error"))
        self.error.setVisible(False)
        split = QSplitter(Qt.Vertical)
        split.addWidget(self.table)
        split.addWidget(self.diff_box)
        split.setSizes([500, 300])
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(hint)
        lay.addWidget(self.error)
        lay.addWidget(split, 1)
        self._update_diff()

    # ------------------------------------------------------------------ rows

    def set_rows(self, rows: list[RunRow]) -> None:
        """Replace the rows, keeping the selection and the sort."""
        self.error.setVisible(False)
        keep = {(r.key, r.member) for r in self.selected_rows()}
        self.model.set_rows(rows)
        if keep:
            sel = self.table.selectionModel()
            for i, r in enumerate(self.model.rows):
                if (r.key, r.member) in keep:
                    idx = self.proxy.mapFromSource(self.model.index(i, 0))
                    sel.select(idx, sel.SelectionFlag.Select | sel.SelectionFlag.Rows)
        self._update_diff()

    def show_error(self, message: str) -> None:
        self.error.setText(f"The runs could not be loaded: {message}")
        self.error.setVisible(True)

    def selected_rows(self) -> list[RunRow]:
        idxs = self.table.selectionModel().selectedRows() if self.table.selectionModel() else []
        rows = sorted(self.proxy.mapToSource(i).row() for i in idxs)
        return [self.model.rows[r] for r in rows if r < len(self.model.rows)]

    def select_runs(self, names: list[str]) -> None:
        """Select the rows with these names (tests, screenshots)."""
        sel = self.table.selectionModel()
        sel.clearSelection()
        for i, r in enumerate(self.model.rows):
            if r.name in names:
                idx = self.proxy.mapFromSource(self.model.index(i, 0))
                sel.select(idx, sel.SelectionFlag.Select | sel.SelectionFlag.Rows)

    def column_values(self, column: str) -> list:
        """The displayed order of one column's values (tests)."""
        col = COLUMNS.index(column)
        return [self.model.value(self.model.rows[self.proxy.mapToSource(
            self.proxy.index(r, 0)).row()], col) for r in range(self.proxy.rowCount())]

    # ------------------------------------------------------------------ diff

    def diff_rows(self) -> list[tuple[str, object, object]]:
        rows = self.selected_rows()
        if len(rows) != 2:
            return []
        return diff_settings(rows[0].settings, rows[1].settings,
                             only_differences=self.diff_only.isChecked())

    def _update_diff(self, *_args) -> None:
        rows = self.selected_rows()
        if len(rows) != 2:
            self.diff_table.setRowCount(0)
            self.diff_table.setHorizontalHeaderLabels(["Setting", "A", "B"])
            self.diff_note.setText("Select two runs to compare their settings." if len(rows) < 2
                                   else f"{len(rows)} runs selected: select exactly two.")
            return
        diff = self.diff_rows()
        a, b = rows
        self.diff_table.setHorizontalHeaderLabels(["Setting", a.name, b.name])
        self.diff_table.setRowCount(len(diff))
        for r, (key, va, vb) in enumerate(diff):
            for c, text in enumerate((key, format_setting(va), format_setting(vb))):
                item = QTableWidgetItem(text)
                if c and not self.diff_only.isChecked() and format_setting(va) != format_setting(vb):
                    item.setBackground(Qt.yellow)
                self.diff_table.setItem(r, c, item)
        if self.diff_only.isChecked():
            self.diff_note.setText(f"{len(diff)} setting(s) differ." if diff else
                                   "The two runs have the same settings.")
        else:
            self.diff_note.setText("All settings; the ones that differ are highlighted.")
