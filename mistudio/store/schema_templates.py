"""Tables of the training templates (see mistudio/templates)."""

from __future__ import annotations

from mistudio.store.migrations import migration


@migration(5, "training templates")
def _v5(db):
    # User-saved templates; the built-in ones live in code (mistudio/templates/builtin.py).
    db["training_templates"].create(
        {
            "id": str,  # tt_xxxxxxxx
            "name": str,
            "description": str,
            "config": str,  # JSON object of training settings
            "created_at": str,
            "updated_at": str,
        },
        pk="id",
        not_null={"name", "config", "created_at"},
    )
    db["training_templates"].create_index(["name"], unique=True)
    # Favourites of both built-in ("builtin:<key>") and saved ("tt_...") templates.
    db["template_favourites"].create({"template_id": str, "created_at": str}, pk="template_id")
    # Small key/value state: the last-used training form settings.
    db["template_state"].create({"key": str, "value": str, "updated_at": str}, pk="key")
