"""Training and extraction templates are one system: one table of saved templates, one of
usage (favourite, use count, last use) for built-in and saved ones of both kinds; databases
written before keep their templates and favourites."""

import json

import pytest

from mistudio.errors import UserError
from mistudio.store import migrations
from mistudio.store.db import Store, sqlite_utils


def test_both_kinds_have_favourites_use_counts_and_last_use(studio):
    extraction = studio.templates.list(kind="extraction")
    training = studio.templates.list(kind="training")
    assert extraction and training and all(t.builtin for t in extraction)
    assert {t.kind for t in extraction} == {"extraction"}
    first = extraction[0]
    assert (first.favourite, first.use_count, first.last_used_at) == (False, 0, "")
    studio.templates.set_favourite(first.id, kind="extraction")
    studio.templates.record_use(first.id, kind="extraction")
    used = studio.templates.record_use(first.id, kind="extraction")
    assert used.favourite and used.use_count == 2 and used.last_used_at
    # a saved training template counts the same way
    mine = studio.templates.save("Mine", {"architecture": "topk", "k": 16})
    assert studio.templates.record_use(mine.id).use_count == 1
    favourites = studio.templates.list(kind="extraction", favourites_first=True)
    assert favourites[0].id == first.id


def test_a_name_is_unique_within_a_kind_not_across_kinds(studio):
    studio.templates.save("Layer 2", {"architecture": "topk", "k": 8})
    ext = studio.templates.save("Layer 2", {"layers": [2]}, kind="extraction")
    assert ext.kind == "extraction" and ext.id.startswith("et_")
    with pytest.raises(UserError, match="already exists"):
        studio.templates.save("layer 2", {"layers": [3]}, kind="extraction")
    assert studio.templates.get("Layer 2").settings["k"] == 8
    assert studio.templates.get("Layer 2", kind="extraction").settings["layers"] == [2]
    with pytest.raises(UserError, match="Unknown template kind"):
        studio.templates.list(kind="steering")


def test_templates_and_favourites_of_an_older_database_move_over(tmp_path):
    path = tmp_path / "old.db"
    db = sqlite_utils.Database(path)
    migrations._load_all()
    for version in sorted(v for v in migrations._MIGRATIONS if v < 61):
        with db.conn:
            migrations._MIGRATIONS[version][1](db)
            db.execute(f"PRAGMA user_version={version}")
    now = "2026-01-01T00:00:00"
    db["training_templates"].insert({"id": "tt_old1", "name": "Old TopK", "description": "d",
                                     "config": json.dumps({"architecture": "topk", "k": 4}),
                                     "created_at": now, "updated_at": now})
    db["template_favourites"].insert({"template_id": "tt_old1", "created_at": now})
    db["template_favourites"].insert({"template_id": "builtin:batchtopk", "created_at": now})
    db["extraction_templates"].insert({"id": "et_mine", "name": "Mine", "description": "",
                                       "settings": json.dumps({"layers": [1]}), "builtin": 0,
                                       "created_at": now, "updated_at": now})
    db["extraction_templates"].insert({"id": "et_seed", "name": "Quick look (100k tokens)",
                                       "description": "", "settings": "{}", "builtin": 1,
                                       "created_at": now, "updated_at": now})
    db.conn.close()
    store = Store(path)
    try:
        from mistudio.app.templates import TemplateService

        svc = TemplateService(store=store)
        old = svc.get("Old TopK")
        assert old.id == "tt_old1" and old.favourite and old.settings == {"architecture": "topk",
                                                                          "k": 4}
        assert svc.get("builtin:batchtopk").favourite
        names = [t.name for t in svc.list(kind="extraction")]
        assert "Mine" in names and names.count("Quick look (100k tokens)") == 1  # code, not row
        assert svc.get("Mine", kind="extraction").settings == {"layers": [1]}
        tables = set(store.db.table_names())
        assert not {"training_templates", "template_favourites", "extraction_templates"} & tables
    finally:
        store.close()
