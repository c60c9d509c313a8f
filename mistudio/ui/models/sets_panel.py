"""The list of activation sets with their statistics and norm histogram.

The sets (hundreds in a long-used data folder) and their display text are read on the
panel's background thread; the table's columns are sized once from that text.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QAbstractTableModel, QModelIndex, Qt, Signal
from PySide6.QtWidgets import (QHBoxLayout, QHeaderView, QLabel, QPushButton, QSplitter,
                               QTableView, QVBoxLayout, QWidget)

from mistudio.errors import describe_exception
from mistudio.paths import human_bytes
from mistudio.ui.kit.background import BackgroundCalls
from mistudio.ui.kit.palette import colour, span
from mistudio.ui.kit.table_columns import fit_columns_to_text
from mistudio.ui.models.precision import precision_label

COLUMNS = [("id", "Id"), ("hook_name", "Hook point"), ("status", "Status"), ("pinned", "Pinned"),
           ("num_rows", "Tokens"), ("d_in", "d"), ("dtype", "Dtype"),
           ("precision", "Model precision"), ("mean_norm", "Mean norm"),
           ("size_bytes", "Size"), ("model_id", "Model"), ("created_at", "Created")]
_RIGHT = {"num_rows", "d_in", "mean_norm", "size_bytes"}


class ActivationSetsModel(QAbstractTableModel):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.rows: list = []
        self.model_names: dict[str, str] = {}
        self.cells: list[list[str]] = []  # the display text, row by row

    def set_rows(self, rows: list, model_names: dict[str, str] | None = None,
                 cells: list[list[str]] | None = None) -> None:
        """``cells``: the rows' display text when the caller made it (off the GUI thread)."""
        self.beginResetModel()
        self.rows = rows
        self.model_names = dict(model_names or {})
        self.cells = cells if cells is not None else display_cells(rows, self.model_names)
        self.endResetModel()

    def rowCount(self, parent=QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent=QModelIndex()) -> int:
        return len(COLUMNS)

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            return COLUMNS[section][1]
        return None

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        if role == Qt.ItemDataRole.DisplayRole:  # the hot path: text made beforehand
            return self.cells[index.row()][index.column()]
        rec = self.rows[index.row()]
        key = COLUMNS[index.column()][0]
        if key == "precision":
            if role == Qt.ItemDataRole.ToolTipRole:
                return "The precision the model was loaded in for this extraction."
            return None
        value = rec.summary.get(key) if key == "mean_norm" else getattr(rec, key)
        if role == Qt.ItemDataRole.ToolTipRole and key == "status":
            return rec.summary.get("error") or rec.status
        if role == Qt.ItemDataRole.ToolTipRole and key == "pinned":
            return ("Pinned: the cleanup rule 'keep the last N activation sets' never deletes "
                    "it." if value else "Not pinned.")
        if role == Qt.ItemDataRole.ToolTipRole and key == "model_id":
            return value
        if role == Qt.ItemDataRole.TextAlignmentRole and key in _RIGHT:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None


def cell_text(rec, key: str, model_names: dict[str, str]) -> str:
    """What the table shows for ``rec`` in column ``key``."""
    if key == "precision":
        return set_precision(rec)
    value = rec.summary.get(key) if key == "mean_norm" else getattr(rec, key)
    if key == "mean_norm":
        return "" if value is None else f"{value:,.2f}"
    if key == "model_id":
        return model_names.get(value, value or "")
    if key == "num_rows":
        return f"{value or 0:,}"
    if key == "size_bytes":
        return human_bytes(value or 0)
    if key == "created_at":
        return (value or "")[:19].replace("T", " ")
    if key == "pinned":
        return "pinned" if value else ""
    return "" if value is None else str(value)


def display_cells(rows: list, model_names: dict[str, str]) -> list[list[str]]:
    return [[cell_text(rec, key, model_names) for key, _ in COLUMNS] for rec in rows]


def read_sets(studio) -> tuple[list, dict, list]:
    """The activation sets, the names of their models and the table's text (background)."""
    rows = studio.activations.list()
    try:
        names = {m.id: m.name for m in studio.models.list()}
    except Exception:  # names are a nicety; ids still identify the model
        names = {}
    return rows, names, display_cells(rows, names)


def set_precision(rec, meta: dict | None = None) -> str:
    """The model precision a set was extracted with: quantization (or saved copy) from its
    extraction settings, the dtype as resolved by the job (meta.json) when known."""
    p = rec.params or {}
    dtype = ((meta or {}).get("model_dtype") or (rec.summary or {}).get("model_dtype")
             or p.get("model_dtype", ""))
    return precision_label(p.get("quantization") or "none", p.get("variant") or "",
                           dtype if dtype != "auto" else "")


