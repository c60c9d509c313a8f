"""Matryoshka BatchTopK: nested losses against a brute-force computation, prefixes as SAEs of
their own, SAELens's saved layout, config checks and a training run through the Trainer."""

from __future__ import annotations

import json

import pytest
import torch

from mistudio.errors import UserError
from mistudio.sae.architectures import BatchTopKSAE
from mistudio.sae.data import TensorSource
from mistudio.sae.formats import load_sae, save_saelens
from mistudio.sae.matryoshka import MatryoshkaBatchTopKSAE
from mistudio.sae.trainer import Trainer

WIDTHS = [6, 20, 48]


def _sae(seed=0, **kw):
    sae = MatryoshkaBatchTopKSAE(16, 48, k=5, widths=WIDTHS[:-1], seed=seed, **kw)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():  # non-trivial biases, so b_dec's role is tested too
        sae.b_enc.copy_(torch.randn(48, generator=gen) * 0.1)
        sae.b_dec.copy_(torch.randn(16, generator=gen) * 0.2)
    return sae


def _brute_force_losses(sae, x):
    """Dense, literal version of the nested loss: global top (k*B) of relu(pre) over the
    whole batch, then each prefix reconstruction from the first w latents."""
    W_enc, b_enc = sae.W_enc_t.t(), sae.b_enc
    W_dec, b_dec = sae.W_dec, sae.b_dec
    pre = torch.relu((x - b_dec) @ W_enc + b_enc)
    flat = pre.flatten()
    top = flat.topk(sae.k * x.shape[0])
    acts = torch.zeros_like(flat).scatter(0, top.indices, top.values).view_as(pre)
    losses = {}
    for w in WIDTHS:
        recon = acts[:, :w] @ W_dec[:w] + b_dec
        losses[w] = (recon - x).pow(2).sum(dim=-1).mean()
    return losses


def test_each_prefix_loss_and_gradient_equal_brute_force():
    x = torch.randn(64, 16, generator=torch.Generator().manual_seed(3)) * 2
    sae = _sae()
    out = sae.training_step(x, x)
    ref = _sae()
    want = _brute_force_losses(ref, x)
    for w in WIDTHS[:-1]:
        torch.testing.assert_close(out.extra[f"inner_mse_loss_{w}"], want[w].detach())
    torch.testing.assert_close(out.mse, want[48].detach())
    # the shortest prefix reconstructs worst: the levels really differ
    assert want[6] > want[20] > want[48]
    # the training loss is the sum of every level's MSE (no dead latents: no AuxK), and its
    # gradients are the brute-force ones
    total = sum(want.values())
    torch.testing.assert_close(out.loss, total)
    out.loss.backward()
    total.backward()
    for (name, p), q in zip(sae.named_parameters(), ref.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-5, msg=name)


def test_a_prefix_only_model_equals_the_nested_one_truncated():
    sae = _sae(seed=4)
    x = torch.randn(32, 16, generator=torch.Generator().manual_seed(5))
    sae.training_step(x, x)  # sets the global threshold
    sae.eval()
    assert float(sae.threshold) > 0
    with torch.no_grad():
        full = sae.encode(x)
        for w in WIDTHS:
            small = sae.prefix(w)
            assert isinstance(small, BatchTopKSAE) and small.d_sae == w
            torch.testing.assert_close(small.encode(x), full[:, :w])
            want = full[:, :w] @ sae.W_dec[:w] + sae.b_dec
            torch.testing.assert_close(small(x), want)
        # in training mode the nested reconstructions are the same truncations of the
        # one batch selection
        sae.train()
        acts = sae.encode(x)
        from mistudio.sae.sparse_ops import sparse_encode

        vals, lat, offs = sparse_encode(sae._input(x), sae.W_enc_t, sae.b_enc, sae.k,
                                        batch_mode=True)
        prefixes = sae.prefix_reconstructions(vals, lat, offs)
        for j, w in enumerate(WIDTHS):
            torch.testing.assert_close(prefixes[j], acts[:, :w] @ sae.W_dec[:w] + sae.b_dec)
    with pytest.raises(ValueError, match="not one of"):
        sae.prefix(7)


#: SAELens's JumpReLU inference config fields (sae_lens/saes/sae.py SAEConfig,
#: jumprelu_sae.py JumpReLUSAEConfig; TrainingSAEConfig.get_inference_sae_cfg_dict) and the
#: training details save_inference_model puts in the metadata for matryoshka_batchtopk
#: (MatryoshkaBatchTopKTrainingSAEConfig's fields that JumpReLUSAEConfig lacks), 6.54.
SAELENS_INFERENCE_KEYS = {"architecture", "d_in", "d_sae", "dtype", "device",
                          "apply_b_dec_to_input", "normalize_activations",
                          "reshape_activations", "metadata"}
