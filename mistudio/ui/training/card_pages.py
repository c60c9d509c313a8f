"""The Training tab's cards, a page at a time and a few per event-loop turn.

A card is a dozen widgets (~5 ms to build on a 2-core machine): 500 trainings built at
once held the window for seconds. ``CardPages`` builds the newest ``page_size`` cards one at a
time through the tab's :class:`~mistudio.ui.training.pacer.Pacer` (as many as fit its
per-turn budget, shared with the charts; the list paints after the first turn and fills while
the window stays live), and a "Show older trainings" button adds the next page.
"""

from __future__ import annotations

from typing import Callable

from PySide6.QtCore import QObject
from PySide6.QtWidgets import QPushButton

from mistudio.ui.training.pacer import Pacer

PAGE_SIZE = 50


class CardPages(QObject):
    """``build(key)`` adds one card at the bottom of the list (keys come newest first)."""

    def __init__(self, build: Callable[[str], None], more_btn: QPushButton,
                 parent: QObject | None = None, *, page_size: int = PAGE_SIZE,
                 pacer: Pacer | None = None):
        super().__init__(parent)
        self.build = build
        self.more_btn = more_btn
        self.page_size = page_size
        self.pacer = pacer or Pacer(self)
        self.pending: list[str] = []  # keys without a card, newest first
        self.budget = 0  # cards still to build on the current page
        more_btn.clicked.connect(self.show_more)
        more_btn.setVisible(False)

    def show(self, keys: list[str]) -> None:
        """Cards for ``keys`` (newest first, none built yet): the first page, progressively."""
        self.pending = list(keys)
        self.budget = self.page_size
        self._schedule()

    def show_more(self) -> None:
        self.budget += self.page_size
        self._schedule()

    def forget(self, key: str) -> None:
        """``key`` got its card elsewhere (opened from the Runs table, a live event)."""
        if key in self.pending:
            self.pending.remove(key)
            if self.budget > 0:
                self.budget -= 1  # it counts toward the current page
            self._update_button()

    def building(self) -> bool:
        return bool(self.pending) and self.budget > 0

    def _schedule(self) -> None:
        self._update_button()
        if self.building():
            self.pacer.add(self._build_one)

    def _build_one(self) -> bool:
        """One card (a pacer step); whether more of the page remains."""
        if self.building():
            self.budget -= 1
            self.build(self.pending.pop(0))
        if not self.building():
            self._update_button()
            return False
        return True

    def _update_button(self) -> None:
        waiting = len(self.pending) if self.budget <= 0 else 0
        self.more_btn.setVisible(waiting > 0)
        if waiting:
            self.more_btn.setText(f"Show {min(waiting, self.page_size)} older trainings "
                                  f"({waiting:,} not shown)")
