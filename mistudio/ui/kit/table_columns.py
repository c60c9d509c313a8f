"""Size a table's columns from the text it will show, measured once on the GUI thread.

``QHeaderView.ResizeToContents`` measures cells again on every reset and every layout, each
cell through the model's ``data()`` (several roles, each a call into Python): with hundreds
of rows and a busy worker thread holding the GIL, that froze the Models tab for 0.2-0.4 s.
Here the widths come from the display strings the caller already has (computed off the GUI
thread), measured with the view's font: no call back into the model, and the columns stay
``Interactive`` so the user can still drag them.
"""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtWidgets import QHeaderView, QTableView

SAMPLE_ROWS = 50  # enough to find the usual widths; hundreds of rows add nothing
CANDIDATES = 3  # per column, the longest texts (by characters) that are measured
PADDING = 18  # the cell's margins and the sort/indicator room, in pixels
MAX_WIDTH = 420  # a long path or message is elided, not a window-wide column


def fit_columns_to_text(view: QTableView, headers: Sequence[str],
                        rows: Sequence[Sequence[str]], *, sample: int = SAMPLE_ROWS,
                        max_width: int = MAX_WIDTH) -> list[int]:
    """Set each column's width to its widest header or cell text among the first
    ``sample`` rows (capped at ``max_width``); returns the widths."""
    header = view.horizontalHeader()
    header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
    cells = view.fontMetrics()
    titles = header.fontMetrics()
    widths = []
    for col, title in enumerate(headers):
        # the few longest strings by characters are measured, not every cell: each Qt call
        # waits for the GIL while a worker runs Python (~1 ms each during an import)
        texts = sorted({row[col] for row in rows[:sample] if col < len(row) and row[col]},
                       key=len, reverse=True)[:CANDIDATES]
        widest = max([titles.horizontalAdvance(title)] +
                     [cells.horizontalAdvance(text) for text in texts])
        widths.append(min(max_width, widest + PADDING))
        view.setColumnWidth(col, widths[-1])
    return widths
