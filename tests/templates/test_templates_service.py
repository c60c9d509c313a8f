"""Training templates: built-ins, save/rename/delete, favourites, import/export, last used."""

from __future__ import annotations

import json

import pytest

from mistudio.errors import UserError
from mistudio.templates.builtin import BUILTIN_TEMPLATES


def test_builtins_listed_and_read_only(studio):
    names = [t.name for t in studio.templates.list()]
    for expected in ("Fast prototype", "OpenAI-style TopK", "BatchTopK",
                     "Gemma-Scope-style JumpReLU", "April-update ReLU"):
        assert expected in names
    topk = studio.templates.get("openai_topk")
    assert topk.builtin and topk.settings["architecture"] == "topk" and topk.settings["k"] == 32
    # Changing the returned dict must not change the built-in itself.
    topk.settings["k"] = 999
    assert studio.templates.get("builtin:openai_topk").settings["k"] == 32
    with pytest.raises(UserError, match="cannot be deleted"):
        studio.templates.delete(topk.id)
    with pytest.raises(UserError, match="cannot be renamed"):
        studio.templates.rename(topk.id, "mine")


def test_builtin_recipes_have_the_published_values():
    by_key = {b.key: b.config for b in BUILTIN_TEMPLATES}
    assert by_key["openai_topk"]["aux_k_coefficient"] == pytest.approx(1 / 32)
    assert by_key["gemma_scope_jumprelu"]["adam_beta1"] == 0.0
    assert by_key["gemma_scope_jumprelu"]["lr"] == pytest.approx(7e-5)
    assert by_key["april_update_relu"]["l1_coefficient"] == 5.0
    assert by_key["april_update_relu"]["lr"] == pytest.approx(5e-5)
    assert by_key["batchtopk"]["architecture"] == "batchtopk"


def test_save_get_rename_delete(studio):
    svc = studio.templates
    t = svc.save("  My   TopK ", {"architecture": "topk", "k": 64, "lr": 1e-4},
                 description="layer 6")
    assert t.id.startswith("tt_") and t.name == "My TopK" and not t.builtin
    assert svc.get("my topk").settings == {"architecture": "topk", "k": 64, "lr": 1e-4}
    with pytest.raises(UserError, match="already exists"):
        svc.save("MY TOPK", {"k": 1})
    replaced = svc.save("My TopK", {"k": 8}, overwrite=True)
    assert replaced.id == t.id and svc.get(t.id).settings == {"k": 8}
    with pytest.raises(UserError, match="built-in"):
        svc.save("BatchTopK", {"k": 1})
    svc.rename(t.id, "Renamed")
    assert svc.get(t.id).name == "Renamed"
    svc.set_favourite(t.id, True)
    svc.delete(t.id)
    with pytest.raises(UserError, match="No training template"):
        svc.get(t.id)
    assert t.id not in svc.repo.favourites()


@pytest.mark.parametrize("config, message", [
    ("not a dict", "must be a JSON object"),
    ({"lr": float("nan")}, "not a number"),
    ({"lr": float("inf")}, "not a number"),
    ({"x": object()}, "cannot hold"),
    ({"": 1}, "empty or non-text name"),
])
def test_bad_configs_are_rejected_with_a_clear_message(studio, config, message):
    with pytest.raises(UserError, match=message):
        studio.templates.save("bad", config)
    assert studio.templates.repo.list() == []


def test_empty_name_rejected(studio):
    with pytest.raises(UserError, match="needs a name"):
        studio.templates.save("   ", {"k": 1})


def test_favourites_persist_across_restart(studio, data_dir):
    from mistudio.secrets_test_support import MemorySecrets
    from mistudio.studio import Studio

    mine = studio.templates.save("Mine", {"k": 4})
    studio.templates.set_favourite("builtin:batchtopk", True)
    studio.templates.set_favourite(mine.id, True)
    studio.templates.set_favourite("builtin:batchtopk", False)
    studio.templates.set_favourite("builtin:openai_topk", True)
    studio.templates.remember_last_used({"architecture": "relu", "lr": 3e-4})
    studio.close()
    again = Studio(data_dir, secrets=MemorySecrets())
    try:
        favs = {t.id for t in again.templates.list() if t.favourite}
        assert favs == {mine.id, "builtin:openai_topk"}
        ordered = again.templates.list(favourites_first=True)
        assert {t.id for t in ordered[:2]} == favs
        assert again.templates.last_used() == {"architecture": "relu", "lr": 3e-4}
    finally:
        again.close()


def test_export_import_round_trip(studio, tmp_path):
    svc = studio.templates
    a = svc.save("A", {"architecture": "topk", "k": 16, "sweep": {"lr": [1e-4, 3e-4]}},
                 description="first")
    path = svc.export([a.id, "builtin:gemma_scope_jumprelu"], tmp_path / "out.json")
    doc = json.loads(path.read_text())
    assert doc["format"] == "mistudio-training-templates" and len(doc["templates"]) == 2
    imported = svc.import_file(path)
    # Names clash with what exists, so both get a suffix; settings come back identical.
    assert [t.name for t in imported] == ["A (2)", "Gemma-Scope-style JumpReLU (2)"]
    assert imported[0].settings == a.settings and imported[0].description == "first"
    assert imported[1].settings == svc.get("builtin:gemma_scope_jumprelu").settings
    # A single-template object imports too.
    single = tmp_path / "single.json"
    single.write_text(json.dumps({"name": "Solo", "config": {"k": 2}}))
    assert [t.name for t in svc.import_file(single)] == ["Solo"]


