"""Text with per-token highlighting: each token's background shows its activation.

One widget paints any number of examples (a feature's top examples, a prompt), wrapping
tokens like text. Hovering a token shows its text, id and value (plus any extra line, such
as the loss change when the feature is ablated); the example's largest token is framed.
Painting is manual (no per-token widgets), so 40 examples x 64 tokens stay cheap.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from PySide6.QtCore import QPointF, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QFont, QFontMetricsF, QPainter, QPen
from PySide6.QtWidgets import QSizePolicy, QToolTip, QWidget

from mistudio.ui.kit import palette

PAD_X, PAD_Y, GAP_Y = 1.5, 2.0, 10.0


def shown_text(token: str) -> str:
    """Make whitespace-only and control tokens visible."""
    return (token.replace("\n", "↵").replace("\t", "⇥").replace("\r", "")
            or "∅")


def tint(value: float, scale: float, bases: tuple[QColor, QColor] | None = None
         ) -> QColor | None:
    """The background of a token: orange for activations (as sae_vis / Neuronpedia), blue
    for negative values, more opaque the larger. ``bases``: (positive, negative) colours,
    looked up once per paint by the caller."""
    if not value or not scale:
        return None
    frac = max(-1.0, min(1.0, value / scale))
    if bases is None:
        bases = tint_bases()
    c = QColor(bases[0] if frac > 0 else bases[1])
    c.setAlphaF(0.12 + 0.88 * abs(frac))
    return c


def tint_bases() -> tuple[QColor, QColor]:
    return QColor(palette.colour("activation")), QColor(palette.colour("accent"))


@dataclass
class TokenExample:
    tokens: list[str]
    values: list[float]
    token_ids: list[int] = field(default_factory=list)
    caption: str = ""  # shown above the tokens (value, document, topic, attribution)
    max_pos: int | None = None  # framed; defaults to the argmax
    extra: list[str] | None = None  # one more hover line per token (e.g. ablation effect)

    def __post_init__(self):
        if self.max_pos is None and self.values:
            self.max_pos = max(range(len(self.values)), key=lambda i: self.values[i])


class TokenTextView(QWidget):
    token_clicked = Signal(int, int)  # example, token position

    def __init__(self, parent=None):
        super().__init__(parent)
        self.examples: list[TokenExample] = []
        self.scale = 1.0
        self.context: int | None = None  # tokens kept each side of the max token; None = all
        self._boxes: list[tuple[QRectF, int, int]] = []
        self._captions: list[tuple[QPointF, str]] = []
        self._height = 0.0
        self._layout_width = -1
        # Qt's layouts ask heightForWidth for several widths per change: the layouts of
        # the current examples by width, and each token's width (tokens repeat), are kept
        self._layouts: dict[int, tuple] = {}
        self._advance: dict[str, float] = {}
        self.setMouseTracking(True)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self._font = QFont(self.font())
        self._bold = QFont(self._font)
        self._bold.setBold(True)
        self._small = QFont(self._font)
        self._small.setPointSizeF(max(7.0, self._font.pointSizeF() * 0.85))

    # ------------------------------------------------------------------ data

    def set_examples(self, examples: list[TokenExample], scale: float | None = None) -> None:
        """``scale``: the activation drawn at full colour (the feature's max by default)."""
        self.examples = list(examples)
        vals = [abs(v) for ex in self.examples for v in ex.values]
        self.scale = scale if scale else (max(vals) if vals else 1.0)
        self._relayout()

    def set_context(self, tokens_each_side: int | None) -> None:
        self.context = tokens_each_side
        self._relayout()

    def visible_range(self, ex: TokenExample) -> range:
        if self.context is None or ex.max_pos is None:
            return range(len(ex.tokens))
        lo = max(0, ex.max_pos - self.context)
        return range(lo, min(len(ex.tokens), ex.max_pos + self.context + 1))

    # ------------------------------------------------------------------ layout

    def _relayout(self) -> None:
        """The examples or the context changed: lay out again when next needed (the
        examples and the context usually change together)."""
        self._layout_width = -1
        self._layouts.clear()
        self.updateGeometry()
        self.update()

    def _do_layout(self, width: int) -> None:
        width = max(200, width)
        if width == self._layout_width:
            return
        self._layout_width = width
        got = self._layouts.get(width)
        if got is None:
            got = self._layouts[width] = self._lay_out(width)
            while len(self._layouts) > 8:
                self._layouts.pop(next(iter(self._layouts)))
        self._boxes, self._captions, self._height = got

    def _token_width(self, fm: QFontMetricsF, token: str) -> float:
        w = self._advance.get(token)
        if w is None:
            if len(self._advance) > 20_000:
                self._advance.clear()
            w = self._advance[token] = fm.horizontalAdvance(shown_text(token)) + 2 * PAD_X
        return w

    def _lay_out(self, width: int) -> tuple:
        fm, fm_small = QFontMetricsF(self._bold), QFontMetricsF(self._small)
        line_h = fm.height() + 2 * PAD_Y
        boxes, captions = [], []
        y = 2.0
        for e, ex in enumerate(self.examples):
            if ex.caption:
                captions.append((QPointF(2, y + fm_small.ascent()), ex.caption))
                y += fm_small.height() + 2
            x = 2.0
            for i in self.visible_range(ex):
                w = self._token_width(fm, ex.tokens[i])
                if x + w > width - 2 and x > 2.0:
                    x, y = 2.0, y + line_h
                boxes.append((QRectF(x, y, w, line_h), e, i))
                x += w
            y += line_h + GAP_Y
        return boxes, captions, y

    def resizeEvent(self, event) -> None:
        self._do_layout(self.width())
        self.updateGeometry()
        super().resizeEvent(event)

    def hasHeightForWidth(self) -> bool:
        return True

    def heightForWidth(self, width: int) -> int:
        self._do_layout(width)
        return int(self._height) + 4

    def sizeHint(self) -> QSize:
        self._do_layout(self.width())
        return QSize(400, int(self._height) + 4)

    def minimumSizeHint(self) -> QSize:
        self._do_layout(self.width())
        return QSize(200, int(self._height) + 4)

    # ------------------------------------------------------------------ paint & hover

    def paintEvent(self, event) -> None:
        self._do_layout(self.width())
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing, False)
        p.setFont(self._small)
        p.setPen(self.palette().placeholderText().color())
        for pos, text in self._captions:
            p.drawText(pos, text)
        text_pen = QPen(self.palette().text().color())
        frame_pen = QPen(QColor(palette.colour("text.strong")), 1.6)
        clip = QRectF(event.rect())
        bases = tint_bases()
        for rect, e, i in self._boxes:
            if not rect.intersects(clip):
                continue
            ex = self.examples[e]
            bg = tint(ex.values[i], self.scale, bases)
            if bg is not None:
                p.fillRect(rect.adjusted(0, 1, 0, -1), bg)
            is_max = i == ex.max_pos
            p.setFont(self._bold if is_max else self._font)
            p.setPen(text_pen)
            p.drawText(rect, int(Qt.AlignmentFlag.AlignCenter), shown_text(ex.tokens[i]))
            if is_max:
                p.setPen(frame_pen)
                p.drawRect(rect.adjusted(0.5, 1, -0.5, -1))
        p.end()

    def token_at(self, pos) -> tuple[int, int] | None:
        for rect, e, i in self._boxes:
            if rect.contains(QPointF(pos)):
                return e, i
        return None

    def tooltip_text(self, e: int, i: int) -> str:
        ex = self.examples[e]
        tid = f"id {ex.token_ids[i]}" if i < len(ex.token_ids) else ""
        lines = [f"{ex.tokens[i]!r}  {tid}".rstrip(), f"activation {ex.values[i]:.4g}"]
        if ex.extra and i < len(ex.extra) and ex.extra[i]:
            lines.append(ex.extra[i])
        return "\n".join(lines)

    def mouseMoveEvent(self, event) -> None:
        hit = self.token_at(event.position())
        if hit is None:
            QToolTip.hideText()
        else:
            QToolTip.showText(event.globalPosition().toPoint(), self.tooltip_text(*hit), self)
        super().mouseMoveEvent(event)

    def mousePressEvent(self, event) -> None:
        hit = self.token_at(event.position())
        if hit is not None:
            self.token_clicked.emit(*hit)
        super().mousePressEvent(event)
