"""Storage management: the pin that keeps an activation set through the cleanup rules."""

from __future__ import annotations

from mistudio.store.migrations import migration


@migration(130, "activation_sets.pinned: kept by the 'keep the last N sets' cleanup rule")
def _pinned(db) -> None:
    if "pinned" not in {c.name for c in db["activation_sets"].columns}:
        db.execute("ALTER TABLE activation_sets ADD COLUMN pinned INTEGER NOT NULL DEFAULT 0")
