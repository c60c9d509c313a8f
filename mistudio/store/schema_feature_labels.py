"""Tables of feature labels, notes, favourites and lists (see mistudio/labels).

Keyed by (SAE, feature index), never by analysis: a label written while browsing one
analysis stays on the feature when a new analysis of the same SAE replaces it.
"""

from __future__ import annotations

from mistudio.store.migrations import migration


@migration(40, "feature labels, notes, favourites and lists")
def _v40(db):
    db["feature_annotations"].create(
        {
            "sae_id": str,
            "feature_index": int,
            "label": str,
            "notes": str,
            "favourite": int,  # 0/1
            "updated_at": str,
        },
        pk=("sae_id", "feature_index"),
        not_null={"sae_id", "feature_index"},
        defaults={"label": "", "notes": "", "favourite": 0},
    )
    db["feature_lists"].create(
        {"id": str, "sae_id": str, "name": str, "description": str, "created_at": str},
        pk="id",
        not_null={"sae_id", "name", "created_at"},
    )
    db["feature_lists"].create_index(["sae_id", "name"], unique=True)
    db["feature_list_members"].create(
        {"list_id": str, "feature_index": int, "added_at": str},
        pk=("list_id", "feature_index"),
        foreign_keys=[("list_id", "feature_lists", "id")],
    )