SAELENS_MATRYOSHKA_DETAILS = {"decoder_init_norm", "k", "use_sparse_activations",
                              "aux_loss_coefficient", "rescale_acts_by_decoder_norm",
                              "topk_threshold_lr", "matryoshka_widths",
                              "use_matryoshka_aux_loss"}


def test_saved_as_saelens_saves_it(tmp_path):
    sae = _sae(seed=2)
    x = torch.randn(32, 16, generator=torch.Generator().manual_seed(6))
    sae.training_step(x, x)
    sae.eval()
    save_saelens(tmp_path / "m", sae, scale_in=1.5, model_name="gpt2", hook_name="blocks.0.x")
    cfg = json.loads((tmp_path / "m" / "cfg.json").read_text())
    assert set(cfg) == SAELENS_INFERENCE_KEYS
    assert cfg["architecture"] == "jumprelu"
    meta = cfg["metadata"]
    assert meta["training_architecture"] == "matryoshka_batchtopk"
    assert set(meta["training_architecture_details"]) == SAELENS_MATRYOSHKA_DETAILS
    assert meta["training_architecture_details"]["matryoshka_widths"] == WIDTHS
    from safetensors.torch import load_file

    tensors = load_file(str(tmp_path / "m" / "sae_weights.safetensors"))
    assert set(tensors) == {"W_enc", "b_enc", "W_dec", "b_dec", "threshold"}
    assert torch.all(tensors["threshold"] == sae.threshold)  # one global threshold per latent
    loaded, _ = load_sae(tmp_path / "m")
    assert isinstance(loaded, MatryoshkaBatchTopKSAE) and loaded.widths == WIDTHS
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), sae(x * 1.5) / 1.5, rtol=1e-4, atol=1e-5)


def test_config_widths_are_checked_and_coerced(small_config):
    from mistudio.sae.config import TrainingConfig

    cfg = TrainingConfig.from_dict({"architecture": "matryoshka_batchtopk",
                                    "matryoshka_widths": "8, 32", "activation_path": "x"})
    assert cfg.matryoshka_widths == [8, 32]
    with pytest.raises(UserError, match="wrong type"):
        TrainingConfig.from_dict({"matryoshka_widths": "8, many"})
    with pytest.raises(UserError, match="strictly increasing"):
        small_config(architecture="matryoshka_batchtopk",
                     matryoshka_widths=[32, 16]).validate(d_in=32)
    with pytest.raises(UserError, match="strictly increasing"):  # wider than d_sae = 96
        small_config(architecture="matryoshka_batchtopk",
                     matryoshka_widths=[16, 200]).validate(d_in=32)
    small_config(architecture="matryoshka_batchtopk", matryoshka_widths=[16, 96]).validate(32)


def test_training_reports_prefix_losses_and_orders_features(synthetic, small_config,
                                                            tmp_path):
    x, _ = synthetic
    cfg = small_config(architecture="matryoshka_batchtopk", matryoshka_widths=[12, 48],
                       k=4, total_tokens=256 * 80, lr=1e-2, metrics_every_steps=20)
    tr = Trainer(cfg, TensorSource(x, meta={"model_name": "m", "hook_point": "h"}), tmp_path)
    result = tr.run()
    m = tr.members[0].last_metrics
    # nested: a shorter prefix reconstructs worse, the full SAE best
    assert m["inner_mse_loss_12"] > m["inner_mse_loss_48"] > m["mse"]
    assert m["explained_variance"] > 0.6
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert all("inner_mse_loss_12" in r and "inner_mse_loss_48" in r for r in rows)
    # the early latents learn the frequent features: they fire more often than late ones
    density = tr.members[0].tracker.density_fired
    assert density[:12].mean() > density[48:].mean()
    saved = json.loads((tmp_path / "saes" / "sae" / "cfg.json").read_text())
    assert saved["metadata"]["training_architecture"] == "matryoshka_batchtopk"
    assert result["saes"][0]["architecture"] == "matryoshka_batchtopk"


