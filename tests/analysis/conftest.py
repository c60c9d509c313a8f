"""Fixtures for feature analysis: a tiny model, a tokenization, random SAEs, analyses.

``make_analysis(...)`` runs the real job end to end on a tiny GPT-2 (3 layers, d 64) and a
tokenized sample text; ``studio_analysis`` does the same through the app (model registered,
SAE imported, ``studio.features.start_analysis``) and is what UI tests can reuse:
``studio, sae_id, fa_id = studio_analysis``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.models.conftest import write_tokenization


@pytest.fixture(autouse=True)
def _one_torch_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def random_sae(d_in: int = 64, d_sae: int = 96, *, architecture: str = "topk", k: int = 6,
               seed: int = 0, d_out: int | None = None):
    """An SAE with random weights whose features fire at a spread of densities."""
    import torch

    from mistudio.sae.architectures import SAE_CLASSES

    cls = SAE_CLASSES[architecture]
    sae = cls(d_in, d_sae, k=k, seed=seed, d_out=d_out, transcoder=d_out is not None)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        # tiny-gpt2's residual stream has norm ~0.3: pre-activations of std ~1, and biases
        # from -2.5 to 0.3 spread the densities (the lowest features almost never fire)
        sae.W_enc_t.copy_(30 * torch.randn(d_sae, d_in, generator=g) / d_in ** 0.5)
        sae.b_enc.copy_(torch.linspace(-2.5, 0.3, d_sae))
        sae.b_dec.copy_(0.01 * torch.randn(sae.d_out, generator=g))
        if hasattr(sae, "threshold") and isinstance(sae.threshold, torch.nn.Parameter):
            sae.threshold.fill_(0.3)
    return sae.eval()


def save_sae(folder: Path, sae, hook_name: str = "blocks.1.hook_resid_post",
             model_name: str = "tiny-gpt2") -> Path:
    from mistudio.sae.formats import save_saelens

    return save_saelens(folder, sae, model_name=model_name, hook_name=hook_name)


@pytest.fixture(scope="session")
def analysis_tokens(tmp_path_factory, tiny_tokenizer_dir) -> Path:
    """Packed, BOS first, 32 tokens per row: ~40 rows of the sample text."""
    return write_tokenization(tmp_path_factory.mktemp("fa_tok"), tiny_tokenizer_dir,
                              seq_len=32)


def make_analysis(folder: Path, sae_folder: Path, model_dir: Path, tok_dir: Path,
                  hook_name: str = "blocks.1.hook_resid_post", ctx=None, **options) -> Path:
    """Run the ``features.analyze`` job function directly; returns the analysis folder."""
    from mistudio.analysis.job import run
    from mistudio.jobs.context import JobContext

    params = {"analysis_id": "fa_test", "folder": str(folder), "sae_folder": str(sae_folder),
              "model_folder": str(model_dir), "tokenization": str(tok_dir),
              "hook_name": hook_name, "device": "cpu", "model_dtype": "float32",
              "max_tokens": 0, "n_random": 20, **options}
    run(params, ctx or JobContext.standalone(folder.parent / "job"))
    return folder


@pytest.fixture(scope="session")
def gpt2_dir(tmp_path_factory, tiny_gpt2_dir) -> Path:
    """tiny-gpt2 with its norms' gains and biases perturbed (a fresh model has gain 1, which
    would make the two logit-lens conventions identical)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_gpt2_dir)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".ln_" in name or name.startswith("transformer.ln_f"):
                p.add_(0.3 * torch.randn(p.shape, generator=g))
    out = tmp_path_factory.mktemp("gpt2_norms")
    model.save_pretrained(out, safe_serialization=True)
    AutoTokenizer.from_pretrained(tiny_gpt2_dir).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def small_analysis(tmp_path_factory, gpt2_dir, analysis_tokens):
    """(results folder, sae, params) of one analysis with a small block size (the blocked
    correlation path runs) and small example counts."""
    root = tmp_path_factory.mktemp("fa_small")
    sae = random_sae()
    sae_dir = save_sae(root / "sae", sae)
    opts = dict(block_features=40, chunk_rows=300, n_top=12, n_intervals=5, n_quantiles=4,
                per_interval=3, context_before=3, context_after=2, seed=7, batch_size=4)
    folder = make_analysis(root / "fa", sae_dir, gpt2_dir, analysis_tokens, **opts)
    return folder, sae, opts


@pytest.fixture
def studio_analysis(studio, tiny_gpt2_dir, analysis_tokens, tmp_path):
    """A Studio with tiny-gpt2 registered, a random TopK SAE imported and one completed
    analysis of it: ``(studio, sae_id, fa_id)``."""
    from mistudio.sae.formats import save_saelens

    model, job = studio.models.add_local(str(tiny_gpt2_dir), name="tiny-gpt2")
    studio.jobs.wait(job.id, timeout=120)
    save_saelens(tmp_path / "sae", random_sae(), model_name="tiny-gpt2",
                 hook_name="blocks.1.hook_resid_post")
    sae = studio.trainings.import_sae(str(tmp_path / "sae"), name="random topk")
    job = studio.features.start_analysis(sae.id, tokenization=str(analysis_tokens),
                                         max_tokens=0, device="cpu", n_random=20,
                                         context_before=4, context_after=2)
    done = studio.jobs.wait(job.id, timeout=120)
    assert done.status == "completed", done.error
    return studio, sae.id, job.target


def dense_codes(sae, model_dir: Path, tok_dir: Path, hook_name: str, excluded: list[int]):
    """Independent reference: every analysed token's dense SAE activations, via a plain
    transformers forward with output_hidden_states (resid_post of layer L is hidden state
    L + 1). Returns (acts [N, d_sae] float64, keys [N] = seq * seq_len + pos, tokens)."""
    import torch
    from transformers import AutoModelForCausalLM

    layer = int(hook_name.split(".")[1])
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    tokens = np.load(tok_dir / "tokens.npy")
    lengths = np.load(tok_dir / "lengths.npy")
    with torch.no_grad():
        hs = model(torch.from_numpy(tokens.astype(np.int64)),
                   output_hidden_states=True).hidden_states[layer + 1]
        acts = sae.encode(hs.reshape(-1, hs.shape[-1])).double().numpy()
    T = tokens.shape[1]
    mask = np.arange(T)[None, :] < lengths[:, None]
    for t in excluded:
        mask &= tokens != t
    keys = np.flatnonzero(mask.reshape(-1))
    return acts[keys], keys, tokens
