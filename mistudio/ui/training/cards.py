"""Job cards: one per training, with status, progress, speed, ETA, key metrics and actions."""

from __future__ import annotations

from PySide6.QtCore import QRectF, Qt, Signal
from PySide6.QtGui import QColor, QPainter, QPen
from PySide6.QtWidgets import (QCheckBox, QFrame, QHBoxLayout, QLabel, QMenu, QProgressBar,
                               QPushButton, QScrollArea, QSizePolicy, QToolButton, QVBoxLayout,
                               QWidget)

from mistudio.ui.kit.labels import StatusChip, hint_label
from mistudio.ui.kit.palette import colour, css

ACTIVE_STATUSES = ("queued", "running", "paused", "extracting")
#: Badge texts; "can resume" only where a checkpoint exists (``can_resume``), since an
#: interruption before the first checkpoint leaves nothing to resume from.
STATUS_TEXT = {("interrupted", True): "interrupted — can resume",
               ("interrupted", False): "interrupted — no checkpoint",
               ("resumed", False): "resumed — continued by a later job"}


def format_eta(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds < 0:
        return "–"
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds}s"


def format_rate(tokens_per_s: float | None) -> str:
    if tokens_per_s is None:
        return "–"
    if tokens_per_s >= 1e6:
        return f"{tokens_per_s / 1e6:.2f}M tok/s"
    if tokens_per_s >= 1e3:
        return f"{tokens_per_s / 1e3:.1f}k tok/s"
    return f"{tokens_per_s:.0f} tok/s"


