"""Dataset cards: the dataset list drawn as cards by one delegate (model/view).

Each card shows the name, a status badge (with the running job's progress), what the
dataset holds, its tokenizations, its size on disk and where it came from. The rows come
from :class:`DatasetListModel`; nothing here holds a widget per dataset.
"""

from __future__ import annotations

from PySide6.QtCore import QRect, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QFont, QFontMetrics, QPainter, QPen
from PySide6.QtWidgets import QListView, QStyle, QStyledItemDelegate

from mistudio.paths import human_bytes

CARD_HEIGHT = 96
_MARGIN = 4
_BUSY_BADGE = ("#dbeafe", "#1e40af")
_BADGES = {"ready": ("#dcfce7", "#166534"), "failed": ("#fee2e2", "#991b1b"),
           "incomplete": ("#fef3c7", "#92400e"), "importing": _BUSY_BADGE,
           "downloading": _BUSY_BADGE, "converting": _BUSY_BADGE}


def source_text(rec) -> str:
    """Where a dataset came from, in a few words."""
    src = rec.source or {}
    spec = src.get("spec", {})
    if rec.source_kind == "hub":
        hub_id = src.get("hub_id") or spec.get("hub_id", "")
        config = src.get("config") or spec.get("config", "")
        split = src.get("split") or spec.get("split", "")
        return f"Hugging Face: {hub_id}" + (f" ({config})" if config else "") + (
            f" [{split}]" if split else "")
    if rec.source_kind == "local":
        return f"Local: {src.get('path') or spec.get('path', '')}"
    return "Demo: Wikipedia summaries, CC BY-SA 4.0"


def card_lines(rec, n_tokenizations: int, tokens_bytes: int) -> list[str]:
    """The card's lines under the name: contents; tokenizations and size; source."""
    contents = []
    if rec.n_docs is not None:
        contents.append(f"{rec.n_docs:,} documents")
    if rec.n_chars:
        contents.append(f"{rec.n_chars / 1e6:.1f}M characters" if rec.n_chars >= 1e6
                        else f"{rec.n_chars:,} characters")
    if not contents:
        contents.append("reading the source…" if rec.status == "importing" else rec.status)
    storage = ["not tokenized" if not n_tokenizations else
               f"{n_tokenizations} tokenization{'s' if n_tokenizations > 1 else ''}"]
    size = (rec.size_bytes or 0) + tokens_bytes
    if size:
        storage.append(f"{human_bytes(size)} on disk")
    return ["  ·  ".join(contents), "  ·  ".join(storage), source_text(rec)]


def paint_card(painter: QPainter, option, title: str, badge: str, status: str,
               lines: list[str]) -> None:
    """One card: rounded box (highlighted when selected), bold title, status badge on the
    right, then ``lines`` (the last one muted and elided in the middle: a path or a source)."""
    painter.save()
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    card = QRectF(option.rect.adjusted(_MARGIN, _MARGIN // 2, -_MARGIN, -_MARGIN // 2))
    selected = bool(option.state & QStyle.StateFlag.State_Selected)
    painter.setPen(QPen(QColor("#2563eb" if selected else "#d1d5db"), 2 if selected else 1))
    painter.setBrush(QColor("#eff6ff" if selected else "#ffffff"))
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
    bg, fg = _BADGES.get(status, ("#f3f4f6", "#374151"))
    painter.setPen(Qt.PenStyle.NoPen)
    painter.setBrush(QColor(bg))
    painter.drawRoundedRect(QRectF(badge_rect), 8, 8)
    painter.setFont(small)
    painter.setPen(QColor(fg))
    painter.drawText(badge_rect, Qt.AlignmentFlag.AlignCenter, badge)

    painter.setFont(bold)
    painter.setPen(QColor("#111827"))
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
        painter.setPen(QColor("#6b7280" if last else "#374151"))
        mode = Qt.TextElideMode.ElideMiddle if last else Qt.TextElideMode.ElideRight
        painter.drawText(QRect(inner.left(), y, inner.width(), line_h),
                         Qt.AlignmentFlag.AlignLeft, fm.elidedText(line, mode, inner.width()))
        y += line_h + 1
    painter.restore()


class DatasetCardDelegate(QStyledItemDelegate):
    def sizeHint(self, option, index) -> QSize:
        return QSize(max(option.rect.width(), 280), CARD_HEIGHT)

    def paint(self, painter: QPainter, option, index) -> None:
        model = index.model()
        rec = model.records[index.row()]
        progress = model.progress.get(rec.id)
        lines = card_lines(rec, model.tokenized.get(rec.id, 0), model.tokens_bytes.get(rec.id, 0))
        paint_card(painter, option, rec.name, rec.status + (f" {progress}" if progress else ""),
                   rec.status, lines)


class DatasetCardsView(QListView):
    """The dataset list as cards (one delegate paints every card)."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setItemDelegate(DatasetCardDelegate(self))
        self.setUniformItemSizes(True)
        self.setSelectionMode(QListView.SelectionMode.SingleSelection)
        self.setVerticalScrollMode(QListView.ScrollMode.ScrollPerPixel)
        self.setSpacing(0)
        self.setMouseTracking(True)
        self.setStyleSheet("QListView { background: #f9fafb; border: none; }")

    def select_row(self, row: int) -> None:
        self.setCurrentIndex(self.model().index(row, 0))
