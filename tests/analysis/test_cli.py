"""``mistudio analyze`` and ``mistudio features ...`` end to end on a tiny model."""

from __future__ import annotations

import json
import re

from mistudio.cli import main
from tests.analysis.conftest import random_sae, save_sae


def test_analyze_and_features_commands(data_dir, tiny_gpt2_dir, analysis_tokens, tmp_path,
                                       capsys):
    base = ["--data-dir", str(data_dir)]
    assert main(base + ["models", "add", str(tiny_gpt2_dir), "--name", "tiny-gpt2"]) == 0
    save_sae(tmp_path / "sae", random_sae())
    assert main(base + ["sae", "import", str(tmp_path / "sae")]) == 0
    sae_id = re.search(r"(sae_[0-9a-f]+)", capsys.readouterr().out).group(1)
    assert main(base + ["features", "show", sae_id, "3"]) == 2
    assert "no completed feature analysis" in capsys.readouterr().err
    rc = main(base + ["analyze", sae_id, "--tokens", str(analysis_tokens), "--max-tokens", "300",
                      "--device", "cpu"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "memory about" in out
    fa_id = re.search(r"(fa_[0-9a-f]+): 300 tokens", out).group(1)
    assert main(base + ["features", "list", sae_id]) == 0
    assert fa_id in capsys.readouterr().out
    assert main(base + ["features", "search", sae_id, "e", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert hits and all(not h["dead"] for h in hits)
    f = hits[0]["feature"]
    assert main(base + ["features", "show", sae_id, str(f), "--analysis", fa_id]) == 0
    out = capsys.readouterr().out
    assert f"feature {f} of analysis {fa_id}" in out and "logit lens (folded)" in out
    assert main(base + ["features", "top", sae_id, "The cat sat on the mat."]) == 0
    assert "(BOS, not analysed)" in capsys.readouterr().out
    assert main(base + ["features", "ablate", sae_id, str(f), "--examples", "1"]) == 0
    assert "loss" in capsys.readouterr().out
    assert main(base + ["features", "export", sae_id, str(tmp_path / "np")]) == 0
    batch = json.loads((tmp_path / "np" / "batch-0.json").read_text())
    assert f in [x["feature_index"] for x in batch["features"]]
    assert main(base + ["features", "export", sae_id, str(tmp_path / "v"), "--format", "npy",
                        "--features", "1,2"]) == 0
    assert (tmp_path / "v.npy").exists()
    # user errors: exit code 2 and a message, never a traceback
    for bad in (["features", "show", sae_id, "100000"],
                ["features", "export", sae_id, str(tmp_path / "x"), "--features", "a,b"],
                ["features", "show", sae_id, "1", "--analysis", "fa_nothing"],
                ["analyze", "sae_nothing", "--tokens", str(analysis_tokens)]):
        assert main(base + bad) == 2, bad
        err = capsys.readouterr().err
        assert "error:" in err and "Traceback" not in err
