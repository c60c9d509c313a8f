"""CLI and service parity: `mistudio templates save/favourite --kind extraction`, and steering
presets renamed, duplicated and imported through SteeringService (the Templates tab uses it)."""

from __future__ import annotations

import json

import pytest

from mistudio.errors import UserError


def test_preset_rename_duplicate_import_go_through_the_service(studio, preset, tmp_path):
    svc = studio.steering
    copy = svc.duplicate_preset("Calm tone")
    assert copy.name == "Calm tone copy" and svc.preset("Calm tone copy").interventions == \
        preset.interventions
    assert svc.duplicate_preset("Calm tone").name == "Calm tone copy (2)"
    with pytest.raises(UserError, match="exists already"):
        svc.rename_preset("Calm tone", "calm tone copy")
    with pytest.raises(UserError, match="needs a name"):
        svc.rename_preset("Calm tone", "   ")
    renamed = svc.rename_preset("Calm tone", "Quiet   tone")
    assert renamed.name == "Quiet tone"
    assert sorted(p.name for p in svc.presets()) == ["Calm tone copy", "Calm tone copy (2)",
                                                     "Quiet tone"]
    assert svc.rename_preset("Quiet tone", "Quiet tone").name == "Quiet tone"  # no-op is fine
    out = svc.export_preset("Quiet tone", tmp_path / "q.json")
    assert svc.import_preset(out, keep_both=True).name == "Quiet tone (2)"
    with pytest.raises(UserError, match="exists already"):
        svc.import_preset(out)


def test_cli_templates_save_and_favourite_extraction_templates(studio, tmp_path, capsys):
    from mistudio.cli import main

    root = studio.paths.root
    studio.close(timeout=5)
    cfg = tmp_path / "ext.json"
    cfg.write_text(json.dumps({"layers": "0,1", "hook_types": ["resid_post"],
                               "max_tokens": 4096}))
    args = ["--data-dir", str(root), "templates"]
    assert main(args + ["save", "Two layers", "--config", str(cfg), "--kind",
                        "extraction"]) == 0
    assert "saved Two layers" in capsys.readouterr().out
    assert main(args + ["favourite", "Two layers", "--kind", "extraction"]) == 0
    assert "Two layers: favourite" in capsys.readouterr().out
    assert main(args + ["list", "--kind", "extraction", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["Two layers"]["favourite"] is True
    assert main(args + ["favourite", "Two layers"]) == 2  # not a training template
    assert "No training template" in capsys.readouterr().err
    cfg.write_text(json.dumps({"layers": "0", "bogus_key": 1}))
    assert main(args + ["save", "Bad", "--config", str(cfg), "--kind", "extraction"]) == 2
    assert "bogus_key" in capsys.readouterr().err
