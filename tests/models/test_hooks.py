"""Hook-point resolution for each family, checked against output_hidden_states and the
residual identity resid_post = resid_pre + attn_out + mlp_out."""

from __future__ import annotations

import pytest
import torch

from mistudio.activations.capture import capture_once
from mistudio.errors import UserError
from mistudio.models import hooks
from tests.models.conftest import FAMILIES, build_tiny


@pytest.fixture(scope="module")
def ids():
    return torch.randint(0, 512, (2, 12), generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("family", FAMILIES)
def test_hook_points_match_reference(family, ids):
    model = build_tiny(family)
    mt = model.config.model_type
    names = hooks.available_hook_points(mt, 3)
    targets = [hooks.resolve(n, mt, 3) for n in names]
    acts = capture_once(model, targets, ids, stop_early=False)
    with torch.no_grad():
        ref = model(ids, output_hidden_states=True).hidden_states
    for layer in range(3):
        pre = acts[f"blocks.{layer}.hook_resid_pre"]
        post = acts[f"blocks.{layer}.hook_resid_post"]
        attn = acts[f"blocks.{layer}.hook_attn_out"]
        mlp = acts[f"blocks.{layer}.hook_mlp_out"]
        assert pre.shape == post.shape == attn.shape == mlp.shape == (2, 12, 64)
        torch.testing.assert_close(pre, ref[layer])
        if layer < 2:  # HF applies the final norm to the last hidden state
            torch.testing.assert_close(post, ref[layer + 1])
        # the residual stream adds exactly the two branch outputs
        torch.testing.assert_close(post, pre + attn + mlp, atol=1e-5, rtol=1e-5)
        mlp_in = acts[f"blocks.{layer}.hook_mlp_in"]
        mlp_module = model.get_submodule(hooks.resolve(f"blocks.{layer}.hook_mlp_in", mt, 3)
                                         .module_path)
        with torch.no_grad():
            mlp_raw = mlp_module(mlp_in)
        if family == "gemma2":  # the post-MLP norm sits between the MLP and the stream
            norm = model.get_submodule(f"model.layers.{layer}.post_feedforward_layernorm")
            with torch.no_grad():
                mlp_raw = norm(mlp_raw)
        torch.testing.assert_close(mlp_raw, mlp, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("family", ["gpt2", "llama", "gpt_neox"])
def test_stop_early_gives_identical_values_and_skips_later_layers(family, ids):
    model = build_tiny(family)
    mt = model.config.model_type
    t = [hooks.resolve("blocks.1.hook_resid_post", mt, 3),
         hooks.resolve("blocks.0.hook_mlp_out", mt, 3)]
    ran = []
    last = model.get_submodule(hooks.family_of(mt).blocks + ".2")
    h = last.register_forward_pre_hook(lambda *a: ran.append(1))
    stopped = capture_once(model, t, ids, stop_early=True)
    assert ran == []
    full = capture_once(model, t, ids, stop_early=False)
    h.remove()
    assert ran == [1]
    for k in full:
        assert torch.equal(stopped[k], full[k])


def test_raw_module_path_and_errors(ids):
    model = build_tiny("gpt2")
    t = hooks.resolve("module:transformer.h.1.mlp.c_fc", "gpt2", 3)
    assert t.layer == 1
    out = capture_once(model, [t], ids)["module:transformer.h.1.mlp.c_fc"]
    assert out.shape == (2, 12, 256)
    with pytest.raises(UserError, match="no module"):
        capture_once(model, [hooks.resolve("module:transformer.h.9.nothing", "gpt2", 3)], ids)
    with pytest.raises(UserError, match="layer 5"):
        hooks.resolve("blocks.5.hook_resid_post", "gpt2", 3)
    with pytest.raises(UserError, match="not a hook point"):
        hooks.resolve("blocks.1.resid", "gpt2", 3)
    with pytest.raises(UserError, match="not mapped"):
        hooks.resolve("blocks.1.hook_resid_post", "bloom", 3)
    # raw modules still work for an unmapped family
    assert hooks.resolve("module:h.1", "bloom", 3).layer is None


@pytest.mark.parametrize("family", FAMILIES)
def test_mlp_hook_post_is_the_neurons_feeding_the_output_projection(family, ids):
    model = build_tiny(family)
    mt = model.config.model_type
    post = hooks.resolve("blocks.1.mlp.hook_post", mt, 3)
    assert post.hook_type == "mlp_post" and post.layer == 1
    assert hooks.parse_hook_name("blocks.1.mlp.hook_post") == (1, "mlp_post")
    assert hooks.hook_name(1, "mlp_post") == "blocks.1.mlp.hook_post"
    mlp_in = hooks.resolve("blocks.1.hook_mlp_in", mt, 3)
    acts = capture_once(model, [post, mlp_in], ids, stop_early=False)
    neurons = acts[post.name]
    d_mlp = 256 if family == "gpt2" else 128  # GPT-2: 4 x d_model; others intermediate_size
    assert neurons.shape == (2, 12, d_mlp)
    proj = model.get_submodule(post.module_path)
    mlp = model.get_submodule(mlp_in.module_path)
    with torch.no_grad():
        torch.testing.assert_close(proj(neurons), mlp(acts[mlp_in.name]), atol=1e-5, rtol=1e-5)
