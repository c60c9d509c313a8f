"""Small labels every tab uses: the grey hint under a control, and status chips (a job's or a
run's status on a coloured rounded badge, as a widget or painted by a delegate)."""

from __future__ import annotations

from PySide6.QtCore import QRect, Qt
from PySide6.QtGui import QColor, QPainter
from PySide6.QtWidgets import QLabel, QWidget

from mistudio.ui.kit.palette import colour, css, status_colour


def hint_label(text: str = "", parent: QWidget | None = None, *, small: bool = True,
               wrap: bool = True) -> QLabel:
    """The muted line that explains a control (smaller type unless ``small=False``)."""
    label = QLabel(text, parent)
    label.setWordWrap(wrap)
    label.setStyleSheet(css("text.muted", "font-size: 8pt" if small else ""))
    return label


class StatusChip(QLabel):
    """A status on a rounded badge of its colour; ``set_status(status, text)``."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.status = ""

    def set_status(self, status: str, text: str | None = None) -> None:
        self.status = status
        self.setText(status if text is None else text)
        self.setStyleSheet(f"background: {status_colour(status)}; "
                           f"color: {colour('text.on_status')}; border-radius: 7px; "
                           "padding: 1px 8px; font-size: 8pt")


def paint_status_chip(painter: QPainter, rect: QRect, status: str, text: str) -> None:
    """The same chip drawn by a delegate into ``rect``."""
    painter.save()
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setPen(Qt.PenStyle.NoPen)
    painter.setBrush(QColor(status_colour(status)))
    painter.drawRoundedRect(rect, 8, 8)
    painter.setPen(QColor(colour("text.on_status")))
    painter.drawText(rect, Qt.AlignmentFlag.AlignCenter, text)
    painter.restore()
