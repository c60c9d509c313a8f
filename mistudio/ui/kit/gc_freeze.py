"""Keep Python's full garbage collections short once big long-lived data is loaded.

A generation-2 collection scans every container object the collector tracks, holding the
GIL throughout: with torch, Qt and pyqtgraph loaded that is ~300k objects and 150-230 ms
on this 2-core machine, during which no thread runs, the GUI thread included. Allocation-
heavy work on any thread (reading 65k rows, building an export) triggers such collections,
so they showed up as the Features tab's longest freezes. ``gc.freeze()`` moves the objects
alive now (modules, widgets, loaded tables: they live as long as the window) into the
permanent generation, which collections skip: measured on the labels export of a 65k-feature
SAE, the two full collections took 8 and 27 ms instead of 212 and 228 ms
(benchmarks/features_stall_bench.py). Objects created later are collected as usual;
objects frozen here are still freed by reference counting when dropped. What it costs: a
reference cycle that was already garbage but not yet collected when frozen stays until
exit; the young generations are collected first (a few ms), so that is only garbage that
reached the oldest generation, per freeze.
"""

from __future__ import annotations

import gc


def freeze_long_lived() -> None:
    """Exempt every object tracked now from later collections. Cheap (the collector's lists
    are spliced), so call it after each big load; ``gc.get_freeze_count()`` is not (it
    walks the ~300k objects: 50 ms)."""
    gc.collect(1)  # the young generations' garbage is not frozen with the rest
    gc.freeze()