@pytest.mark.parametrize("content, message", [
    ("{not json", "not valid JSON"),
    (json.dumps({"foo": 1}), "does not look like a training template"),
    (json.dumps({"format": "other", "templates": []}), "not a training template file"),
    (json.dumps({"format": "mistudio-training-templates", "version": 99, "templates": [{}]}),
     "newer"),
    (json.dumps({"templates": []}), "holds no templates"),
    (json.dumps({"templates": [{"name": "ok", "config": {"k": 1}},
                               {"name": "bad", "config": 3}]}), "Template 2"),
])
def test_bad_import_files_change_nothing(studio, tmp_path, content, message):
    path = tmp_path / "in.json"
    path.write_text(content)
    with pytest.raises(UserError, match=message):
        studio.templates.import_file(path)
    assert studio.templates.repo.list() == []  # all or nothing


def test_import_missing_file(studio, tmp_path):
    with pytest.raises(UserError, match="Cannot read"):
        studio.templates.import_file(tmp_path / "nope.json")


def test_merge_reports_unknown_fields(studio):
    # A template stored by a newer version (saving one now refuses unknown settings).
    studio.templates.repo.insert("tt_future", "X", "", {"k": 8, "from_the_future": 1})
    t = studio.templates.get("tt_future")
    merged, ignored = studio.templates.merge({"k": 32, "lr": 1e-3}, t, known_fields={"k", "lr"})
    assert merged == {"k": 8, "lr": 1e-3} and ignored == ["from_the_future"]


@pytest.mark.parametrize("template", BUILTIN_TEMPLATES, ids=lambda t: t.key)
def test_builtins_are_valid_training_configs(template):
    from mistudio.sae.config import TrainingConfig

    cfg = TrainingConfig.from_dict({**template.config, "activation_path": "/data/acts"})
    cfg.validate(d_in=768, num_rows=10**9)  # GPT-2-small width; raises on any bad setting


def test_scaled_learning_rate_and_estimate():
    from mistudio.templates.scaling import estimate_training, scaled_learning_rate

    assert scaled_learning_rate(2 ** 14) == pytest.approx(2e-4)
    assert scaled_learning_rate(4 * 2 ** 14) == pytest.approx(1e-4)  # 1/sqrt(width)
    est = estimate_training({"expansion_factor": 8, "batch_size": 4096,
                             "total_tokens": 10**6, "sweep": {"k": [16, 32]}}, 768)
    d_sae = 8 * 768
    params_one = 768 * d_sae + d_sae * 768 + d_sae + 768 + d_sae
    assert est.saes == 2 and est.d_sae == d_sae and est.params == 2 * params_one
    assert est.weights_bytes == 4 * est.params and est.optimizer_bytes == 12 * est.params
    assert est.verdict(est.total_bytes * 2) == "fits"
    assert est.verdict(int(est.total_bytes * 1.1)) == "tight"
    assert est.verdict(est.total_bytes // 2) == "won't fit"
    assert est.seconds and est.seconds > 0


@pytest.mark.parametrize("config, message", [
    ({"lerning_rate": 1e-3}, "'lerning_rate' \\(did you mean 'lr'"),
    ({"k": "many"}, "setting 'k' has the wrong type.*Expected a whole number"),
    ({"architecture": "toppk"}, "unknown architecture 'toppk'"),
    ({"sweep": {"batch_size": [1, 2]}}, "'batch_size' cannot be swept"),
    ({"sweep": {"k": ["x"]}}, "setting 'k' has the wrong type"),
    ({"total_tokens": 100, "batch_size": 4096}, "shorter than one batch"),
])
def test_template_settings_are_checked_as_a_training_checks_them(config, message):
    from mistudio.templates.validation import validate_template_settings

    with pytest.raises(UserError, match=message) as err:
        validate_template_settings(config, where="Template 'x'")
    assert str(err.value).startswith("Template 'x'")


def test_misspelled_setting_suggests_the_valid_name():
    from mistudio.templates.validation import validate_template_settings

    with pytest.raises(UserError, match=r"'expansion_factr' \(did you mean 'expansion_factor'"):
        validate_template_settings({"expansion_factr": 4})
    with pytest.raises(UserError, match=r"'batchsize' \(did you mean 'batch_size'\?\)"):
        validate_template_settings({"batchsize": 1024})


def test_valid_template_settings_come_back_typed():
    from mistudio.templates.validation import validate_template_settings

    clean = validate_template_settings({"k": "16", "total_tokens": 5e6, "lr": 1,
                                        "config_version": 1, "sweep": {"k": [8, 16]}})
    assert clean == {"k": 16, "total_tokens": 5_000_000, "lr": 1.0, "sweep": {"k": [8, 16]}}
    assert type(clean["total_tokens"]) is int and type(clean["lr"]) is float
