"""Dataset cards: the dataset list drawn as cards by one delegate (model/view).

Each card shows the name, a status badge (with the running job's progress), what the
dataset holds, its tokenizations, its size on disk and where it came from. The rows come
from :class:`DatasetListModel`; nothing here holds a widget per dataset.
"""

from __future__ import annotations

from PySide6.QtCore import QSize
from PySide6.QtGui import QPainter
from PySide6.QtWidgets import QListView, QStyledItemDelegate

from mistudio.paths import human_bytes
from mistudio.ui.kit.cards import paint_card
from mistudio.ui.kit.palette import colour

CARD_HEIGHT = 96


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
        self.setStyleSheet(f"QListView {{ background: {colour('surface.list')}; border: none; }}")

    def select_row(self, row: int) -> None:
        self.setCurrentIndex(self.model().index(row, 0))
