"""Every colour of the UI, by role, in a light and a dark variant: the one place to change them.

Widgets ask for a role (``colour("text.muted")``, ``css("error")``), never a hex code; a test
keeps hex codes out of every other UI module. The variant follows the application palette
(a dark window background picks the dark one), read when a widget is built.
"""

from __future__ import annotations

LIGHT: dict[str, str] = {
    # text
    "text.strong": "#111827", "text": "#374151", "text.secondary": "#4b5563",
    "text.muted": "#6b7280", "text.faint": "#9ca3af", "text.plot": "#222222",
    "text.on_status": "#ffffff",
    # meanings
    "error": "#b91c1c", "warning": "#b45309", "success": "#15803d", "accent": "#2563eb",
    "note": "#8a6d00",
    # surfaces
    "surface": "#ffffff", "surface.list": "#f9fafb", "surface.selected": "#eff6ff",
    "surface.chip": "#f3f4f6", "surface.chip.special": "#e5e7eb",
    "border": "#d1d5db", "border.card": "#cccccc", "border.selected": "#2563eb",
    "guide": "#888888",
    # boxes that carry a message
    "banner.warning.bg": "#fff3cd", "banner.warning.fg": "#664d03",
    "banner.error.bg": "#fef2f2", "banner.error.fg": "#991b1b",
    "banner.info.bg": "#eff6ff",
    # bars of histograms
    "bar": "#60a5fa", "bar.strong": "#3b82f6",
    # a feature's activation (token highlights, its histogram), as sae_vis / Neuronpedia
    "activation": "#ff8c00",
}

DARK: dict[str, str] = {
    "text.strong": "#f9fafb", "text": "#e5e7eb", "text.secondary": "#d1d5db",
    "text.muted": "#9ca3af", "text.faint": "#6b7280", "text.plot": "#e5e7eb",
    "text.on_status": "#ffffff",
    "error": "#f87171", "warning": "#fbbf24", "success": "#4ade80", "accent": "#60a5fa",
    "note": "#facc15",
    "surface": "#1f2937", "surface.list": "#111827", "surface.selected": "#1e3a5f",
    "surface.chip": "#374151", "surface.chip.special": "#4b5563",
    "border": "#4b5563", "border.card": "#4b5563", "border.selected": "#60a5fa",
    "guide": "#9ca3af",
    "banner.warning.bg": "#3f3113", "banner.warning.fg": "#fde68a",
    "banner.error.bg": "#3b1212", "banner.error.fg": "#fecaca",
    "banner.info.bg": "#1e3a5f",
    "bar": "#60a5fa", "bar.strong": "#93c5fd",
    "activation": "#ff9f1a",
}

# Status of a job or an entity (jobs dock, run cards): one colour per status, both variants.
STATUS_LIGHT = {"queued": "#6b7280", "running": "#2563eb", "paused": "#d97706",
                "completed": "#059669", "failed": "#dc2626", "cancelled": "#6b7280",
                "interrupted": "#b45309", "resumed": "#6b7280", "extracting": "#6f42c1"}
STATUS_DARK = {"queued": "#9ca3af", "running": "#60a5fa", "paused": "#fbbf24",
               "completed": "#34d399", "failed": "#f87171", "cancelled": "#9ca3af",
               "interrupted": "#fb923c", "resumed": "#9ca3af", "extracting": "#a78bfa"}

# Badges on cards (background, text) by an entity's status.
_BUSY = ("#dbeafe", "#1e40af")
BADGE_LIGHT = {"ready": ("#dcfce7", "#166534"), "failed": ("#fee2e2", "#991b1b"),
               "incomplete": ("#fef3c7", "#92400e"), "importing": _BUSY,
               "downloading": _BUSY, "converting": _BUSY, "": ("#f3f4f6", "#374151")}
_BUSY_DARK = ("#1e3a8a", "#dbeafe")
BADGE_DARK = {"ready": ("#14532d", "#dcfce7"), "failed": ("#7f1d1d", "#fee2e2"),
              "incomplete": ("#78350f", "#fef3c7"), "importing": _BUSY_DARK,
              "downloading": _BUSY_DARK, "converting": _BUSY_DARK, "": ("#374151", "#f3f4f6")}

# Memory verdicts (will a model fit?).
VERDICT_ROLE = {"fits": "success", "tight": "warning", "won't fit": "error"}

# Lines of charts, one per run or series (matplotlib's tab10: readable on both backgrounds).
SERIES = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
          "#17becf", "#bcbd22", "#7f7f7f")

# Token chips cycle through these light fills (dark: the same hues, deeper).
CHIPS_LIGHT = ("#dbeafe", "#dcfce7", "#fef3c7", "#fce7f3", "#ede9fe")
CHIPS_DARK = ("#1e3a8a", "#14532d", "#78350f", "#831843", "#4c1d95")


_DARK: list[bool] = []  # the answer, until the application's palette changes
_WATCHED: set[int] = set()  # applications whose palette changes clear it


def is_dark() -> bool:
    """Whether the running application shows a dark palette (False without one).

    Remembered until the application's palette changes (or the application goes): card
    delegates ask it several times per card they paint, and each Qt call hands the GIL back
    and forth with any busy worker thread (~1 ms each while one imports torch: 0.2 s for one
    repaint of the model cards, the Models tab's longest freeze on a large data folder).
    """
    if _DARK:
        return _DARK[0]
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance()
    if app is None:
        return False
    key = id(app)
    if key not in _WATCHED:
        _WATCHED.add(key)
        app.paletteChanged.connect(_DARK.clear)
        app.destroyed.connect(lambda *_: (_DARK.clear(), _WATCHED.discard(key)))
    _DARK.append(app.palette().window().color().lightness() < 128)
    return _DARK[0]


def colour(role: str) -> str:
    """The hex colour of ``role`` in the current variant."""
    return (DARK if is_dark() else LIGHT)[role]


def status_colour(status: str) -> str:
    table = STATUS_DARK if is_dark() else STATUS_LIGHT
    return table.get(status, table["queued"])


def badge_colours(status: str) -> tuple[str, str]:
    table = BADGE_DARK if is_dark() else BADGE_LIGHT
    return table.get(status, table[""])


def verdict_colour(verdict: str) -> str:
    return colour(VERDICT_ROLE.get(verdict, "text"))


def chip_colours() -> tuple[str, ...]:
    return CHIPS_DARK if is_dark() else CHIPS_LIGHT


def css(role: str, extra: str = "") -> str:
    """A style sheet giving text the colour of ``role``, plus ``extra`` declarations."""
    return f"color: {colour(role)}" + (f"; {extra}" if extra else "")


def span(role: str, text: str) -> str:
    """Rich text: ``text`` in the colour of ``role``."""
    return f"<span style='color:{colour(role)}'>{text}</span>"
