"""`mistudio templates ...` through the real CLI entry point."""

from __future__ import annotations

import json

import pytest

import mistudio.cli as cli


@pytest.fixture
def run_cli(data_dir, monkeypatch, capsys):
    if "templates" not in cli.COMMAND_MODULES:  # until the lead wires the name in
        monkeypatch.setattr(cli, "COMMAND_MODULES", [*cli.COMMAND_MODULES, "templates"])

    def run(*argv):
        code = cli.main(["--data-dir", str(data_dir), "templates", *argv])
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


def test_list_show_save_favourite_export_import_delete(run_cli, tmp_path):
    code, out, _ = run_cli("list")
    assert code == 0 and "OpenAI-style TopK" in out and "built-in" in out
    code, out, _ = run_cli("show", "batchtopk", "--config-only")
    assert code == 0 and json.loads(out)["architecture"] == "batchtopk"

    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"architecture": "relu", "l1_coefficient": 3.0}))
    code, out, _ = run_cli("save", "My ReLU", "--config", str(cfg))
    assert code == 0 and "saved My ReLU" in out
    code, _, err = run_cli("save", "My ReLU", "--config", str(cfg))
    assert code == 2 and "already exists" in err
    code, out, _ = run_cli("favourite", "My ReLU")
    assert "favourite" in out
    code, out, _ = run_cli("list", "--json")
    items = json.loads(out)
    assert items[0]["name"] == "My ReLU" and items[0]["favourite"]

    dest = tmp_path / "out.json"
    assert run_cli("export", "My ReLU", "fast_prototype", "-o", str(dest))[0] == 0
    code, out, _ = run_cli("import", str(dest))
    assert code == 0 and "My ReLU (2)" in out and "Fast prototype (2)" in out
    code, out, _ = run_cli("delete", "My ReLU (2)")
    assert code == 0 and "deleted" in out
    code, _, err = run_cli("delete", "BatchTopK")
    assert code == 2 and "cannot be deleted" in err
    code, _, err = run_cli("show", "nope")
    assert code == 2 and "No training template" in err


def test_save_refuses_a_misspelled_setting_and_names_the_right_one(run_cli, tmp_path):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"architecture": "topk", "lerning_rate": 1e-3}))
    code, out, err = run_cli("save", "Typo", "--config", str(cfg))
    assert code == 2 and "'lerning_rate'" in err and "Traceback" not in err
    assert "did you mean 'lr'" in err
    code, out, _ = run_cli("list", "--json")
    assert "Typo" not in {t["name"] for t in json.loads(out)}


def test_import_of_a_file_with_one_bad_template_imports_nothing(run_cli, tmp_path):
    path = tmp_path / "three.json"
    path.write_text(json.dumps({"templates": [
        {"name": "good one", "config": {"architecture": "topk", "k": 16}},
        {"name": "bad k", "config": {"architecture": "topk", "k": "many"}},
        {"name": "good two", "config": {"architecture": "relu"}}]}))
    code, out, err = run_cli("import", str(path))
    assert code == 2 and "Template 2 ('bad k')" in err and "'k'" in err
    assert "whole number" in err and "Expected a int" not in err
    code, out, _ = run_cli("list", "--json")
    assert not {"good one", "good two"} & {t["name"] for t in json.loads(out)}


def test_extraction_kind_list_show_export_import_delete(run_cli, tmp_path):
    code, out, _ = run_cli("list", "--kind", "extraction", "--json")
    builtins = json.loads(out)
    assert code == 0 and builtins and all(t["builtin"] for t in builtins)
    first = builtins[0]
    code, out, _ = run_cli("show", first["id"], "--kind", "extraction", "--config-only")
    assert json.loads(out) == first["config"]
    path = tmp_path / "ext.json"
    code, _, _ = run_cli("export", first["id"], "--kind", "extraction", "-o", str(path))
    assert code == 0 and json.loads(path.read_text())["format"] == "mistudio-extraction-templates"
    code, _, err = run_cli("import", str(path))  # not a training file
    assert code == 2 and "extraction" in err
    code, out, _ = run_cli("import", str(path), "--kind", "extraction")
    assert code == 0 and f"imported {first['name']} (2)" in out
    code, out, _ = run_cli("list", "--kind", "extraction")
    assert f"{first['name']} (2)" in out
    code, out, _ = run_cli("delete", f"{first['name']} (2)", "--kind", "extraction")
    assert code == 0 and "deleted" in out
    code, _, err = run_cli("delete", first["id"], "--kind", "extraction")
    assert code == 2 and "Built-in" in err
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"templates": [{"name": "x", "config": {"store_dtype": "f7"}}]}))
    code, _, err = run_cli("import", str(bad), "--kind", "extraction")
    assert code == 2 and "store_dtype" in err and "Traceback" not in err
