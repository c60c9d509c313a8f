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


@migration(61, "one templates table for training and extraction templates, with usage")
def _v61(db):
    # Saved templates of every kind in one table; built-in ones stay in code
    # (mistudio/templates/builtin.py, extraction_builtin.py).
    db["templates"].create(
        {
            "id": str,  # tt_... (training), et_... (extraction)
            "kind": str,  # training | extraction
            "name": str,
            "description": str,
            "settings": str,  # JSON object: training settings or extraction settings
            "created_at": str,
            "updated_at": str,
        },
        pk="id",
        not_null={"kind", "name", "settings", "created_at"},
    )
    db["templates"].create_index(["kind", "name"], unique=True)
    # How each template (built-in "builtin:<key>" or saved) is used: favourite, count, last use.
    db["template_usage"].create(
        {"template_id": str, "favourite": int, "use_count": int, "last_used_at": str},
        pk="template_id", defaults={"favourite": 0, "use_count": 0})
    db.execute("INSERT INTO templates (id, kind, name, description, settings, created_at, "
               "updated_at) SELECT id, 'training', name, description, config, created_at, "
               "updated_at FROM training_templates")
    if db["extraction_templates"].exists():
        # the seeded built-in rows are code now; only the user's own ones move
        db.execute("INSERT INTO templates (id, kind, name, description, settings, created_at, "
                   "updated_at) SELECT id, 'extraction', name, description, settings, "
                   "created_at, updated_at FROM extraction_templates WHERE NOT builtin")
        db["extraction_templates"].drop()
    db.execute("INSERT INTO template_usage (template_id, favourite, use_count) "
               "SELECT template_id, 1, 0 FROM template_favourites")
    db["training_templates"].drop()
    db["template_favourites"].drop()
