"""One sequence drawn as token chips: boundaries visible, id and raw form on hover,
padding (past the real length) dimmed. Painted in one widget, so a 4k-token context
costs one paint, not thousands of child widgets."""

from __future__ import annotations

from PySide6.QtCore import QEvent, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QFontMetrics, QPainter, QPen
from PySide6.QtWidgets import QSizePolicy, QToolTip, QWidget

from mistudio.ui.kit.palette import chip_colours, colour

_PAD_X, _PAD_Y, _GAP = 4, 2, 3


def visible_token(text: str) -> str:
    """Whitespace made visible so chip boundaries read clearly."""
    return text.replace(" ", "·").replace("\n", "↵").replace("\t", "→") or "∅"


class TokenChipsView(QWidget):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.ids: list[int] = []
        self.texts: list[str] = []
        self.raw: list[str] = []
        self.length = 0
        self.special: set[int] = set()
        self._rects: list[QRectF] = []
        self._laid_width = -1
        self.setMouseTracking(True)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)

    def set_sequence(self, ids: list[int], texts: list[str], raw: list[str], length: int,
                     special: set[int] | None = None) -> None:
        self.ids, self.texts, self.raw, self.length = list(ids), list(texts), list(raw), length
        self.special = set(special or ())
        self._laid_width = -1
        self._layout()
        self.updateGeometry()
        self.update()

    def clear(self) -> None:
        self.set_sequence([], [], [], 0)

    def _layout(self) -> None:
        fm = QFontMetrics(self.font())
        width = max(200, self.width())
        x = y = 0.0
        h = fm.height() + 2 * _PAD_Y
        rects = []
        for text in self.texts:
            w = fm.horizontalAdvance(visible_token(text)) + 2 * _PAD_X
            if x > 0 and x + w > width:
                x, y = 0.0, y + h + _GAP
            rects.append(QRectF(x, y, w, h))
            x += w + _GAP
        self._rects = rects
        self._laid_width = width
        self._height = int(y + h + _GAP) if rects else h

    def heightForWidth(self, width: int) -> int:
        return getattr(self, "_height", 20)

    def hasHeightForWidth(self) -> bool:
        return True

    def sizeHint(self) -> QSize:
        return QSize(400, getattr(self, "_height", 20))

    def resizeEvent(self, event) -> None:
        if event.size().width() != self._laid_width:
            self._layout()
            self.setMinimumHeight(self._height)
        super().resizeEvent(event)

    def paintEvent(self, event) -> None:
        if self._laid_width != max(200, self.width()):
            self._layout()
            self.setMinimumHeight(self._height)
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        chips = chip_colours()
        for i, (rect, text) in enumerate(zip(self._rects, self.texts)):
            if not rect.intersects(QRectF(event.rect())):
                continue
            padding = i >= self.length
            special = self.ids[i] in self.special
            color = QColor(colour("surface.chip")) if padding else QColor(
                colour("surface.chip.special") if special else chips[i % len(chips)])
            p.setPen(QPen(QColor(colour("text.faint" if padding else "text.muted")), 0.6))
            p.setBrush(color)
            p.drawRoundedRect(rect, 3, 3)
            p.setPen(QColor(colour("text.faint" if padding else "text.strong")))
            p.drawText(rect, Qt.AlignmentFlag.AlignCenter, visible_token(text))
        p.end()

    def token_at(self, x: float, y: float) -> int:
        for i, rect in enumerate(self._rects):
            if rect.contains(x, y):
                return i
        return -1

    def tooltip_for(self, i: int) -> str:
        kind = "padding" if i >= self.length else ("special" if self.ids[i] in self.special
                                                     else "token")
        return (f"position {i} · id {self.ids[i]} · {kind}\n"
                f"text: {self.texts[i]!r}\nraw: {self.raw[i]!r}")

    def event(self, e) -> bool:
        if e.type() == QEvent.Type.ToolTip:
            i = self.token_at(e.pos().x(), e.pos().y())
            if i >= 0:
                QToolTip.showText(e.globalPos(), self.tooltip_for(i), self)
            else:
                QToolTip.hideText()
                e.ignore()
            return True
        return super().event(e)
