"""Architectures: shapes, losses against references written here, sparse kernels vs dense."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mistudio.sae.architectures import BatchTopKSAE, JumpReLUSAE, ReluSAE, TopKSAE
from mistudio.sae.sparse_ops import batch_topk_select, sparse_decode, sparse_encode, to_dense

D_IN, D_SAE, B = 16, 64, 32


def _randomize(sae):
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        sae.b_dec.copy_(torch.randn(sae.b_dec.shape, generator=gen) * 0.1)
        sae.b_enc.copy_(torch.randn(sae.b_enc.shape, generator=gen) * 0.1)
        if sae.W_skip is not None:
            sae.W_skip.copy_(torch.randn(sae.W_skip.shape, generator=gen) * 0.1)
    return sae


def _x(n=B, d=D_IN, seed=0):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("cls", [ReluSAE, TopKSAE, BatchTopKSAE, JumpReLUSAE])
def test_shapes_and_saelens_parameter_names(cls):
    sae = cls(D_IN, D_SAE, k=4)
    x = _x()
    assert sae.W_enc.shape == (D_IN, D_SAE) and sae.W_dec.shape == (D_SAE, D_IN)
    assert sae.encode(x).shape == (B, D_SAE)
    assert sae(x).shape == (B, D_IN)
    out = sae.training_step(x, x)
    assert out.loss.ndim == 0 and out.recon.shape == (B, D_IN) and out.fired.shape == (D_SAE,)


def test_transcoder_and_skip_shapes():
    sae = _randomize(TopKSAE(D_IN, D_SAE, d_out=24, skip=True, k=4))
    x = _x()
    assert sae.W_dec.shape == (D_SAE, 24) and sae.W_skip.shape == (24, D_IN)
    assert not sae.apply_b_dec_to_input
    assert sae(x).shape == (B, 24)
    expected = sae.encode(x) @ sae.W_dec + sae.b_dec + x @ sae.W_skip.t()
    torch.testing.assert_close(sae(x), expected)


def test_relu_init_and_loss_reference():
    sae = ReluSAE(D_IN, D_SAE, l1_coefficient=2.5, seed=1)
    norms = sae.W_dec.norm(dim=1)
    torch.testing.assert_close(norms, torch.full((D_SAE,), 0.1))
    torch.testing.assert_close(sae.W_enc_t, sae.W_dec)  # W_enc = W_dec^T
    _randomize(sae)
    x, y = _x(), _x(seed=1)
    out = sae.training_step(x, y, sparsity_scale=0.5)
    acts = torch.relu((x - sae.b_dec) @ sae.W_enc + sae.b_enc)
    recon = acts @ sae.W_dec + sae.b_dec
    mse = ((recon - y) ** 2).sum(1).mean()
    l1 = (acts * sae.W_dec.norm(dim=1)).sum(1).mean()
    torch.testing.assert_close(out.loss, mse + 0.5 * 2.5 * l1)
    torch.testing.assert_close(out.l0, (acts > 0).float().sum(1).mean())


@pytest.mark.parametrize("cls", [TopKSAE, BatchTopKSAE, JumpReLUSAE])
def test_unit_decoder_init_and_encoder_scale(cls):
    sae = cls(D_IN, D_SAE, k=4, seed=2)
    torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.ones(D_SAE))
    # TopK-style: W_enc = W_dec^T / sqrt(3) (sparsify's start); JumpReLU: W_enc = W_dec^T
    scale = 3 ** -0.5 if cls is not JumpReLUSAE else 1.0
    torch.testing.assert_close(sae.W_enc_t, sae.W_dec * scale)
    tc = cls(D_IN, D_SAE, d_out=8, transcoder=True, k=4, seed=2)
    torch.testing.assert_close(tc.W_enc_t.norm(dim=1), torch.full((D_SAE,), scale))


def test_topk_loss_with_auxk_reference():
    sae = _randomize(TopKSAE(D_IN, D_SAE, k=4, aux_k=6, aux_k_coefficient=0.25))
    x = _x()
    dead = torch.zeros(D_SAE, dtype=torch.bool)
    dead[::3] = True  # 22 dead latents
    out = sae.training_step(x, x, dead_mask=dead)
    pre = (x - sae.b_dec) @ sae.W_enc + sae.b_enc
    vals, idx = pre.topk(4, dim=1)
    acts = torch.zeros_like(pre).scatter(1, idx, vals.relu())
    recon = acts @ sae.W_dec + sae.b_dec
    mse = ((recon - x) ** 2).sum(1).mean()
    resid = (x - recon).detach()
    dpre = pre.masked_fill(~dead, float("-inf"))
    dvals, didx = dpre.topk(6, dim=1)
    aux_recon = torch.zeros_like(pre).scatter(1, didx, dvals.relu()) @ sae.W_dec
    aux = ((aux_recon - resid) ** 2).sum(1).mean() * min(22 / 6, 1.0)
    torch.testing.assert_close(out.mse, mse.detach())
    torch.testing.assert_close(out.aux_loss, aux.detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.loss, mse + 0.25 * aux, rtol=1e-5, atol=1e-5)
    assert float(out.l0) == pytest.approx(float((acts > 0).float().sum(1).mean()))


@pytest.mark.parametrize("cls", [TopKSAE, BatchTopKSAE])
def test_sparse_kernels_give_dense_autograd_gradients(cls):
    sae = _randomize(cls(D_IN, D_SAE, k=4, aux_k_coefficient=0.0))
    ref = _randomize(cls(D_IN, D_SAE, k=4))
    ref.load_state_dict(sae.state_dict())
    x = _x()
    sae.training_step(x, x).loss.backward()
    pre = (x - ref.b_dec) @ ref.W_enc + ref.b_enc
    if cls is TopKSAE:
        vals, idx = pre.topk(4, dim=1)
        acts = torch.zeros_like(pre).scatter(1, idx, vals.relu())
    else:
        flat = pre.relu().flatten()
        vals, idx = flat.topk(4 * B)
        acts = torch.zeros_like(flat).scatter(0, idx, vals).view_as(pre)
    loss = ((acts @ ref.W_dec + ref.b_dec - x) ** 2).sum(1).mean()
    loss.backward()
    for (name, p), (_, q) in zip(sae.named_parameters(), ref.named_parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-5, msg=name)


def test_batch_topk_select_is_exact_including_the_fallback():
    gen = torch.Generator().manual_seed(0)
    pre = torch.randn(16, 200, generator=gen)
    for p in (pre, pre.clone().index_fill_(0, torch.tensor([3]), 50.0)):  # row 3 dominates
        rows, latents = batch_topk_select(p, 40, candidates_per_row=8)
        got = set(zip(rows.tolist(), latents.tolist()))
        _, flat = p.flatten().topk(40)
        want = {(i // 200, i % 200) for i in flat.tolist()}
        assert got == want
        assert rows.tolist() == sorted(rows.tolist())


def test_sparse_decode_and_to_dense():
    w = torch.randn(10, 5)
    vals = torch.tensor([1.0, 2.0, 3.0])
    lat = torch.tensor([1, 4, 9])
    offsets = torch.tensor([0, 2])  # token 0: latents 1, 4; token 1: latent 9
    dense = to_dense(vals, lat, offsets, 10)
    assert dense[0, 1] == 1 and dense[0, 4] == 2 and dense[1, 9] == 3 and dense.sum() == 6
    torch.testing.assert_close(sparse_decode(vals, lat, offsets, w), dense @ w)


def test_sparse_encode_input_gradient():
    gen = torch.Generator().manual_seed(4)
    x = _x().requires_grad_()
    w = torch.randn(D_SAE, D_IN, generator=gen, requires_grad=True)
    b = torch.zeros(D_SAE, requires_grad=True)
    per_latent = torch.linspace(0.5, 2.0, D_SAE)  # loss weights by latent, not by position
    vals, lat, off = sparse_encode(x, w, b, 4)
    (vals * per_latent[lat]).sum().backward()
    g_sparse = x.grad.clone()
    x.grad = None
    pre = x @ w.t() + b
    v, i = pre.topk(4, dim=1)
    (v.relu() * per_latent[i]).sum().backward()
    torch.testing.assert_close(g_sparse, x.grad)


def test_jumprelu_loss_and_threshold_gradient():
    sae = _randomize(JumpReLUSAE(D_IN, D_SAE, l0_coefficient=0.7, bandwidth=0.5,
                                 init_threshold=0.2))
    x = _x()
    out = sae.training_step(x, x)
    pre = (x - sae.b_dec) @ sae.W_enc + sae.b_enc
    theta = sae.threshold.detach()
    acts = pre.relu() * (pre > theta)
    recon = acts @ sae.W_dec + sae.b_dec
    l0 = (pre > theta).float().sum(1).mean()
    torch.testing.assert_close(out.loss, ((recon - x) ** 2).sum(1).mean() + 0.7 * l0)
    # threshold gradient: straight-through rectangle kernels (Gemma Scope), by hand
    sae.zero_grad()
    out.loss.backward()
    pre, acts = pre.detach(), acts.detach()
    g_acts = (2 * (acts @ sae.W_dec.detach() + sae.b_dec.detach() - x) @ sae.W_dec.detach().t()) / B
    kernel = (((pre - theta) / 0.5).abs() < 0.5).float()
    want = (-(theta / 0.5) * kernel * g_acts).sum(0) + 0.7 * (-(1 / 0.5) * kernel).sum(0) / B
    torch.testing.assert_close(sae.threshold.grad, want, rtol=1e-4, atol=1e-5)


def test_unit_norm_decoder_is_kept_and_parallel_gradient_removed():
    sae = TopKSAE(D_IN, D_SAE, k=4)
    x = _x()
    sae.training_step(x, x).loss.backward()
    sae.constrain_gradients()
    parallel = (sae.W_dec.grad * sae.W_dec).sum(1)
    assert parallel.abs().max() < 1e-5
    with torch.no_grad():
        sae.W_dec.mul_(3.0)
    sae.after_step()
    torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.ones(D_SAE))


def test_batchtopk_inference_uses_the_estimated_threshold():
    sae = _randomize(BatchTopKSAE(D_IN, D_SAE, k=4))
    x = _x()
    out = sae.training_step(x, x)
    acts_train = to_dense(*sparse_encode(x - sae.b_dec, sae.W_enc_t, sae.b_enc, 4,
                                         batch_mode=True), D_SAE)
    smallest = acts_train[acts_train > 0].min()
    assert float(sae.threshold.detach()) == pytest.approx(float(smallest))
    assert float(out.l0) == pytest.approx(4.0)
    sae.eval()
    pre = (x - sae.b_dec) @ sae.W_enc + sae.b_enc
    torch.testing.assert_close(sae.encode(x), F.relu(pre) * (pre > sae.threshold))
