"""Cards drawn by a delegate (model/view): a rounded box with a title, a status badge and a
few lines. The Datasets and Models lists draw their rows with it."""

from __future__ import annotations

from PySide6.QtCore import QRect, QRectF, Qt
from PySide6.QtGui import QColor, QFont, QFontMetrics, QPainter, QPen
from PySide6.QtWidgets import QStyle

from mistudio.ui.kit.palette import badge_colours, colour

_MARGIN = 4


def paint_card(painter: QPainter, option, title: str, badge: str, status: str,
               lines: list[str]) -> None:
    """One card: rounded box (highlighted when selected), bold title, status badge on the
    right, then ``lines`` (the last one muted and elided in the middle: a path or a source)."""
    painter.save()
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    card = QRectF(option.rect.adjusted(_MARGIN, _MARGIN // 2, -_MARGIN, -_MARGIN // 2))
    selected = bool(option.state & QStyle.StateFlag.State_Selected)
    painter.setPen(QPen(QColor(colour("border.selected" if selected else "border")), 2 if selected else 1))
    painter.setBrush(QColor(colour("surface.selected" if selected else "surface")))
    painter.drawRoundedRect(card, 6, 6)

    inner = card.toRect().adjusted(10, 6, -10, -6)
    base = QFont(option.font)
    bold = QFont(base)
    bold.setBold(True)
    bold.setPointSizeF(base.pointSizeF() * 1.08)
    line_h = QFontMetrics(base).height()

    small = QFont(base)
    small.setPointSizeF(base.pointSizeF() * 0.9)
    fm_small = QFontMetrics(small)
    bw = fm_small.horizontalAdvance(badge) + 14
    badge_rect = QRect(inner.right() - bw, inner.top(), bw, fm_small.height() + 4)
    bg, fg = badge_colours(status)
    painter.setPen(Qt.PenStyle.NoPen)
    painter.setBrush(QColor(bg))
    painter.drawRoundedRect(QRectF(badge_rect), 8, 8)
    painter.setFont(small)
    painter.setPen(QColor(fg))
    painter.drawText(badge_rect, Qt.AlignmentFlag.AlignCenter, badge)

    painter.setFont(bold)
    painter.setPen(QColor(colour("text.strong")))
    name_rect = QRect(inner.left(), inner.top(), inner.width() - bw - 8,
                      QFontMetrics(bold).height() + 2)
    painter.drawText(name_rect, Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
                     QFontMetrics(bold).elidedText(title, Qt.TextElideMode.ElideRight,
                                                   name_rect.width()))
    painter.setFont(base)
    fm = QFontMetrics(base)
    y = name_rect.bottom() + 3
    for i, line in enumerate(lines):
        last = i == len(lines) - 1
        painter.setPen(QColor(colour("text.muted" if last else "text")))
        mode = Qt.TextElideMode.ElideMiddle if last else Qt.TextElideMode.ElideRight
        painter.drawText(QRect(inner.left(), y, inner.width(), line_h),
                         Qt.AlignmentFlag.AlignLeft, fm.elidedText(line, mode, inner.width()))
        y += line_h + 1
    painter.restore()
