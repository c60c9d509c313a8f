"""Sparse ReLU training kernels: the same losses and gradients as the dense step, the same
training curves, the density switch, and bit-for-bit resume through the sparse path."""

from __future__ import annotations

import json

import pytest
import torch

from mistudio.errors import JobCancelled
from mistudio.jobs.context import JobContext
from mistudio.sae import checkpoints as ckpt
from mistudio.sae.architectures import JumpReLUSAE, ReluSAE
from mistudio.sae.data import TensorSource
from mistudio.sae.sparse_relu import ActivePattern, relu_encode, sparse_decode
from mistudio.sae.trainer import Trainer

pytestmark = pytest.mark.numerics  # dense BLAS vs sparse kernels: CPU-dependent order

D_IN, D_SAE, B = 24, 96, 40
FIELDS = ("loss", "mse", "sparsity_loss", "aux_loss", "l0", "l1", "recon", "fired")


def assert_same_sums(got, want, msg, n_terms=B * D_SAE):
    """Gradients of the dense step (BLAS matmuls: MKL/oneDNN pick their kernels, hence the
    summation order, by the CPU's instruction set) against the sparse kernels (other
    orders). Float32 sums of ``n_terms`` terms in different orders differ by up to about
    sqrt(n) * eps * the terms' size, and where terms cancel (``b_dec``'s gradient is the
    difference of two batch sums) that is far above the element-wise default rtol: the
    tolerance is derived from the dtype and scaled by the tensor's largest entry."""
    eps = torch.finfo(want.dtype).eps
    atol = 4 * n_terms ** 0.5 * eps * float(want.abs().max())
    torch.testing.assert_close(got, want, rtol=0, atol=atol, msg=msg)


def _x(n=B, d=D_IN, seed=0):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


def _sae(bias_shift=0.0, **kw):
    """A ReLU SAE with random biases; ``bias_shift`` lowers b_enc (sparser activations)."""
    sae = ReluSAE(D_IN, D_SAE, l1_coefficient=1.5, seed=2, **kw)
    gen = torch.Generator().manual_seed(4)
    with torch.no_grad():
        sae.W_enc_t.mul_(10)  # pre-activations of order 1 on unit inputs
        sae.b_enc.copy_(torch.randn(D_SAE, generator=gen) * 0.3 - bias_shift)
        sae.b_dec.copy_(torch.randn(sae.d_out, generator=gen) * 0.2)
        if sae.W_skip is not None:
            sae.W_skip.copy_(torch.randn(sae.W_skip.shape, generator=gen) * 0.1)
    return sae


def _step(sae, mode, x, y, scale=0.7):
    sae.sparse_path = mode
    sae.zero_grad(set_to_none=True)
    out = sae.training_step(x, y, sparsity_scale=scale)
    out.loss.backward()
    return out, {n: p.grad.clone() for n, p in sae.named_parameters()}


def _reference(sae, x, y, scale):
    """The loss written out densely here (Anthropic April 2024 ReLU/L1)."""
    x_in = x - sae.b_dec if sae.apply_b_dec_to_input else x
    acts = torch.relu(x_in @ sae.W_enc_t.t() + sae.b_enc)
    recon = acts @ sae.W_dec + sae.b_dec
    if sae.W_skip is not None:
        recon = recon + x @ sae.W_skip.t()
    mse = (recon - y).pow(2).sum(1).mean()
    l1 = (acts * sae.W_dec.norm(dim=1)).sum(1).mean()
    return mse + sae.l1_coefficient * scale * l1, acts


@pytest.mark.parametrize("variant", ["sae", "skip_transcoder"])
@pytest.mark.parametrize("bias_shift", [0.0, 1.0, 100.0])  # ~half, sparse, nothing active
def test_sparse_step_equals_dense_step_and_reference(variant, bias_shift):
    kw = dict(d_out=16, skip=True) if variant == "skip_transcoder" else {}
    sae = _sae(bias_shift, **kw)
    x, y = _x(), _x(d=sae.d_out, seed=1)
    dense, g_dense = _step(sae, "off", x, y)
    sparse, g_sparse = _step(sae, "on", x, y)
    for f in FIELDS:
        torch.testing.assert_close(getattr(sparse, f), getattr(dense, f), msg=f)
    for name in g_dense:
        assert_same_sums(g_sparse[name], g_dense[name], name)
    # and both equal the loss and gradients of a reference written here
    sae.zero_grad(set_to_none=True)
    ref, acts = _reference(sae, x, y, 0.7)
    ref.backward()
    torch.testing.assert_close(sparse.loss, ref.detach())
    for name, p in sae.named_parameters():
        assert_same_sums(g_sparse[name], p.grad, name)
    assert float(sparse.l0) == pytest.approx(float((acts > 0).sum(1).float().mean()))
    if bias_shift == 100.0:
        assert float(sparse.l0) == 0.0


