"""The kit parts the Features tab uses to keep the GUI thread free: pages built one per
event-loop turn (and not while a read runs), and freezing long-lived objects out of the
garbage collector."""

from __future__ import annotations

import gc
import weakref

from PySide6.QtWidgets import QLabel


def test_lazy_pages_build_in_order_one_per_turn_and_wait_while_busy(qtbot):
    from mistudio.ui.kit.lazy_pages import LazyPages

    built, busy = [], [True]

    def page(name):
        def make():
            built.append(name)
            w = QLabel(name)
            w.deferred_parts = lambda: [lambda: built.append(f"{name}.part")]
            return w
        return make

    pages = LazyPages(busy=lambda: busy[0])
    qtbot.addWidget(pages)
    for name in ("a", "b", "c"):
        pages.add_lazy(name, name.upper(), page(name))
    assert pages.count() == 0 and pages.built("b") is None
    pages.build_when_idle()
    qtbot.wait(150)
    assert built == []  # a background read is running: nothing is built meanwhile
    busy[0] = False
    qtbot.waitUntil(lambda: len(built) >= 2, timeout=2000)
    assert built[:2] == ["a", "a.part"]  # a page, then its deferred part, each in a turn
    qtbot.waitUntil(lambda: pages.all_built() and len(built) == 6, timeout=2000)
    assert built == ["a", "a.part", "b", "b.part", "c", "c.part"]
    assert [pages.tabText(i) for i in range(3)] == ["A", "B", "C"]
    # asking for a later page first builds the ones before it (tab order kept)
    fresh = LazyPages()
    qtbot.addWidget(fresh)
    for name in ("x", "y"):
        fresh.add_lazy(name, name, page(name))
    assert fresh.page("y").text() == "y" and fresh.tabText(0) == "x"


def test_freezing_keeps_young_garbage_out_and_collects_later_cycles():
    from mistudio.ui.kit.gc_freeze import freeze_long_lived

    class Node:
        pass

    def cycle():
        a, b = Node(), Node()
        a.other, b.other = b, a
        return weakref.ref(a)

    before = gc.get_freeze_count()
    young_garbage = cycle()  # unreachable already, not yet collected
    try:
        freeze_long_lived()
        assert gc.get_freeze_count() > before  # what was alive is frozen
        assert young_garbage() is None  # the young generations were collected first
        later = cycle()  # garbage made after the freeze is collected as usual
        gc.collect()
        assert later() is None
    finally:
        gc.unfreeze()
