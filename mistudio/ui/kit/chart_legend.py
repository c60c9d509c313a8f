"""A chart legend drawn as a line of text beside the plot, never inside it.

pyqtgraph's ``LegendItem`` floats over the plot area and hides whatever curve runs under
its corner (the explained-variance curve ends exactly where a top-right legend sits). This
legend is a QLabel placed above the plot: each entry is a short line in the curve's colour
and dash style, then its name.
"""

from __future__ import annotations

import html

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel

from mistudio.ui.kit.palette import css

# A few characters that look like each pen style.
_GLYPHS = {Qt.SolidLine: "━━", Qt.DashLine: "╍╍", Qt.DotLine: "┉┉", Qt.DashDotLine: "━·",
           Qt.DashDotDotLine: "━··"}


class ChartLegend(QLabel):
    """``set_entries([(name, colour, pen style), ...])``; at most ``max_entries`` are named,
    the rest counted (the chart's hover readout names every curve)."""

    NAME_PX = 230  # a longer name is shortened in the middle (whole in the tooltip)

    def __init__(self, max_entries: int = 8, parent=None):
        super().__init__(parent)
        self.max_entries = max_entries
        self.setTextFormat(Qt.RichText)
        self.setWordWrap(True)
        self.setStyleSheet(css("text.plot", "font-size: 8pt"))
        self._names: list[str] = []

    def names(self) -> list[str]:
        """The names shown, in order (for tests and the screenshot check)."""
        return list(self._names)

    def set_entries(self, entries: list[tuple[str, str, Qt.PenStyle]]) -> None:
        shown = entries[: self.max_entries]
        names = [name for name, _c, _s in shown]
        if names == self._names and len(entries) == getattr(self, "_count", -1):
            return
        self._names, self._count = names, len(entries)
        fm = self.fontMetrics()
        parts = [f"<span style='color:{colour}'>{_GLYPHS.get(style, '━━')}</span>&nbsp;"
                 + html.escape(fm.elidedText(name, Qt.TextElideMode.ElideMiddle, self.NAME_PX))
                 .replace(" ", "&nbsp;") for name, colour, style in shown]
        more = len(entries) - len(shown)
        if more:
            parts.append(f"<i>+{more} more (hover the chart)</i>")
        self.setText("&nbsp;&nbsp;&nbsp; ".join(parts))
        self.setToolTip("\n".join(name for name, _c, _s in entries))
        self.setVisible(bool(entries))