@pytest.mark.parametrize("variant", ["sae", "skip_transcoder"])
@pytest.mark.parametrize("bias_shift", [0.0, 1.0, 100.0])
def test_jumprelu_sparse_step_equals_dense_step(variant, bias_shift):
    """Also the straight-through threshold gradient (rectangle kernel) and the L0 term."""
    kw = dict(d_out=16, skip=True) if variant == "skip_transcoder" else {}
    sae = JumpReLUSAE(D_IN, D_SAE, l0_coefficient=0.3, bandwidth=0.4, seed=2, **kw)
    gen = torch.Generator().manual_seed(4)
    with torch.no_grad():
        sae.W_enc_t.mul_(3)
        sae.b_enc.copy_(torch.randn(D_SAE, generator=gen) * 0.3 - bias_shift)
        sae.b_dec.copy_(torch.randn(sae.d_out, generator=gen) * 0.2)
        sae.threshold.copy_(torch.rand(D_SAE, generator=gen) * 0.6)
        if sae.W_skip is not None:
            sae.W_skip.copy_(torch.randn(sae.W_skip.shape, generator=gen) * 0.1)
    x, y = _x(), _x(d=sae.d_out, seed=1)
    dense, g_dense = _step(sae, "off", x, y)
    for mode in ("on", "auto"):  # auto: the dense branch of the CPU kernels when dense
        sparse, g_sparse = _step(sae, mode, x, y)
        for f in FIELDS:
            torch.testing.assert_close(getattr(sparse, f), getattr(dense, f), msg=f)
        for name in g_dense:
            assert_same_sums(g_sparse[name], g_dense[name], name)
    if bias_shift == 0.0:  # entries inside the kernel's band: the threshold has a gradient
        assert float(g_dense["threshold"].abs().sum()) > 0
        assert 0 < float(dense.l0) < D_SAE


def test_auto_mode_switches_on_the_batch_density():
    x = _x()
    for shift, want_sparse in ((0.0, False), (1.5, True)):
        sae = _sae(shift)
        with torch.no_grad():
            density = float((sae.encode(x) > 0).float().mean())
        assert (density <= sae.sparse_max_density) == want_sparse, density
        _, pattern = relu_encode(x, sae.b_dec, sae.W_enc_t, sae.b_enc,
                                 max_density=sae.sparse_max_density)
        assert (pattern is not None) == want_sparse
        # the automatic choice gives the dense step's numbers either way
        auto, g_auto = _step(sae, "auto", x, x)
        dense, g_dense = _step(sae, "off", x, x)
        torch.testing.assert_close(auto.loss, dense.loss)
        for name in g_dense:
            assert_same_sums(g_auto[name], g_dense[name], name)
    sae = _sae(1.5)
    assert sae._sparse_density_limit(x, None) == sae.sparse_max_density
    # autocast (the GPU's bf16 path) keeps the dense step; so does "off"
    assert sae._sparse_density_limit(x, torch.bfloat16) is None
    sae.sparse_path = "off"
    assert sae._sparse_density_limit(x, None) is None


def test_active_pattern_kernels_against_dense_products():
    gen = torch.Generator().manual_seed(7)
    pre = torch.randn(B, D_SAE, generator=gen) - 1.2
    pre[3] = -1.0          # a token with no active latent
    pre[:, 5] = -1.0       # a latent that never fires
    mask = pre > 0
    pat = ActivePattern.from_mask(mask)
    acts = pre.clamp_min(0)
    values = pre[mask]
    assert pat.nnz == int(mask.sum())
    torch.testing.assert_close(pat.to_dense(values), acts)
    torch.testing.assert_close(pat.latent_counts, mask.sum(0))
    w = torch.randn(D_SAE, 8, generator=gen)
    g = torch.randn(B, 8, generator=gen)
    x = torch.randn(B, 8, generator=gen)
    torch.testing.assert_close(pat.per_token(values, w), acts @ w)
    torch.testing.assert_close(pat.per_latent(values, x), acts.t() @ x)
    torch.testing.assert_close(pat.sampled(g, w), (g @ w.t())[mask])


def test_relu_encode_gradient_into_the_input():
    """With an input that needs its gradient (not the trainer's case) the sparse backward
    returns it too, equal to autograd through the dense computation."""
    sae = _sae(1.0)
    x = _x().requires_grad_()
    values, pattern = relu_encode(x, sae.b_dec, sae.W_enc_t, sae.b_enc, max_density=1.0)
    out = sparse_decode(values, sae.W_dec, pattern)
    out.pow(2).sum().backward()
    got = x.grad.clone(), sae.b_dec.grad.clone(), sae.W_enc_t.grad.clone()
    x.grad = None
    sae.zero_grad(set_to_none=True)
    acts = torch.relu((x - sae.b_dec) @ sae.W_enc_t.t() + sae.b_enc)
    (acts @ sae.W_dec).pow(2).sum().backward()
    for a, b in zip(got, (x.grad, sae.b_dec.grad, sae.W_enc_t.grad)):
        torch.testing.assert_close(a, b)


