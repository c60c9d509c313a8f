"""`mistudio models ...` and `mistudio extract ...` end to end on a tiny model."""

from __future__ import annotations

import re

from mistudio.cli import main


def test_models_and_extract_cli(data_dir, tiny_gpt2_dir, packed_tokenization, capsys):
    base = ["--data-dir", str(data_dir)]
    assert main(base + ["models", "add", str(tiny_gpt2_dir), "--name", "tiny"]) == 0
    out = capsys.readouterr().out
    model_id = re.search(r"(m_[0-9a-f]+)\s+tiny\s+ready", out).group(1)
    assert main(base + ["models", "list"]) == 0
    assert "gpt2" in capsys.readouterr().out
    assert main(base + ["models", "show", "tiny"]) == 0
    out = capsys.readouterr().out
    assert "n_layers        : 3" in out and "CUDA" in out
    assert main(base + ["models", "hooks", model_id]) == 0
    assert "blocks.2.hook_mlp_in" in capsys.readouterr().out
    assert main(base + ["models", "tree", model_id, "--depth", "3"]) == 0
    assert "x3" in capsys.readouterr().out

    rc = main(base + ["extract", "run", model_id, str(packed_tokenization), "--layers", "0,2",
                      "--hooks", "resid_post,mlp_out", "--max-tokens", "100",
                      "--batch-size", "4", "--device", "cpu", "--dtype", "float16"])
    out = capsys.readouterr().out
    assert rc == 0, out
    ids = re.findall(r"(act_[0-9a-f]+)\s+(\S+)\s+ready\s+100 rows", out)
    assert sorted(h for _, h in ids) == sorted(
        f"blocks.{layer}.hook_{t}" for layer in (0, 2) for t in ("resid_post", "mlp_out"))
    assert main(base + ["extract", "list"]) == 0
    assert capsys.readouterr().out.count("ready") == 4
    assert main(base + ["extract", "show", ids[0][0]]) == 0
    assert "norm" in capsys.readouterr().out
    assert main(base + ["extract", "templates"]) == 0
    assert "built-in" in capsys.readouterr().out
    assert main(base + ["extract", "delete", ids[0][0]]) == 0
    assert main(base + ["models", "show", "nothing-here"]) == 2
    assert "No model" in capsys.readouterr().err
    assert main(base + ["models", "delete", model_id]) == 0
    assert tiny_gpt2_dir.exists()
