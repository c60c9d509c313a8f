"""GUI-thread work spread over event-loop turns, a few milliseconds per turn.

Building the Training tab's first view is a few hundred milliseconds of widget work: 50
cards (~5 ms each), a dozen pyqtgraph charts (~20 ms each) and the selected run's curves
(each chart's first paint 10-35 ms). Done in one go, or with several ``singleShot(0)`` chains
that all land in the same pass of the event loop, the window froze for 0.2-0.4 s. A
:class:`Pacer` holds *steppers* (``step() -> bool``: do one small piece, return whether more
remains) and runs them round-robin from one zero-interval timer until ``budget_s`` is spent,
then lets the event loop paint what changed before the next turn. The cards and the charts
share one pacer, so a turn never pays for both a chunk of cards and a chart at once.

A timer (not ``QTimer.singleShot(0)``, which is a posted call delivered before the low-priority
paint request) so each turn's repaint happens before the next turn's work.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Callable

from PySide6.QtCore import QObject, QTimer

BUDGET_S = 0.015


class Pacer(QObject):
    def __init__(self, parent: QObject | None = None, *, budget_s: float = BUDGET_S):
        super().__init__(parent)
        self.budget_s = budget_s
        self._steppers: deque[Callable[[], bool]] = deque()
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(0)
        self._timer.timeout.connect(self._turn)

    def add(self, step: Callable[[], bool]) -> None:
        """Run ``step()`` on coming turns until it returns False (added once: a stepper
        already waiting is not queued twice)."""
        if step not in self._steppers:
            self._steppers.append(step)
        if not self._timer.isActive():
            self._timer.start()

    def busy(self) -> bool:
        return bool(self._steppers)

    def _turn(self) -> None:
        start = time.perf_counter()
        while self._steppers:
            step = self._steppers.popleft()
            if step():
                self._steppers.append(step)  # round-robin: the others get their turn
            if time.perf_counter() - start >= self.budget_s:
                break
        if self._steppers:
            self._timer.start()

    def finish(self) -> None:
        """Run everything left now (screenshots, a caller that needs the result at once)."""
        self._timer.stop()
        while self._steppers:
            step = self._steppers.popleft()
            while step():
                pass

    def stop(self) -> None:
        self._timer.stop()
        self._steppers.clear()
