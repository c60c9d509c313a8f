"""Metrics against hand computation; schedules."""

from __future__ import annotations

import math

import pytest
import torch

from mistudio.sae.architectures import StepOutput
from mistudio.sae.metrics import MemberTracker, lr_factor, sparsity_warmup


def _out(recon, loss=1.0, l0=2.0, l1=3.0):
    z = torch.zeros(())
    return StepOutput(loss=torch.tensor(loss), recon=recon, mse=torch.tensor(loss),
                      sparsity_loss=z, aux_loss=z, l0=torch.tensor(l0), l1=torch.tensor(l1),
                      fired=torch.zeros(4))


def test_tracker_report_matches_hand_computed_values():
    y = torch.tensor([[1.0, 0.0], [0.0, 2.0], [2.0, 2.0]])
    recon = torch.tensor([[1.0, 1.0], [0.0, 1.0], [2.0, 2.0]])
    t = MemberTracker(4, "cpu", dead_window_tokens=5)
    fired = torch.tensor([3.0, 1.0, 0.0, 0.0])
    t.update(_out(recon), y, fired, 3)
    rep = t.report()
    # by hand: errors per token 1, 1, 0; batch mean (1, 4/3); deviations:
    # 16/9 + (1 + 4/9) + (1 + 4/9) = 42/9 summed over the 3 tokens
    assert rep["explained_variance"] == pytest.approx(1 - 2 / (42 / 9))
    cos = [1 / math.sqrt(2), 1.0, 1.0]
    assert rep["cosine_sim"] == pytest.approx(sum(cos) / 3)
    assert rep["l2_ratio"] == pytest.approx((math.sqrt(2) + 0.5 + 1.0) / 3)
    assert rep["l0"] == pytest.approx(2.0) and rep["l1"] == pytest.approx(3.0)
    # latent 0 fired on 3/3 tokens, latent 1 on 1/3 (both > 10%): dense fraction 2/4
    assert rep["dense_fraction"] == pytest.approx(0.5)
    # 3 tokens seen, fewer than the 5-token window: the window is all 3, in which latents
    # 2 and 3 never fired
    assert rep["dead_fraction"] == pytest.approx(0.5)
    t.update(_out(recon), y, torch.tensor([1.0, 0.0, 0.0, 0.0]), 3)
    rep = t.report()
    # latents 2, 3 silent for 6 >= 5 tokens; latent 1 only for the last 3
    assert rep["dead_fraction"] == pytest.approx(0.5)
    assert t.dead_mask().tolist() == [False, False, True, True]  # AuxK: the full window
    assert not t.nonfinite()
    t.update(_out(recon, loss=float("nan")), y, fired, 3)
    assert t.nonfinite()


def test_explained_variance_equals_saelens_formula():
    from mistudio.sae.metrics import explained_variance

    gen = torch.Generator().manual_seed(0)
    y = torch.randn(50, 8, generator=gen)
    r = y + 0.3 * torch.randn(50, 8, generator=gen)
    per_tok = ((r - y) ** 2).sum(-1)
    total = ((y - y.mean(0)) ** 2).sum(-1)
    assert explained_variance(y, r) == pytest.approx(float(1 - per_tok.mean() / total.mean()))


def test_density_histogram_counts_every_latent():
    t = MemberTracker(3, "cpu", 10)
    y = torch.ones(10, 2)
    t.update(_out(y), y, torch.tensor([10.0, 1.0, 0.0]), 10)
    d = t.density()
    assert sum(d["histogram"]["counts"]) == 3 and d["dead_latents"] == 1
    assert d["log10_frequency"][0] == pytest.approx(0.0, abs=1e-6)
    assert d["log10_frequency"][1] == pytest.approx(-1.0, abs=1e-6)


def test_lr_schedules():
    kw = dict(warmup_steps=10, decay_fraction=0.2, min_fraction=0.0)
    assert lr_factor(0, 100, schedule="constant", **kw) == pytest.approx(0.1)
    assert lr_factor(9, 100, schedule="constant", **kw) == pytest.approx(1.0)
    assert lr_factor(50, 100, schedule="constant", **kw) == 1.0
    assert lr_factor(79, 100, schedule="linear", **kw) == 1.0
    assert lr_factor(90, 100, schedule="linear", **kw) == pytest.approx(0.5)
    assert lr_factor(10, 100, schedule="cosine", **kw) == pytest.approx(1.0)
    assert lr_factor(55, 100, schedule="cosine", **kw) == pytest.approx(0.5)
    assert sparsity_warmup(0, 100, 0.1) == pytest.approx(0.1)
    assert sparsity_warmup(50, 100, 0.1) == 1.0
    assert sparsity_warmup(0, 100, 0.0) == 1.0


def test_one_dead_latent_definition_on_card_result_and_cli(small_config, activation_set,
                                                           tmp_path):
    """A run shorter than the dead window: the latents that never fired are dead in the
    reported metric (the card), in result.json and in the SAE's metrics alike."""
    from mistudio.sae.data import open_source
    from mistudio.sae.trainer import Trainer

    cfg = small_config(d_sae=512, total_tokens=256 * 20, dead_window_tokens=10**6,
                       metrics_every_steps=20)
    trainer = Trainer(cfg, open_source(str(activation_set)), tmp_path)
    result = trainer.run()
    (sae,) = result["saes"]
    never = int((trainer.members[0].tracker.density_fired == 0).sum())  # counted by hand
    assert never > 0
    assert sae["dead_latents"] == never and sae["dead_window_tokens"] == 256 * 20
    assert sae["metrics"]["dead_fraction"] == pytest.approx(never / 512)  # the card's number
    assert sae["dead_fraction"] == pytest.approx(never / 512)
