"""Model cards: the models list drawn by one delegate (status badge, shape, size, source).

The list stays a ``QListWidget`` whose items carry the card's text (for accessibility and
tests) and the model record (``RECORD_ROLE``) the delegate paints from.
"""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt
from PySide6.QtWidgets import QStyledItemDelegate

from mistudio.paths import human_bytes
from mistudio.ui.datasets.cards import paint_card

RECORD_ROLE = Qt.ItemDataRole.UserRole + 1
CARD_HEIGHT = 96
_SOURCES = {"hub": "Hugging Face", "local": "Local folder", "gguf": "GGUF", "demo": "Demo"}


def model_card_lines(rec) -> list[str]:
    """Under the name: shape and size; weights; where it came from."""
    shape = "  ·  ".join(x for x in (
        rec.family, f"{rec.n_layers} layers × {rec.d_model}" if rec.n_layers else "",
        f"{rec.n_params / 1e6:.1f}M parameters" if rec.n_params else "") if x)
    weights = "  ·  ".join(x for x in (
        rec.dtype, f"{human_bytes(rec.size_bytes)} on disk" if rec.size_bytes else "",
        f"saved: {', '.join(rec.variants)}" if rec.variants else "",
        "linked folder" if rec.linked else "") if x)
    if rec.status != "ready" and rec.error:
        weights = rec.error
    source = f"{_SOURCES.get(rec.source, rec.source)}: {rec.source_ref}" + (
        f" @ {rec.revision}" if rec.revision else "")
    return [shape or "reading…", weights or rec.status, source]


class ModelCardDelegate(QStyledItemDelegate):
    def sizeHint(self, option, index) -> QSize:
        return QSize(max(option.rect.width(), 260), CARD_HEIGHT)

    def paint(self, painter, option, index) -> None:
        rec = index.data(RECORD_ROLE)
        if rec is None:
            super().paint(painter, option, index)
            return
        paint_card(painter, option, rec.name, rec.status, rec.status, model_card_lines(rec))
