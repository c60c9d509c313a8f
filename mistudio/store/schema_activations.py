"""Activation sets name their hook point the way SAELens does (``hook_name``, ``hook_layer``)."""

from __future__ import annotations

from mistudio.store.migrations import migration


@migration(60, "activation_sets: hook_point/layer renamed hook_name/hook_layer")
def _hook_names(db) -> None:
    # RENAME COLUMN keeps the data, the NOT NULL constraint and the indexes (SQLite 3.25+)
    db.execute("ALTER TABLE activation_sets RENAME COLUMN hook_point TO hook_name")
    db.execute("ALTER TABLE activation_sets RENAME COLUMN layer TO hook_layer")
