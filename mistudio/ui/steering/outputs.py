"""Side-by-side outputs (streamed, then coloured by per-token KL) and the metrics table."""

from __future__ import annotations

import html
import math

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QAbstractItemView, QGridLayout, QLabel, QScrollArea,
                               QTableWidget, QTableWidgetItem, QTextBrowser, QVBoxLayout,
                               QWidget)

from mistudio.ui.kit import palette

KL_FULL = 2.0  # nats at which a token's background is fully coloured
GRID_COLUMNS = 4  # a sweep wraps into rows of this many outputs


def _rgb(hex_colour: str) -> tuple[int, int, int]:
    h = hex_colour.lstrip("#")
    return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)


def kl_colour(kl: float, full: float = KL_FULL) -> str:
    """The background (no change) blended towards the error colour as KL reaches ``full``
    (at most 60%, so the text stays readable), as a CSS colour."""
    t = 0.0 if not math.isfinite(kl) else max(0.0, min(1.0, kl / full))
    base, hot = _rgb(palette.colour("surface")), _rgb(palette.colour("error"))
    mix = [round(b + 0.6 * t * (h - b)) for b, h in zip(base, hot)]
    return "#" + "".join(f"{v:02x}" for v in mix)


def _changed(diff: list[dict], side: str) -> set[int]:
    out: set[int] = set()
    for op in diff:
        if op["op"] != "equal":
            lo, hi = op[side]
            out.update(range(lo, hi))
    return out


def column_html(pieces: list[str], kl: list[float] | None = None,
                changed: set[int] | None = None) -> str:
    """Tokens as spans: background by KL, underlined where the text differs from the
    other column (the token-level diff)."""
    parts = []
    for i, piece in enumerate(pieces):
        text = html.escape(piece).replace("\n", "<br>")
        style = []
        if kl is not None and i < len(kl):
            style.append(f"background-color:{kl_colour(kl[i])}")
        if changed and i in changed:
            style.append("text-decoration:underline")
        parts.append(f'<span style="{";".join(style)}">{text}</span>' if style else text)
    return "".join(parts)


class OutputColumn(QWidget):
    def __init__(self, title: str, parent=None):
        super().__init__(parent)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        self.title = QLabel(f"<b>{html.escape(title)}</b>")
        self.title.setWordWrap(True)
        self.body = QTextBrowser()
        self.body.setMinimumWidth(220)
        self.body.setOpenLinks(False)
        lay.addWidget(self.title)
        lay.addWidget(self.body, 1)

    def set_html(self, prompt_html: str, text_html: str) -> None:
        self.body.setHtml(palette.span("text.muted", prompt_html) + text_html)


class OutputsView(QWidget):
    """One column per output (baseline first), side by side; a sweep's many outputs wrap
    into a grid. Rebuilt when the labels change."""

    def __init__(self, parent=None):
        super().__init__(parent)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.legend = QLabel("")
        self.legend.setWordWrap(True)
        self.legend.setStyleSheet(palette.css("text.secondary"))
        lay.addWidget(self.legend)
        self.scroll = QScrollArea()
        self.scroll.setWidgetResizable(True)
        self.inner = QWidget()
        self.grid = QGridLayout(self.inner)
        self.scroll.setWidget(self.inner)
        lay.addWidget(self.scroll, 1)
        self.columns: list[OutputColumn] = []
        self._labels: list[str] = []

    def _ensure(self, labels: list[str]) -> None:
        if labels == self._labels:
            return
        for col in self.columns:
            col.setParent(None)
            col.deleteLater()
        self.columns = [OutputColumn(label, self.inner) for label in labels]
        for i, col in enumerate(self.columns):
            self.grid.addWidget(col, i // GRID_COLUMNS, i % GRID_COLUMNS)
            if len(labels) > GRID_COLUMNS:
                col.body.setMinimumHeight(160)
        self._labels = list(labels)

    def clear(self) -> None:
        self._ensure([])
        self.legend.setText("")

    def show_live(self, snapshot: dict, prompt: str) -> None:
        self._ensure(snapshot["labels"])
        for col, pieces in zip(self.columns, snapshot["pieces"]):
            col.set_html(html.escape(prompt), column_html(pieces))
        self.legend.setText("Generating… (colours by KL appear when the outputs are "
                            "complete)")

    def show_result(self, result: dict) -> None:
        cols = result["columns"]
        self._ensure([c["label"] for c in cols])
        prompt = html.escape(result.get("prompt", ""))
        base_changed: set[int] = set()
        for c in cols[1:]:
            base_changed |= _changed(c.get("diff", []), "a")
        for i, (view, c) in enumerate(zip(self.columns, cols)):
            if i == 0:
                view.set_html(prompt, column_html(c["pieces"], None, base_changed))
            else:
                view.set_html(prompt, column_html(c["pieces"], c.get("kl"),
                                                  _changed(c.get("diff", []), "b")))
        self.legend.setText(
            f"Background: KL(steered ‖ unsteered) of each token's next-token distribution, "
            f"plain 0 → red ≥ {KL_FULL:g} nats. Underlined: tokens where the outputs differ "
            f"(token-level diff). Grey: the prompt.")

    def texts(self) -> list[str]:
        return [c.body.toPlainText() for c in self.columns]


class MetricsTable(QTableWidget):
    HEADERS = ["Output", "Mean KL (nats)", "Max KL", "Perplexity", "Target feature(s) "
               "before → after", "Largest off-target changes"]

    def __init__(self, parent=None):
        super().__init__(0, len(self.HEADERS), parent)
        self.setHorizontalHeaderLabels(self.HEADERS)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.verticalHeader().setVisible(False)
        self.horizontalHeader().setStretchLastSection(True)
        for i, tip in enumerate(["", "Mean over the generated tokens of KL(steered ‖ unsteered)",
                                 "", "exp(mean negative log-likelihood) of the generated "
                                 "tokens under the unsteered model", "Mean activation over the "
                                 "steered positions, before and after the intervention", ""]):
            if tip:
                self.horizontalHeaderItem(i).setToolTip(tip)

    def show_result(self, result: dict) -> None:
        cols = result["columns"]
        self.setRowCount(len(cols))
        for r, c in enumerate(cols):
            kl = c.get("kl") or []
            targets = "; ".join(f"#{t['feature']}: {t['before']:.3g} → {t['after']:.3g}"
                                for t in c.get("targets", []))
            off = ", ".join(f"#{o['feature']} {o['change']:+.3g}"
                            for o in c.get("off_target", [])[:5])
            values = [c["label"], "—" if r == 0 else f"{c.get('kl_mean', 0):.4f}",
                      "—" if r == 0 or not kl else f"{max(kl):.4f}",
                      f"{c.get('perplexity', float('nan')):.3f}", targets, off]
            for col, v in enumerate(values):
                item = QTableWidgetItem(v)
                if col in (1, 2, 3):
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight |
                                          Qt.AlignmentFlag.AlignVCenter)
                self.setItem(r, col, item)
        self.resizeColumnsToContents()
