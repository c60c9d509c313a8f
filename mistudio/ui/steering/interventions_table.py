"""The interventions being built: one row per feature with kind, slider and exact value."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QComboBox, QDoubleSpinBox, QHBoxLayout, QHeaderView, QSlider,
                               QTableWidget,
                               QTableWidgetItem, QToolButton, QWidget)

from mistudio.ui.steering.state import SLIDER_RANGE, FeatureRow

SLIDER_STEPS = 200


class CoefficientEditor(QWidget):
    """A slider for quick moves and a spin box for exact numbers, kept in step."""

    changed = Signal(float)

    def __init__(self, value: float, span: float, parent=None):
        super().__init__(parent)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(2, 0, 2, 0)
        self.span = span
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(-SLIDER_STEPS, SLIDER_STEPS)
        self.spin = QDoubleSpinBox()
        self.spin.setDecimals(3)
        self.spin.setRange(-1e6, 1e6)
        self.spin.setKeyboardTracking(False)
        lay.addWidget(self.slider, 1)
        lay.addWidget(self.spin)
        self.set_value(value)
        self.slider.valueChanged.connect(self._from_slider)
        self.spin.valueChanged.connect(self._from_spin)

    def set_value(self, value: float) -> None:
        self.spin.blockSignals(True)
        self.slider.blockSignals(True)
        self.spin.setValue(value)
        self.slider.setValue(int(round(max(-1, min(1, value / self.span)) * SLIDER_STEPS)))
        self.spin.blockSignals(False)
        self.slider.blockSignals(False)

    def _from_slider(self, pos: int) -> None:
        value = round(pos / SLIDER_STEPS * self.span, 3)
        self.spin.blockSignals(True)
        self.spin.setValue(value)
        self.spin.blockSignals(False)
        self.changed.emit(value)

    def _from_spin(self, value: float) -> None:
        self.slider.blockSignals(True)
        self.slider.setValue(int(round(max(-1, min(1, value / self.span)) * SLIDER_STEPS)))
        self.slider.blockSignals(False)
        self.changed.emit(value)


class InterventionsTable(QTableWidget):
    """Renders ``state.rows``; edits write straight back into them."""

    edited = Signal()
    removed = Signal()

    def __init__(self, parent=None):
        super().__init__(0, 4, parent)
        self.setHorizontalHeaderLabels(["Feature", "Action", "Coefficient / value", ""])
        self.verticalHeader().setVisible(False)
        header = self.horizontalHeader()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        self.setColumnWidth(0, 120)
        self.setColumnWidth(1, 78)
        self.setColumnWidth(3, 30)
        self.rows: list[FeatureRow] = []
        self.editors: list[CoefficientEditor] = []

    def render_rows(self, rows: list[FeatureRow], units: str) -> None:
        self.rows = rows
        self.editors = []
        self.setRowCount(0)  # drops the previous rows' widgets before new ones go in
        self.setRowCount(len(rows))
        for r, row in enumerate(rows):
            name = (f"vector: {row.label}" if row.kind == "vector" else
                    f"#{row.feature}" + (f"  {row.label}" if row.label else ""))
            item = QTableWidgetItem(name)
            item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsEditable)
            item.setToolTip(name)
            self.setItem(r, 0, item)
            kind = QComboBox()
            kind.addItems(["vector"] if row.kind == "vector" else ["add", "clamp", "ablate"])
            kind.setCurrentText(row.kind)
            kind.setToolTip("add: + value × the decoder direction; clamp: set the feature to "
                            "the value (the SAE's error term is kept); ablate: clamp to 0")
            kind.currentTextChanged.connect(lambda k, row=row, r=r: self._kind(row, r, k))
            self.setCellWidget(r, 1, kind)
            editor = CoefficientEditor(row.value, SLIDER_RANGE[units])
            editor.setEnabled(row.kind != "ablate")
            editor.changed.connect(lambda v, row=row: self._value(row, v))
            self.setCellWidget(r, 2, editor)
            self.editors.append(editor)
            rm = QToolButton()
            rm.setText("✕")
            rm.setToolTip("Remove this feature")
            rm.clicked.connect(lambda _=False, r=r: self._remove(r))
            self.setCellWidget(r, 3, rm)

    def _kind(self, row: FeatureRow, r: int, kind: str) -> None:
        row.kind = kind
        if kind == "ablate":
            row.value = 0.0
            self.editors[r].set_value(0.0)
        self.editors[r].setEnabled(kind != "ablate")
        self.edited.emit()

    def _value(self, row: FeatureRow, value: float) -> None:
        row.value = float(value)
        self.edited.emit()

    def _remove(self, r: int) -> None:
        del self.rows[r]
        self.removed.emit()