def _train(cfg, x, mode, monkeypatch, out_dir=None, **kw):
    """A run with ``ReluSAE.sparse_path = mode``; ``tr.sparse_steps``: how many training
    steps took the sparse kernels (the real ones, counted on the way)."""
    monkeypatch.setattr(ReluSAE, "sparse_path", mode)
    counted = {"n": 0}
    real = ActivePattern.from_mask.__func__

    def counting(cls, mask):
        counted["n"] += 1
        return real(cls, mask)
    monkeypatch.setattr(ActivePattern, "from_mask", classmethod(counting))
    tr = Trainer(cfg, TensorSource(x), out_dir, **kw)
    tr.run()
    tr.sparse_steps = counted["n"]
    return tr


def test_training_curves_match_the_dense_path(synthetic, small_config, monkeypatch):
    x, _ = synthetic
    cfg = small_config(architecture="relu", l1_coefficient=1.0, total_tokens=256 * 120,
                       lr=1e-2, metrics_every_steps=20)
    dense = _train(cfg, x, "off", monkeypatch)
    auto = _train(cfg, x, "auto", monkeypatch)
    md, ma = dense.members[0].last_metrics, auto.members[0].last_metrics
    # "auto" started dense (about half the latents fire at init) and went sparse
    assert dense.sparse_steps == 0 and 0 < auto.sparse_steps < 120
    assert ma["l0"] / 96 < ReluSAE.sparse_max_density
    assert ma["explained_variance"] == pytest.approx(md["explained_variance"], abs=2e-3)
    assert ma["l0"] == pytest.approx(md["l0"], rel=0.03)
    assert ma["loss"] == pytest.approx(md["loss"], rel=0.02)
    w_d, w_a = dense.members[0].sae.W_dec.detach(), auto.members[0].sae.W_dec.detach()
    cos = torch.nn.functional.cosine_similarity(w_d, w_a, dim=1)
    assert float(cos.median()) > 0.99


class _CancelAt(JobContext):
    def __init__(self, box, step, artifact_dir):
        super().__init__("t", artifact_dir=artifact_dir)
        self.box, self.stop_at = box, step

    def pause_point(self):
        if self.box and self.box[0].step >= self.stop_at:
            self.request_cancel()
        super().pause_point()


def test_resume_through_the_sparse_path_is_bit_for_bit(synthetic, small_config, tmp_path,
                                                        monkeypatch):
    x, _ = synthetic
    # the density switch is decided per batch, so a resumed run takes the same kernels at
    # every step as the uninterrupted one. A higher limit than the CPU's puts the switch
    # early in this short run (L0 falls from ~55 of 96 latents to ~20).
    monkeypatch.setattr(ReluSAE, "sparse_max_density", 0.4)
    cfg = small_config(architecture="relu", l1_coefficient=2.0, total_tokens=256 * 30,
                       lr=1e-2, metrics_every_steps=7)
    ref = _train(cfg, x, "auto", monkeypatch, tmp_path / "ref")
    assert 0 < ref.sparse_steps < 30, ref.sparse_steps  # both kernels, the switch inside
    box = []
    tr = Trainer(cfg, TensorSource(x), tmp_path / "cut",
                 ctx=_CancelAt(box, 17, tmp_path / "cut"))
    box.append(tr)
    with pytest.raises(JobCancelled):
        tr.run()
    last = ckpt.find_checkpoint(tmp_path / "cut")
    assert last.step == 17
    resumed = _train(cfg, x, "auto", monkeypatch, tmp_path / "cut", resume_from=last.path)
    for (name, p), (_, q) in zip(ref.members[0].sae.state_dict().items(),
                                 resumed.members[0].sae.state_dict().items()):
        assert torch.equal(p, q), f"{name} differs after resume"

    def curves(folder):
        rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
        return [{k: v for k, v in r.items() if k not in ("time", "tokens_per_s", "step_time_ms")}
                for r in rows]
    assert curves(tmp_path / "ref") == curves(tmp_path / "cut")


def test_the_sum_tolerance_still_catches_a_token_left_out():
    """The dtype-derived tolerance is ~1e-5 of each gradient's scale: a kernel that dropped
    one token of the batch (a 1/40 change) fails it for every parameter."""
    sae = _sae(0.0)
    x, y = _x(), _x(seed=1)
    _, g_all = _step(sae, "off", x, y)
    _, g_short = _step(sae, "on", x[:-1], y[:-1])
    for name in g_all:
        with pytest.raises(AssertionError):
            assert_same_sums(g_short[name], g_all[name], name)