class JobCard(QFrame):
    """Emits ``action(name, job_id)`` for pause/resume/cancel/resume_checkpoint/duplicate/
    delete/export, ``compare(job_id, on)`` and ``selected(job_id)``."""

    action = Signal(str, str)
    compare = Signal(str, bool)
    selected = Signal(str)

    def __init__(self, job_id: str, title: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.job_id = job_id
        self.status = ""
        self.can_resume = False
        self._selected = False
        self.setObjectName(f"card:{job_id}")
        # The frame is painted (paintEvent), not styled: a style sheet on the card re-polishes
        # its dozen children on every set (~1.5 ms a card) and selecting restyled every card.
        self.setFrameShape(QFrame.NoFrame)
        policy = QSizePolicy(QSizePolicy.Preferred, QSizePolicy.Minimum)
        policy.setHeightForWidth(True)  # wrapped titles and messages get their lines
        self.setSizePolicy(policy)

        self.title = QLabel(f"<b>{title}</b>")
        self.title.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.title.setWordWrap(True)  # a long name must not widen every card
        self.badge = StatusChip()
        self.badge.setObjectName("badge")
        self.compare_box = QCheckBox("Compare")
        self.compare_box.setToolTip("Overlay this run on the charts")
        self.compare_box.toggled.connect(lambda on: self.compare.emit(self.job_id, on))
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setFixedHeight(14)
        self.progress.setTextVisible(False)
        self.stats = QLabel("–")
        self.stats.setObjectName("stats")
        self.metrics = QLabel("")
        self.metrics.setObjectName("metrics")
        self.metrics.setStyleSheet(css("text.secondary"))
        self.message = hint_label()

        self.pause_btn = QPushButton("Pause")
        self.pause_btn.clicked.connect(self._pause_or_resume)
        self.cancel_btn = QPushButton("Cancel")
        self.cancel_btn.setToolTip("Stop now; a checkpoint is written so it can resume later")
        self.cancel_btn.clicked.connect(lambda: self.action.emit("cancel", self.job_id))
        self.resume_ckpt_btn = QPushButton("Resume")
        self.resume_ckpt_btn.setToolTip("Continue from the last checkpoint")
        self.resume_ckpt_btn.clicked.connect(
            lambda: self.action.emit("resume_checkpoint", self.job_id))
        self.more_btn = QToolButton(text="More ▾")
        self.more_btn.setPopupMode(QToolButton.InstantPopup)
        menu = QMenu(self.more_btn)
        self.duplicate_act = menu.addAction("Duplicate as new training…",
                                            lambda: self.action.emit("duplicate", self.job_id))
        self.export_act = menu.addAction("Export SAE (SAELens folder)…",
                                         lambda: self.action.emit("export", self.job_id))
        menu.addSeparator()
        self.delete_act = menu.addAction("Delete with its files…",
                                         lambda: self.action.emit("delete", self.job_id))
        self.more_btn.setMenu(menu)

        top = QHBoxLayout()
        top.addWidget(self.title, 1)
        top.addWidget(self.badge, 0, Qt.AlignTop)
        buttons = QHBoxLayout()
        buttons.addWidget(self.compare_box)
        buttons.addStretch(1)
        for b in (self.pause_btn, self.cancel_btn, self.resume_ckpt_btn, self.more_btn):
            buttons.addWidget(b)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(8, 6, 8, 6)
        lay.setSpacing(3)
        lay.addLayout(top)
        lay.addWidget(self.progress)
        lay.addWidget(self.stats)
        lay.addWidget(self.metrics)
        lay.addWidget(self.message)
        lay.addLayout(buttons)

    def mousePressEvent(self, event) -> None:
        self.selected.emit(self.job_id)
        super().mousePressEvent(event)

    def set_selected(self, on: bool) -> None:
        if on != self._selected:
            self._selected = on
            self.update()

    def is_selected(self) -> bool:
        return self._selected

    def paintEvent(self, event) -> None:
        """The card's rounded frame: a 2 px selection border, else a 1 px one."""
        on = self._selected
        width = 2 if on else 1
        painter = QPainter(self)
        painter.setRenderHint(QPainter.Antialiasing)
        painter.setPen(QPen(QColor(colour("border.selected" if on else "border.card")), width))
        painter.setBrush(QColor(colour("surface.selected" if on else "surface")))
        half = width / 2
        painter.drawRoundedRect(QRectF(self.rect()).adjusted(half, half, -half, -half), 6, 6)
        painter.end()

    def _pause_or_resume(self) -> None:
        self.action.emit("resume" if self.status == "paused" else "pause", self.job_id)

    def set_status(self, status: str, *, can_resume: bool = False, message: str = "",
                   pausable: bool = True) -> None:
        self.status = status
        self.can_resume = can_resume
        self.badge.set_status(status, STATUS_TEXT.get((status, can_resume), status))
        active = status in ACTIVE_STATUSES
        self.pause_btn.setVisible(status in ("running", "paused") and pausable)
        self.pause_btn.setText("Continue" if status == "paused" else "Pause")
        self.cancel_btn.setVisible(active)
        self.resume_ckpt_btn.setVisible(not active and can_resume and status != "completed")
        self.delete_act.setEnabled(not active)
        self.export_act.setEnabled(status == "completed")
        self.message.setText(message)
        self.message.setVisible(bool(message))
        self._fit_message()
        if status == "completed":
            self.progress.setValue(1000)

    def _fit_message(self) -> None:
        # The card list's scroll area ignores height-for-width: reserve the wrapped lines.
        margins = self.layout().contentsMargins()
        width = self.contentsRect().width() - margins.left() - margins.right()
        self.message.setMinimumHeight(self.message.heightForWidth(max(width - 24, 120))
                                      if self.message.text() else 0)

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        if self.message.text():
            self._fit_message()

    def set_progress(self, fraction: float | None, *, step: float | None = None,
                     total: float | None = None, eta_s: float | None = None,
                     tokens_per_s: float | None = None) -> None:
        if fraction is not None:
            self.progress.setValue(int(1000 * max(0.0, min(1.0, fraction))))
        parts = []
        if fraction is not None:
            parts.append(f"{100 * fraction:.1f}%")
        if step is not None and total:
            parts.append(f"step {int(step):,}/{int(total):,}")
        parts.append(format_rate(tokens_per_s))
        if self.status == "running":
            parts.append(f"ETA {format_eta(eta_s)}")
        self.stats.setText(" · ".join(parts))

    def set_metrics(self, values: dict[str, float | None]) -> None:
        labels = {"loss": "loss", "l0": "L0", "explained_variance": "EV",
                  "dead_fraction": "dead"}
        parts = []
        for key, label in labels.items():
            v = values.get(key)
            if v is None:
                continue
            parts.append(f"{label} {v:.1%}" if key == "dead_fraction" else f"{label} {v:.4g}")
        self.metrics.setText(" · ".join(parts))


class JobCardList(QScrollArea):
    """A vertical stack of cards, newest first; one is selected at a time."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWidgetResizable(True)
        self.host = QWidget()
        self.box = QVBoxLayout(self.host)
        self.box.setContentsMargins(4, 4, 4, 4)
        self.box.setSpacing(6)
        self.box.addStretch(1)
        self.setWidget(self.host)
        self.cards: dict[str, JobCard] = {}
        self.selected_id: str | None = None

    def card(self, job_id: str) -> JobCard | None:
        return self.cards.get(job_id)

    def add_card(self, card: JobCard, *, top: bool = True) -> JobCard:
        self.cards[card.job_id] = card
        self.box.insertWidget(0 if top else self.box.count() - 1, card)
        card.selected.connect(self.select)
        card.set_selected(card.job_id == self.selected_id)
        return card

    def remove_card(self, job_id: str) -> None:
        card = self.cards.pop(job_id, None)
        if card is not None:
            self.box.removeWidget(card)
            card.deleteLater()
        if self.selected_id == job_id:
            self.selected_id = None

    def select(self, job_id: str | None) -> None:
        """Only the cards whose state changes repaint (500 cards: no pass over all)."""
        previous = self.cards.get(self.selected_id) if self.selected_id else None
        if previous is not None:
            previous.set_selected(False)
        self.selected_id = job_id
        card = self.cards.get(job_id) if job_id else None
        if card is not None:
            card.set_selected(True)
