"""Model cards: the models list drawn by one delegate (status badge, shape, size, source).

The list stays a ``QListWidget`` whose items carry the card's text (for accessibility and
tests) and the model record (``RECORD_ROLE``) the delegate paints from.
"""

from __future__ import annotations

from PySide6.QtCore import QRect, QSize, Qt
from PySide6.QtGui import QColor, QFontMetrics
from PySide6.QtWidgets import QStyledItemDelegate

from mistudio.paths import human_bytes
from mistudio.ui.kit.cards import paint_card
from mistudio.ui.kit.palette import colour
from mistudio.ui.models.state import failure_line

RECORD_ROLE = Qt.ItemDataRole.UserRole + 1
FAILURE_ROLE = Qt.ItemDataRole.UserRole + 2  # a failed "Save quantized copy" (dict or None)
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


def save_failure(studio, rec) -> dict | None:
    """The last "Save quantized copy" of a ready model, when it failed: {quantization,
    dtype, device, error, job_id}; None otherwise (never saved, saved, or saving now)."""
    if rec.status != "ready" or not rec.error or rec.job_id:
        return None
    jobs = studio.list_jobs(kind="models.quantize", target=rec.id, limit=1)
    if not jobs or jobs[0].status != "failed":
        return None
    p = jobs[0].params
    return {"quantization": p.get("quantization", "4bit"), "dtype": p.get("dtype", "bfloat16"),
            "device": p.get("device", "auto"), "error": jobs[0].error or rec.error,
            "job_id": jobs[0].id}


class ModelCardDelegate(QStyledItemDelegate):
    def sizeHint(self, option, index) -> QSize:
        extra = QFontMetrics(option.font).height() + 4 if index.data(FAILURE_ROLE) else 0
        return QSize(max(option.rect.width(), 260), CARD_HEIGHT + extra)

    def paint(self, painter, option, index) -> None:
        rec = index.data(RECORD_ROLE)
        if rec is None:
            super().paint(painter, option, index)
            return
        failure = index.data(FAILURE_ROLE)
        paint_card(painter, option, rec.name, rec.status, rec.status, model_card_lines(rec))
        if failure:  # one red line under the card's usual ones
            fm = QFontMetrics(option.font)
            r = option.rect.adjusted(14, 0, -14, -8)
            line = QRect(r.left(), r.bottom() - fm.height(), r.width(), fm.height())
            painter.save()
            painter.setPen(QColor(colour("error")))
            painter.drawText(line, Qt.AlignmentFlag.AlignLeft,
                             fm.elidedText(failure_line(failure), Qt.TextElideMode.ElideRight,
                                           line.width()))
            painter.restore()
