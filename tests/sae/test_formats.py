"""Formats: SAELens save/load round trip with the normalisation folded in; sparsify and
Gemma Scope layouts; SAELens itself loading our files (when a Python with sae-lens exists)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from mistudio.errors import UserError
from mistudio.sae.architectures import BatchTopKSAE, JumpReLUSAE, ReluSAE, TopKSAE
from mistudio.sae.formats import detect_format, load_sae, save_saelens
from mistudio.sae.matryoshka import MatryoshkaBatchTopKSAE

SAELENS_PYTHON = os.environ.get("MISTUDIO_SAELENS_PYTHON", "/work/benchvenv/bin/python")


def _random(sae, seed=0):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in sae.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
        if hasattr(sae, "threshold"):
            sae.threshold.copy_(torch.rand(sae.threshold.shape, generator=gen) * 0.2)
    return sae


CASES = [
    ("standard", lambda: ReluSAE(8, 20)),
    ("topk", lambda: TopKSAE(8, 20, k=3)),
    ("jumprelu", lambda: JumpReLUSAE(8, 20)),
    ("jumprelu", lambda: BatchTopKSAE(8, 20, k=3)),
    ("transcoder", lambda: ReluSAE(8, 20, d_out=6)),
    ("skip_transcoder", lambda: ReluSAE(8, 20, d_out=6, skip=True)),
    ("jumprelu_skip_transcoder", lambda: JumpReLUSAE(8, 20, d_out=6, skip=True)),
    ("jumprelu", lambda: MatryoshkaBatchTopKSAE(8, 20, k=3, widths=[4, 10])),
]


@pytest.mark.parametrize("arch,make", CASES)
def test_save_load_round_trip_folds_the_normalisation(arch, make, tmp_path):
    sae = _random(make()).eval()
    s_in, s_out = 2.5, 0.8 if sae.transcoder else 2.5
    save_saelens(tmp_path / "sae", sae, scale_in=s_in, scale_out=s_out, hook_name="blocks.1.x",
                 model_name="m")
    cfg = json.loads((tmp_path / "sae" / "cfg.json").read_text())
    assert cfg["architecture"] == arch and cfg["normalize_activations"] == "none"
    assert cfg["metadata"]["hook_name"] == "blocks.1.x"
    loaded, info = load_sae(tmp_path / "sae")
    assert type(loaded) is type(sae) and info["format"] == "saelens"
    x = torch.randn(16, 8, generator=torch.Generator().manual_seed(1)) * 3
    with torch.no_grad():
        # trained on scaled units: raw output = SAE(s_in x) / s_out; latents unchanged
        torch.testing.assert_close(loaded(x), sae(x * s_in) / s_out, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(loaded.encode(x), sae.encode(x * s_in), rtol=1e-4, atol=1e-5)


def test_sparsify_layout(tmp_path):
    from safetensors.torch import save_file

    gen = torch.Generator().manual_seed(0)
    w, b = torch.randn(20, 8, generator=gen), torch.randn(20, generator=gen)
    w_dec, b_dec = torch.randn(20, 8, generator=gen), torch.randn(8, generator=gen)
    folder = tmp_path / "layers.3"
    folder.mkdir()
    save_file({"encoder.weight": w, "encoder.bias": b, "W_dec": w_dec, "b_dec": b_dec},
              str(folder / "sae.safetensors"))
    (folder / "cfg.json").write_text(json.dumps({"k": 3, "num_latents": 20, "d_in": 8}))
    assert detect_format(folder) == "sparsify"
    sae, info = load_sae(folder)
    x = torch.randn(5, 8, generator=gen)
    # sparsify's forward, written out here: top-k of relu(encoder(x - b_dec))
    pre = torch.relu((x - b_dec) @ w.t() + b)
    vals, idx = pre.topk(3, dim=1)
    want = torch.zeros_like(pre).scatter(1, idx, vals) @ w_dec + b_dec
    with torch.no_grad():
        torch.testing.assert_close(sae(x), want, rtol=1e-5, atol=1e-5)
    assert info["hook_name"] == "layers.3"


def test_gemma_scope_layout(tmp_path):
    rng = np.random.default_rng(0)
    p = {"W_enc": rng.normal(size=(8, 20)), "W_dec": rng.normal(size=(20, 8)),
         "b_enc": rng.normal(size=20), "b_dec": rng.normal(size=8),
         "threshold": rng.uniform(0, 0.5, size=20)}
    np.savez(tmp_path / "params.npz", **p)
    sae, info = load_sae(tmp_path)
    assert info["format"] == "gemma_scope" and isinstance(sae, JumpReLUSAE)
    x = rng.normal(size=(5, 8))
    pre = x @ p["W_enc"] + p["b_enc"]  # Gemma Scope does not subtract b_dec from the input
    want = (pre * (pre > p["threshold"])) @ p["W_dec"] + p["b_dec"]
    with torch.no_grad():
        got = sae(torch.from_numpy(x).float()).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_unknown_folder_and_unsupported_architecture(tmp_path):
    with pytest.raises(UserError, match="No SAE found"):
        load_sae(tmp_path)
    save_saelens(tmp_path / "s", ReluSAE(4, 8))
    cfg = json.loads((tmp_path / "s" / "cfg.json").read_text())
    cfg["architecture"] = "gated"
    (tmp_path / "s" / "cfg.json").write_text(json.dumps(cfg))
    with pytest.raises(UserError, match="gated.*not supported"):
        load_sae(tmp_path / "s")


def _saelens_python() -> str | None:
    if not Path(SAELENS_PYTHON).exists():
        return None
    ok = subprocess.run([SAELENS_PYTHON, "-c", "import sae_lens"], capture_output=True)
    return SAELENS_PYTHON if ok.returncode == 0 else None


def test_saelens_itself_loads_our_files(tmp_path):
    """One subprocess for all layouts: importing sae_lens takes tens of seconds."""
    python = _saelens_python()
    if python is None:
        pytest.skip("no Python with sae-lens (set MISTUDIO_SAELENS_PYTHON)")
    cases = [CASES[i] for i in (0, 1, 2, 3, 5, 7)]
    x = torch.randn(6, 8, generator=torch.Generator().manual_seed(2))
    np.save(tmp_path / "x.npy", x.numpy())
    saes = []
    for i, (_arch, make) in enumerate(cases):
        sae = _random(make(), seed=i).eval()
        save_saelens(tmp_path / f"sae{i}", sae, scale_in=1.7)
        saes.append(sae)
    script = (
        "import sys, numpy as np, torch\n"
        "from sae_lens import SAE\n"
        "x = torch.from_numpy(np.load(sys.argv[1]))\n"
        "for i, folder in enumerate(sys.argv[2:]):\n"
        "    sae = SAE.load_from_disk(folder)\n"
        "    with torch.no_grad():\n"
        "        np.save(folder + '/y.npy', sae(x).numpy())\n"
        "    print(type(sae).__name__)\n")
    run = subprocess.run([python, "-c", script, str(tmp_path / "x.npy")]
                         + [str(tmp_path / f"sae{i}") for i in range(len(cases))],
                         capture_output=True, text=True, timeout=110)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split() == ["StandardSAE", "TopKSAE", "JumpReLUSAE", "JumpReLUSAE",
                                  "SkipTranscoder", "JumpReLUSAE"]
    for i, sae in enumerate(saes):
        with torch.no_grad():
            want = sae(x * 1.7) / 1.7
        np.testing.assert_allclose(np.load(tmp_path / f"sae{i}" / "y.npy"), want.numpy(),
                                   rtol=1e-4, atol=1e-4)