def _read_meta(folder: str) -> dict:
    import json
    from pathlib import Path

    try:
        meta = json.loads((Path(folder) / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


class ActivationSetsPanel(QWidget):
    error = Signal(str)

    def __init__(self, studio, parent: QWidget | None = None):
        super().__init__(parent)
        self.studio = studio
        lay = QVBoxLayout(self)
        split = QSplitter(Qt.Orientation.Vertical)
        self.model = ActivationSetsModel(self)
        self.view = QTableView()
        self.view.setModel(self.model)
        self.view.setSelectionBehavior(QTableView.SelectionBehavior.SelectRows)
        self.view.setSelectionMode(QTableView.SelectionMode.SingleSelection)
        # sized once from the first rows' text (fit_columns_to_text), then left to the user
        self.view.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self._sized = False
        self._loaded = False
        self._wanted: str | None = None  # a set to select once the list has it
        self.calls = BackgroundCalls(self, name="activation-sets")
        self.view.selectionModel().currentRowChanged.connect(lambda cur, _p: self._show(cur))
        split.addWidget(self.view)
        detail = QWidget()
        dl = QHBoxLayout(detail)
        self.stats = QLabel("Select an activation set.")
        self.stats.setWordWrap(True)
        self.stats.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        dl.addWidget(self.stats, 1)
        self.plot = pg.PlotWidget()
        self.plot.setBackground("w")  # as the Datasets statistics
        self.plot.showGrid(x=True, y=True, alpha=0.2)
        self.plot.setTitle("Token norms")
        self.plot.setLabel("bottom", "L2 norm")
        self.plot.setLabel("left", "tokens")
        self.plot.setMinimumHeight(160)
        self.bars: pg.BarGraphItem | None = None
        dl.addWidget(self.plot, 2)
        split.addWidget(detail)
        lay.addWidget(split, 1)
        row = QHBoxLayout()
        self.resume_btn = QPushButton("Resume")
        self.resume_btn.clicked.connect(self._resume)
        self.delete_btn = QPushButton("Delete")
        self.delete_btn.clicked.connect(self._delete)
        self.pin_btn = QPushButton("Pin")
        self.pin_btn.setToolTip("A pinned set is kept by the cleanup rule that keeps only the "
                                "newest activation sets (File > Storage > Cleanup).")
        self.pin_btn.clicked.connect(self._toggle_pin)
        row.addWidget(self.resume_btn)
        row.addWidget(self.pin_btn)
        row.addWidget(self.delete_btn)
        row.addStretch(1)
        lay.addLayout(row)

    def reload(self, select: str | None = None) -> None:
        """Read the sets in the background; ``select`` one once it is listed (else the
        selected one stays selected)."""
        if select:
            self._wanted = select
        studio = self.studio
        self.calls.call("sets", lambda: read_sets(studio), self._show_rows,
                        self.error.emit)

    def is_loaded(self) -> bool:
        return self._loaded and not self.calls.busy()

    def _show_rows(self, result) -> None:
        rows, names, cells = result
        selected = self.selected()
        keep = self._wanted or (selected.id if selected is not None else None)
        self._wanted = None
        self._loaded = True
        self.model.set_rows(rows, names, cells)
        if cells and not self._sized:
            fit_columns_to_text(self.view, [title for _, title in COLUMNS], cells)
            self._sized = True
        row = next((i for i, r in enumerate(rows) if r.id == keep), 0)
        if rows:
            self.view.selectRow(row)  # the statistics of a set are always on show
        else:
            self._show(QModelIndex())

    def selected(self):
        idx = self.view.selectionModel().currentIndex()
        return self.model.rows[idx.row()] if idx.isValid() and idx.row() < len(
            self.model.rows) else None

    def select_id(self, set_id: str) -> None:
        for i, r in enumerate(self.model.rows):
            if r.id == set_id:
                self.view.selectRow(i)
                return

    def _show(self, index) -> None:
        rec = self.model.rows[index.row()] if index.isValid() else None
        self.plot.clear()
        self.bars = None
        if rec is None:
            self.stats.setText("Select an activation set." if self.model.rows else
                               "No activation sets yet: extract some in the Extract "
                               "activations tab.")
            return
        self.resume_btn.setEnabled(rec.status == "incomplete")
        self.pin_btn.setText("Unpin" if rec.pinned else "Pin")
        s = rec.summary
        lines = [f"<b>{rec.name or rec.id}</b>", f"{rec.hook_name} (layer {rec.hook_layer})",
                 f"{rec.num_rows or 0:,} tokens x {rec.d_in}, {rec.dtype}, "
                 f"{human_bytes(rec.size_bytes or 0)}"]
        meta = _read_meta(rec.folder)
        device = meta.get("device") or (rec.params or {}).get("device", "")
        lines.append(f"Model precision: {set_precision(rec, meta)}"
                     + (f" on {device}" if device and device != "auto" else ""))
        lines.append(f"Folder: {rec.folder}")
        if s.get("mean_norm") is not None:
            lines.append(f"Norm: mean {s['mean_norm']:.3f}, median {s['median_norm']:.3f}, "
                         f"std {s['std_norm']:.3f}, max {s['max_norm']:.3f}")
            lines.append(f"Mean per-dimension std {s['mean_std']:.4f}; total variance "
                         f"{s['total_variance']:.3f}")
            hist = s.get("norm_hist") or {}
            counts = np.asarray(hist.get("counts", []), dtype=float)
            edges = np.asarray(hist.get("edges", []), dtype=float)
            if counts.size:
                self.bars = pg.BarGraphItem(x0=edges[:-1], x1=edges[1:], height=counts,
                                            brush=colour("bar.strong"))
                self.plot.addItem(self.bars)
        if s.get("error"):
            lines.append(span("error", s["error"]))
        self.stats.setText("<br>".join(lines))

    def shutdown(self) -> None:
        self.calls.close()

    def _resume(self) -> None:
        rec = self.selected()
        if rec is None:
            return
        try:
            self.studio.activations.resume_extraction(rec.id)
        except Exception as exc:
            self.error.emit(describe_exception(exc))
        self.reload()

    def _toggle_pin(self) -> None:
        rec = self.selected()
        if rec is None:
            return
        try:
            self.studio.activations.set_pinned(rec.id, not rec.pinned)
        except Exception as exc:
            self.error.emit(describe_exception(exc))
        self.reload()

    def _delete(self) -> None:
        from mistudio.ui.dialogs import confirm

        rec = self.selected()
        if rec is None or not confirm(self, "Delete activation set",
                                      f"Delete {rec.id} ({human_bytes(rec.size_bytes or 0)})?",
                                      destructive=True):
            return
        try:
            self.studio.activations.delete(rec.id)
        except Exception as exc:
            self.error.emit(describe_exception(exc))
        self.reload()
