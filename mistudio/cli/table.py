"""Tables and progress lines that fit the terminal.

On a terminal, a table is as wide as the window at most: the columns that hold free text
(a name, a title) give up width and end in "…"; ids, statuses and numbers are never cut.
Piped into a file or another program (``| grep``), nothing is cut.
"""

from __future__ import annotations

import shutil
import sys

ELLIPSIS = "…"
MIN_SHRUNK = 8  # a shrinkable column keeps at least this many characters


def terminal_columns(stream=None) -> int | None:
    """The width to fit, or None when ``stream`` (default stdout) is not a terminal."""
    stream = sys.stdout if stream is None else stream
    try:
        if not stream.isatty():
            return None
    except (AttributeError, ValueError):
        return None
    return shutil.get_terminal_size((100, 24)).columns


def cut(text: str, width: int) -> str:
    """``text`` in at most ``width`` characters, ending in "…" when shortened."""
    if len(text) <= width:
        return text
    return text[: max(0, width - 1)] + ELLIPSIS if width > 0 else ""


def format_table(headers: list[str], rows: list[list], *, right: tuple[int, ...] = (),
                 shrink: tuple[int, ...] | None = None, width: int | None = None) -> list[str]:
    """Lines of a table: columns two spaces apart, ``right`` ones right-aligned.

    With ``width``, the ``shrink`` columns (default: the last) are cut, widest first, until
    the table fits (each keeps at least ``MIN_SHRUNK`` characters).
    """
    cells = [[("" if c is None else str(c)) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    if width is not None:
        shrink = (len(headers) - 1,) if shrink is None else shrink
        gap = 2 * (len(headers) - 1)
        while sum(widths) + gap > width:
            candidates = [i for i in shrink if widths[i] > max(MIN_SHRUNK, len(headers[i]))]
            if not candidates:
                break  # fits as far as it can without cutting ids and numbers
            i = max(candidates, key=lambda j: widths[j])
            widths[i] -= min(widths[i] - max(MIN_SHRUNK, len(headers[i])),
                             sum(widths) + gap - width)

    def line(values: list[str]) -> str:
        out = []
        for i, v in enumerate(values):
            v = cut(v, widths[i])
            last = i == len(values) - 1
            out.append(v.rjust(widths[i]) if i in right else (v if last else v.ljust(widths[i])))
        return "  ".join(out).rstrip()

    return [line(headers)] + [line(r) for r in cells]


def print_table(headers: list[str], rows: list[list], *, right: tuple[int, ...] = (),
                shrink: tuple[int, ...] | None = None) -> None:
    for text in format_table(headers, rows, right=right, shrink=shrink,
                             width=terminal_columns()):
        print(text)


def fit_progress_line(fraction: float | None, done: float, eta_s: float | None, message: str,
                      width: int) -> str:
    """One progress line of at most ``width - 1`` characters.

    The percentage and ETA always show whole; the bar narrows, then goes; the message is
    shortened at a word boundary with "…", so no number is ever cut in two.
    """
    limit = max(8, width - 1)
    if fraction is None:
        head = f"{done:.0f}"
    else:
        eta = f" ETA {int(eta_s // 60)}:{int(eta_s % 60):02d}" if eta_s is not None else ""
        head = f"{fraction * 100:5.1f}%"
        if len(head + eta) <= limit:  # a very narrow terminal keeps only the percentage
            head += eta
    room = limit - len(head) - 1  # what is left for the bar and the message
    bar = ""
    if fraction is not None:
        bar_w = min(40, room - min(len(message), 30) - 3)
        if bar_w >= 10:
            filled = int(bar_w * min(1.0, max(0.0, fraction)))
            bar = f"[{'#' * filled}{'.' * (bar_w - filled)}] "
    line = bar + head
    room = limit - len(line) - 1
    shown = shorten_words(message, room) if message and room > 0 else ""
    if shown and shown != ELLIPSIS:  # a lone "…" says nothing
        line += " " + shown
    return line


def shorten_words(text: str, width: int) -> str:
    """``text`` in at most ``width`` characters, cut between words (never inside one)."""
    if len(text) <= width:
        return text
    if width <= 1:
        return ""
    head = text[: width - 1]
    space = head.rfind(" ")
    head = head[:space] if space > 0 else ""
    return (head.rstrip(" ,;:·-") + " " + ELLIPSIS).lstrip() if head else ELLIPSIS
