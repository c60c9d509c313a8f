"""The inspector's fast path (config.json + safetensors headers, no transformers import)
gives what transformers itself reads from the same folder."""

from __future__ import annotations

import json

import pytest

from mistudio.errors import UserError
from tests.models.conftest import FAMILIES, build_tiny


@pytest.fixture(scope="module")
def saved_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("inspect_models")
    out = {}
    for family in FAMILIES:
        folder = root / family
        build_tiny(family).save_pretrained(folder)
        out[family] = folder
    return out


@pytest.mark.parametrize("family", FAMILIES)
def test_fast_summary_equals_transformers(family, saved_models):
    import torch
    from safetensors import safe_open
    from transformers import AutoConfig

    from mistudio.models.inspect import JsonConfig, architecture_summary, read_config_fast

    folder = saved_models[family]
    assert isinstance(read_config_fast(folder), JsonConfig)  # no transformers on this path
    s = architecture_summary(folder)
    cfg = AutoConfig.from_pretrained(folder)
    assert s["model_type"] == cfg.model_type
    assert s["n_layers"] == cfg.num_hidden_layers
    assert s["d_model"] == cfg.hidden_size
    assert s["n_heads"] == cfg.num_attention_heads
    assert s["n_kv_heads"] == getattr(cfg, "num_key_value_heads", cfg.num_attention_heads)
    assert s["vocab_size"] == cfg.vocab_size
    assert s["context_length"] == cfg.max_position_embeddings
    expected_mlp = getattr(cfg, "intermediate_size", None) or getattr(cfg, "n_inner", None) \
        or 4 * cfg.hidden_size
    assert s["d_mlp"] == expected_mlp
    # parameters and dtype from the headers == what safetensors' own reader sees
    n, dtypes = 0, set()
    for path in folder.glob("*.safetensors"):
        with safe_open(str(path), framework="pt") as fh:
            for key in fh.keys():
                t = fh.get_tensor(key)
                n += t.numel()
                dtypes.add(t.dtype)
    assert s["n_params"] == n
    assert dtypes == {torch.float32} and s["dtype"] == "float32"


def test_unknown_family_and_remote_code_take_the_transformers_path(tmp_path, saved_models):
    import shutil

    from mistudio.models.inspect import JsonConfig, read_config_fast

    folder = tmp_path / "m"
    shutil.copytree(saved_models["gpt2"], folder)
    cfg = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**cfg, "auto_map": {"AutoConfig": "x.Y"}}))
    assert not isinstance(read_config_fast(folder), JsonConfig)
    assert not isinstance(read_config_fast(saved_models["gpt2"], trust_remote_code=True),
                          JsonConfig)


def test_damaged_weights_file_is_reported(tmp_path, saved_models):
    import shutil

    from mistudio.models.inspect import architecture_summary

    folder = tmp_path / "m"
    shutil.copytree(saved_models["llama"], folder)
    weights = next(folder.glob("*.safetensors"))
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])  # a download cut in the middle
    with pytest.raises(UserError, match="damaged or incomplete"):
        architecture_summary(folder)
    weights.write_bytes(b"\x05")
    with pytest.raises(UserError, match="damaged or incomplete"):
        architecture_summary(folder)
