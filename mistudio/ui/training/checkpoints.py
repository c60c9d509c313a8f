"""The checkpoint manager of one training: list with step and metrics; resume, export, delete."""

from __future__ import annotations

import datetime as _dt

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QAbstractItemView, QHBoxLayout, QHeaderView, QLabel,
                               QPushButton, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

from mistudio.paths import human_bytes
from mistudio.sae.checkpoints import CheckpointInfo
from mistudio.ui.kit.labels import hint_label

COLUMNS = ("Step", "Tokens", "Saved", "Loss", "L0", "Expl. var.", "Size")


def _first_member_metrics(metrics: dict) -> dict:
    """meta.json stores {member: {metric: value}}; show the first member's."""
    if not metrics:
        return {}
    first = next(iter(metrics.values()))
    return first if isinstance(first, dict) else metrics


class CheckpointManager(QWidget):
    """Emits ``resume_requested(path)``, ``delete_requested(path)``, ``export_requested()``
    (the finished SAE) and ``export_checkpoint_requested(path)`` (the selected checkpoint)."""

    resume_requested = Signal(str)
    delete_requested = Signal(str)
    export_requested = Signal()
    export_checkpoint_requested = Signal(str)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.entries: list[CheckpointInfo] = []
        self.title = QLabel("No training selected.")
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.Stretch)
        self.table.itemSelectionChanged.connect(self._update_buttons)
        self.resume_btn = QPushButton("Resume from this checkpoint")
        self.resume_btn.clicked.connect(
            lambda: self.selected() and self.resume_requested.emit(self.selected().path))
        self.export_ckpt_btn = QPushButton("Export this checkpoint (SAELens)…")
        self.export_ckpt_btn.setToolTip("Save the SAE(s) as they were at this checkpoint as "
                                        "SAELens folders (input normalisation folded in)")
        self.export_ckpt_btn.clicked.connect(
            lambda: self.selected() and self.export_checkpoint_requested.emit(
                self.selected().path))
        self.export_btn = QPushButton("Export final SAE (SAELens folder)…")
        self.export_btn.clicked.connect(self.export_requested.emit)
        self.delete_btn = QPushButton("Delete checkpoint…")
        self.delete_btn.clicked.connect(
            lambda: self.selected() and self.delete_requested.emit(self.selected().path))
        self.note = hint_label(small=False)
        buttons = QHBoxLayout()
        for b in (self.resume_btn, self.export_ckpt_btn, self.export_btn, self.delete_btn):
            buttons.addWidget(b)
        buttons.addStretch(1)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.title)
        lay.addWidget(self.table, 1)
        lay.addWidget(self.note)
        lay.addLayout(buttons)
        self.running = False
        self.completed = False
        self._update_buttons()

    def set_checkpoints(self, title: str, entries: list[CheckpointInfo], *, running: bool,
                        completed: bool) -> None:
        self.title.setText(title)
        self.entries = list(reversed(entries))  # newest first
        self.running, self.completed = running, completed
        self.table.setRowCount(len(self.entries))
        for r, e in enumerate(self.entries):
            m = _first_member_metrics(e.metrics)
            saved = _dt.datetime.fromtimestamp(e.created_at).strftime("%Y-%m-%d %H:%M:%S") \
                if e.created_at else "–"
            cells = [f"{e.step:,}", f"{e.tokens:,}", saved, _num(m.get("loss")),
                     _num(m.get("l0")), _num(m.get("explained_variance")),
                     human_bytes(e.size_bytes)]
            for c, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if c not in (2,):
                    item.setTextAlignment(Qt.AlignRight | Qt.AlignVCenter)
                self.table.setItem(r, c, item)
        if self.entries:
            self.table.selectRow(0)
        if running:
            self.note.setText("The training is running: it writes and prunes its checkpoints "
                              "itself. Pause or cancel it to resume from an older one.")
        elif not self.entries:
            self.note.setText("No checkpoints yet. Set 'checkpoint every tokens' to save "
                              "them during training; one is always saved at the end and when "
                              "a training is cancelled.")
        else:
            self.note.setText("")
        self._update_buttons()

    def selected(self) -> CheckpointInfo | None:
        rows = self.table.selectionModel().selectedRows()
        return self.entries[rows[0].row()] if rows else None

    def _update_buttons(self) -> None:
        has = self.selected() is not None
        self.resume_btn.setEnabled(has and not self.running)
        self.delete_btn.setEnabled(has and not self.running)
        self.export_ckpt_btn.setEnabled(has)
        self.export_btn.setEnabled(self.completed)


def _num(v) -> str:
    return "–" if v is None else f"{v:.4g}"
