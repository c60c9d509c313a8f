"""Fixtures for steering: the tiny models loaded the users' way, random SAEs of each
architecture, and a studio with a model and an SAE registered."""

from __future__ import annotations

import pytest

HOOK = "blocks.1.hook_resid_post"


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="session")
def gpt2(tiny_gpt2_dir):
    from mistudio.models.loading import load_model_uncached

    return load_model_uncached(tiny_gpt2_dir)


@pytest.fixture(scope="session")
def llama(tiny_llama_dir):
    from mistudio.models.loading import load_model_uncached

    return load_model_uncached(tiny_llama_dir)


def make_sae(arch: str, d: int = 64, d_sae: int = 128, seed: int = 1):
    import torch

    from mistudio.sae.architectures import BatchTopKSAE, JumpReLUSAE, ReluSAE, TopKSAE

    cls = {"topk": TopKSAE, "relu": ReluSAE, "jumprelu": JumpReLUSAE,
           "batchtopk": BatchTopKSAE}[arch]
    kw = {"k": 8} if arch in ("topk", "batchtopk") else {}
    sae = cls(d, d_sae, seed=seed, **kw)
    with torch.no_grad():
        sae.W_enc_t.mul_(3.0)
        sae.b_dec.normal_(0, 0.1)
        if arch in ("jumprelu", "batchtopk"):
            sae.threshold.fill_(0.2)
    return sae.eval().requires_grad_(False)


@pytest.fixture
def steer_studio(studio, tiny_gpt2_dir, tmp_path):
    """A studio with the tiny GPT-2 registered and a TopK SAE for its layer 1 imported."""
    from mistudio.sae.formats import save_saelens

    m, job = studio.models.add_local(str(tiny_gpt2_dir), name="tiny-gpt2")
    rec = studio.jobs.wait(job.id, 60)
    assert rec.status == "completed", rec.error
    save_saelens(tmp_path / "sae", make_sae("topk"), model_name="tiny-gpt2", hook_name=HOOK)
    sae = studio.trainings.import_sae(str(tmp_path / "sae"), name="tiny-topk")
    return studio, studio.models.get("tiny-gpt2"), sae