def _brute_force_matryoshka_aux(sae, x, dead):
    """SAELens's calculate_matryoshka_aux_loss written out densely: for each level, the
    level's dead latents only (others at -inf), their top min(aux_k, dead) pre-activations
    (ReLU), decoded without bias, against x minus that level's prefix reconstruction (from
    the training-time BatchTopK selection); scaled by min(dead / aux_k, 1); summed."""
    W_enc, b_enc, W_dec, b_dec = sae.W_enc_t.t(), sae.b_enc, sae.W_dec, sae.b_dec
    hidden_pre = (x - b_dec) @ W_enc + b_enc
    relu = torch.relu(hidden_pre).flatten()
    top = relu.topk(sae.k * x.shape[0])
    acts = torch.zeros_like(relu).scatter(0, top.indices, top.values).view_as(hidden_pre)
    total, prev = torch.zeros(()), 0
    for w in WIDTHS:
        level_dead = torch.zeros_like(dead)
        level_dead[prev:w] = dead[prev:w]
        n_dead = int(level_dead.sum())
        if n_dead:
            residual = (x - (acts[:, :w] @ W_dec[:w] + b_dec)).detach()  # as SAELens
            ka = min(sae.aux_k, n_dead)
            masked = torch.where(level_dead[None], hidden_pre, -torch.inf)
            t = masked.topk(ka, dim=-1)
            aux_acts = torch.zeros_like(hidden_pre).scatter(-1, t.indices, torch.relu(t.values))
            loss = (aux_acts @ W_dec - residual).pow(2).sum(dim=-1).mean()
            total = total + min(n_dead / sae.aux_k, 1.0) * loss
        prev = w
    return total


def test_matryoshka_aux_loss_equals_a_brute_force_computation():
    """use_matryoshka_aux_loss: AuxK per level against each level's own residual, as
    SAELens's calculate_matryoshka_aux_loss computes it; value and gradients."""
    x = torch.randn(64, 16, generator=torch.Generator().manual_seed(8)) * 2
    dead = torch.zeros(48, dtype=torch.bool)
    # dead latents in the first and last level, none in the middle one (which adds nothing);
    # the last level has more dead latents than aux_k (so its term is not scaled down)
    dead[[1, 4]] = True
    dead[20:44] = True
    sae = _sae(seed=6, use_matryoshka_aux_loss=True, aux_k=8, aux_k_coefficient=0.5)
    out = sae.training_step(x, x, dead_mask=dead)
    ref = _sae(seed=6, aux_k=8)
    want = _brute_force_matryoshka_aux(ref, x, dead)
    torch.testing.assert_close(out.aux_loss, want.detach(), rtol=1e-5, atol=1e-6)
    nested = sum(_brute_force_losses(ref, x).values())
    torch.testing.assert_close(out.loss, nested + 0.5 * want, rtol=1e-5, atol=1e-5)
    out.loss.backward()
    (nested + 0.5 * want).backward()
    for (name, p), q in zip(sae.named_parameters(), ref.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-5, msg=name)
    # the option changes what is computed: the default AuxK (whole-SAE residual) differs
    plain = _sae(seed=6, aux_k=8, aux_k_coefficient=0.5).training_step(x, x, dead_mask=dead)
    assert abs(float(plain.aux_loss) - float(out.aux_loss)) > 1e-3
    # no dead latent: no aux term
    quiet = _sae(seed=6, use_matryoshka_aux_loss=True, aux_k=8).training_step(
        x, x, dead_mask=torch.zeros(48, dtype=torch.bool))
    assert float(quiet.aux_loss) == 0.0


def test_matryoshka_aux_option_reaches_the_sae_the_saved_file_and_the_cli(
        synthetic, small_config, tmp_path):
    from mistudio.sae.config import TrainingConfig
    from mistudio.templates.builtin import BUILTIN_TEMPLATES

    cfg = TrainingConfig.from_dict({"architecture": "matryoshka_batchtopk",
                                    "use_matryoshka_aux_loss": "true", "activation_path": "x"})
    assert cfg.use_matryoshka_aux_loss is True
    tpl = next(t for t in BUILTIN_TEMPLATES if t.key == "matryoshka_batchtopk")
    assert tpl.config["use_matryoshka_aux_loss"] is False  # SAELens's default
    x, _ = synthetic
    run = small_config(architecture="matryoshka_batchtopk", matryoshka_widths=[12, 48], k=4,
                       total_tokens=256 * 6, use_matryoshka_aux_loss=True)
    tr = Trainer(run, TensorSource(x, meta={"model_name": "m", "hook_point": "h"}), tmp_path)
    tr.run()
    assert tr.members[0].sae.use_matryoshka_aux_loss is True
    saved = json.loads((tmp_path / "saes" / "sae" / "cfg.json").read_text())
    assert saved["metadata"]["training_architecture_details"]["use_matryoshka_aux_loss"] is True
    loaded, _ = load_sae(tmp_path / "saes" / "sae")
    assert loaded.use_matryoshka_aux_loss is True
