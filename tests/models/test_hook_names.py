"""One name per concept: activation sets and their rows say ``hook_name``/``hook_layer``
(SAELens's names); what older versions wrote (``hook_point``/``layer``) still reads."""

import json

import numpy as np

from mistudio.activations.format import ActivationSet, write_activation_set
from mistudio.activations.repository import ActivationSetsRepo
from mistudio.store import migrations
from mistudio.store.db import Store, sqlite_utils

HOOK = "blocks.1.hook_resid_post"


def _write(folder, meta):
    x = np.random.default_rng(0).normal(size=(64, 8)).astype(np.float32)
    write_activation_set(folder, x, meta, shard_rows=32)
    return folder


def test_a_set_written_by_the_previous_code_reads_with_the_new_names(tmp_path):
    # exactly the keys the extraction job wrote until now: both names of each concept
    both = _write(tmp_path / "both", {"hook_point": HOOK, "hook_name": HOOK, "layer": 1,
                                      "hook_layer": 1, "model_name": "tiny"})
    # and what the first versions wrote: only the old names
    old = _write(tmp_path / "old", {"hook_point": HOOK, "layer": 1, "model_name": "tiny"})
    for folder in (both, old):
        s = ActivationSet(folder)
        assert (s.hook_name, s.hook_layer) == (HOOK, 1)
        assert s.meta["hook_name"] == HOOK and s.meta["hook_layer"] == 1
        assert HOOK in repr(s)
    # reading never rewrites the file
    assert "hook_name" not in json.loads((old / "meta.json").read_text())


def test_a_new_set_without_a_layer_has_none(tmp_path):
    s = ActivationSet(_write(tmp_path / "s", {"hook_name": "module:lm_head"}))
    assert s.hook_name == "module:lm_head" and s.hook_layer is None


def test_the_migration_renames_the_columns_and_keeps_the_rows(tmp_path):
    path = tmp_path / "old.db"
    db = sqlite_utils.Database(path)
    migrations._load_all()
    for version in sorted(v for v in migrations._MIGRATIONS if v < 60):
        with db.conn:
            migrations._MIGRATIONS[version][1](db)
            db.execute(f"PRAGMA user_version={version}")
    db["activation_sets"].insert({"id": "act_old1", "hook_point": HOOK, "layer": 1,
                                  "status": "ready", "created_at": "2026-01-01T00:00:00"})
    db.conn.close()
    store = Store(path)  # opens at the latest version: the rename runs once
    try:
        cols = {c.name for c in store.db["activation_sets"].columns}
        assert {"hook_name", "hook_layer"} <= cols and not {"hook_point", "layer"} & cols
        rec = ActivationSetsRepo(store).get("act_old1")
        assert (rec.hook_name, rec.hook_layer, rec.status) == (HOOK, 1, "ready")
    finally:
        store.close()
