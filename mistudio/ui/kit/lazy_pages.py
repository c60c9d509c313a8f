"""A QTabWidget whose pages are built on first need, or one per event-loop turn when idle.

Building a page full of plots costs tens of milliseconds on the GUI thread (a pyqtgraph
``PlotItem`` alone is ~7 ms); building every page of a tab before its first paint adds up to
a visible freeze. Pages registered with ``add_lazy`` are built in their tab order: by
``page(name)`` (which first builds any page before it, so tab indices never shift), or by
``build_when_idle()``, which builds one page per turn of the event loop so paints and input
run in between. A page may defer parts of itself further: the callables its
``deferred_parts()`` returns run one per turn after it (each builds a part if still missing).
"""

from __future__ import annotations

from typing import Callable

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QTabWidget, QWidget


class LazyPages(QTabWidget):
    """``busy()``, when given, says a background read is in flight: idle building waits
    for it (building while a worker thread runs Python takes several times longer, as each
    of the many Qt calls of a plot's construction waits for the GIL)."""

    RETRY_MS = 40

    def __init__(self, parent: QWidget | None = None, busy: Callable[[], bool] | None = None):
        super().__init__(parent)
        self._busy = busy
        self._specs: list[tuple[str, str, Callable[[], QWidget]]] = []
        self._built: dict[str, QWidget] = {}
        self._idle_pending = False
        self._parts: list[Callable[[], object]] = []  # deferred parts of built pages

    def add_lazy(self, name: str, title: str, factory: Callable[[], QWidget]) -> None:
        """Register a page; ``factory()`` builds it (and wires it) when first needed."""
        self._specs.append((name, title, factory))

    def page(self, name: str) -> QWidget:
        """The page ``name``, built now if it is not yet (with the pages before it)."""
        while name not in self._built:
            if not self.build_next():
                raise KeyError(name)
        return self._built[name]

    def built(self, name: str) -> QWidget | None:
        """The page ``name`` if it exists already; never builds."""
        return self._built.get(name)

    def all_built(self) -> bool:
        return len(self._built) == len(self._specs)

    def build_next(self) -> bool:
        """Build the first page not built yet; False when every page exists."""
        for name, title, factory in self._specs:
            if name not in self._built:
                widget = factory()
                self._built[name] = widget
                self.addTab(widget, title)
                self._parts += getattr(widget, "deferred_parts", list)()
                return True
        return False

    def build_when_idle(self) -> None:
        """Build the remaining pages and their deferred parts, one per event-loop turn."""
        if self._idle_pending or (self.all_built() and not self._parts):
            return
        self._idle_pending = True
        QTimer.singleShot(0, self, self._idle_step)  # dropped if the widget is gone

    def _idle_step(self) -> None:
        if self._busy is not None and self._busy():
            QTimer.singleShot(self.RETRY_MS, self, self._idle_step)
            return
        self._idle_pending = False
        if self._parts:  # the parts of the page built last, before the next page
            self._parts.pop(0)()
        else:
            self.build_next()
        self.build_when_idle()
