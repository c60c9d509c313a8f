"""The norm-scaling pre-pass, end to end: a training with ``expected_average_only_in`` sees
``s * x``; the SAE it saves has ``s`` folded into its weights (as SAELens's
``fold_activation_norm_scaling_factor`` does when saving for inference), so on raw, unscaled
activations it gives what the trained SAE gave on scaled ones. Checked against a dense
brute-force computation from the in-memory weights and a hand-computed ``s``."""

from __future__ import annotations

import json

import pytest
import torch

from mistudio.sae.data import TensorSource
from mistudio.sae.formats import load_sae
from mistudio.sae.trainer import Trainer

ROWS = 8192  # two pre-pass batches of 4,096: the estimate sees every row


def _scale(t: torch.Tensor) -> float:
    """Anthropic's / SAELens's factor by hand: sqrt(d) / mean ||row||, over all rows."""
    return float(t.shape[1] ** 0.5 / t.double().norm(dim=1).mean())


def _brute_force(sae, x, s_in, s_out):
    """The trained SAE (scaled units) on ``s_in * x``, written out densely, back in raw
    units: latents, and the reconstruction divided by ``s_out``."""
    W_enc, b_enc = sae.W_enc_t.detach().t().double(), sae.b_enc.detach().double()
    W_dec, b_dec = sae.W_dec.detach().double(), sae.b_dec.detach().double()
    xs = x.double() * s_in
    pre = ((xs - b_dec) if sae.apply_b_dec_to_input else xs) @ W_enc + b_enc
    if sae.architecture == "topk":
        top = pre.topk(sae.k, dim=-1)
        acts = torch.zeros_like(pre).scatter(-1, top.indices, torch.relu(top.values))
    else:  # batchtopk at inference: the global threshold
        acts = torch.relu(pre) * (pre > float(sae.threshold))
    recon = acts @ W_dec + b_dec
    if sae.W_skip is not None:
        recon = recon + xs @ sae.W_skip.detach().double().t()
    return acts, recon / s_out


@pytest.mark.parametrize("case", ["topk", "batchtopk", "skip_transcoder"])
def test_saved_sae_on_unscaled_activations_equals_the_trained_one_on_scaled(
        case, synthetic, small_config, tmp_path):
    x, _ = synthetic
    x = x[:ROWS] * 7.0  # norms far from sqrt(d): s is far from 1
    y = None
    kw = {"architecture": case, "k": 4}
    if case == "skip_transcoder":
        mix = torch.randn(32, 24, generator=torch.Generator().manual_seed(2))
        y = (x @ mix) * 0.05  # another width and another scale: s_out != s_in
        kw = {"architecture": "topk", "k": 6, "kind": "skip_transcoder",
              "target_activation_path": "mem"}
    cfg = small_config(total_tokens=256 * 40, lr=1e-2, normalize_activations=
                       "expected_average_only_in", normalization_tokens=ROWS, **kw)
    tr = Trainer(cfg, TensorSource(x, y, meta={"model_name": "m", "hook_point": "h"}),
                 tmp_path)
    result = tr.run()
    s_in = _scale(x)
    s_out = s_in if y is None else _scale(y)
    assert abs(result["scale_in"] / s_in - 1) < 1e-6 and abs(result["scale_out"] / s_out - 1) < 1e-6
    assert s_in < 0.5 and (y is None or abs(s_out / s_in - 1) > 0.5)
    saved = tmp_path / "saes" / "sae"
    cfg_json = json.loads((saved / "cfg.json").read_text())
    assert cfg_json["normalize_activations"] == "none"  # nothing left for a loader to do
    loaded, _ = load_sae(saved)
    trained = tr.members[0].sae.eval()
    probe = x[:512]
    want_acts, want_out = _brute_force(trained, probe, s_in, s_out)
    with torch.no_grad():
        got_acts = loaded.encode(probe).double()
        got_out = loaded.decode(loaded.encode(probe), probe).double()
    torch.testing.assert_close(got_acts, want_acts, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(got_out, want_out, rtol=1e-4, atol=1e-4)
    # and it is a useful SAE in raw units: it explains most of the raw target's variance
    target = (probe if y is None else y[:512]).double()
    ev = 1 - (got_out - target).pow(2).sum() / (target - target.mean(0)).pow(2).sum()
    assert ev > 0.5, f"explained variance on raw activations {float(ev):.2f}"
