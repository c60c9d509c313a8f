"""Fixtures for the end-to-end tests: a dataset, the tiny GPT-2 and a tokenization, made
through the same services the app uses."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from tests.conftest import SAMPLE_TEXT


@dataclass
class Assets:
    dataset_id: str
    model_id: str
    tokenization_id: str
    n_tokens: int


def prepare_assets(studio, model_dir, tmp_path, *, wait) -> Assets:
    """Import a local text file and the tiny GPT-2, tokenize with the model's tokenizer.

    ``wait(job_id)`` blocks until a job ends (a queue wait, or a Qt-friendly poll)."""
    corpus = tmp_path / "corpus.txt"
    # blank-line separated documents: many small documents, about 5,000 tokens in all
    paragraphs = [p for p in SAMPLE_TEXT.split("\n") if p.strip()]
    corpus.write_text("\n\n".join(paragraphs * 6), encoding="utf-8")
    ds, job = studio.datasets.add_local(str(corpus), name="e2e corpus")
    assert wait(job.id).status == "completed"
    model, job = studio.models.add_local(str(model_dir), name="tiny-gpt2")
    assert wait(job.id).status == "completed"
    tok, job = studio.datasets.tokenize(ds.id, model.id, {"seq_len": 64})
    assert job is not None and wait(job.id).status == "completed"
    tok = studio.datasets.get_tokenization(tok.id)
    assert tok.status == "ready" and tok.n_tokens > 2000
    return Assets(ds.id, model.id, tok.id, int(tok.n_tokens))


class JobStartGate:
    """Holds the first job of ``kind`` at its first progress report (the extraction's
    "Loading the model...", before any batch) until :meth:`release`: a test that cancels a
    running job then cannot lose the race to a job that finishes first (a pooled tiny model
    extracts 2,000 tokens in well under a second). The job thread waits inside the queue's
    own event fan-out, so nothing of the job is replaced."""

    def __init__(self, studio, kind: str):
        import threading

        self.studio, self.kind = studio, kind
        self.held = threading.Event()  # the job is waiting at the gate
        self._open = threading.Event()
        self._job_id = ""
        studio.add_job_listener(self._on_event)

    def _on_event(self, job_id: str, kind: str, payload: dict) -> None:
        if kind != "progress" or self._open.is_set() or self._job_id not in ("", job_id):
            return
        rec = self.studio.jobs.find(job_id)
        if rec is None or rec.kind != self.kind:
            return
        self._job_id = job_id
        self.held.set()
        self._open.wait(60)  # never hangs a broken test for longer

    def release(self) -> None:
        self._open.set()
        self.studio.jobs.remove_listener(self._on_event)

    def __enter__(self) -> "JobStartGate":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


@pytest.fixture
def assets(studio, tiny_gpt2_dir, tmp_path) -> Assets:
    return prepare_assets(studio, tiny_gpt2_dir, tmp_path,
                          wait=lambda job_id: studio.jobs.wait(job_id, 120))


def topk_reconstruct(folder, x: np.ndarray, *, with_margin: bool = False):
    """A TopK SAE in SAELens files, run in numpy (independent of our torch modules).

    ``with_margin`` also returns, per row, the gap between the k-th and (k+1)-th largest
    pre-activation: where it is ~0 two implementations may pick different latents."""
    import json

    from safetensors.numpy import load_file

    cfg = json.loads((folder / "cfg.json").read_text())
    w = load_file(str(folder / "sae_weights.safetensors"))
    assert cfg["architecture"] == "topk" and cfg["normalize_activations"] == "none"
    x_in = x - w["b_dec"] if cfg.get("apply_b_dec_to_input", True) else x
    pre = x_in @ w["W_enc"] + w["b_enc"]
    k = int(cfg["k"])
    idx = np.argpartition(-pre, k - 1, axis=1)[:, :k]
    z = np.zeros_like(pre)
    rows = np.arange(len(x))[:, None]
    z[rows, idx] = np.maximum(pre[rows, idx], 0)
    recon = z @ w["W_dec"] + w["b_dec"]
    if not with_margin:
        return recon
    top = -np.sort(-pre, axis=1)
    return recon, top[:, k - 1] - top[:, k]


def assert_same_reconstruction(folder, sae, x: np.ndarray) -> np.ndarray:
    """Our torch loader's SAE and the numpy reference agree (rows with a tie at the k-th
    latent aside); returns the numpy reconstruction."""
    import torch

    ours, margin = topk_reconstruct(folder, x, with_margin=True)
    with torch.no_grad():
        theirs = sae.decode(sae.encode(torch.from_numpy(np.array(x)))).numpy()
    clear = margin > 1e-4
    assert clear.mean() > 0.95
    np.testing.assert_allclose(ours[clear], theirs[clear], rtol=1e-4, atol=1e-4)
    return ours


def explained_variance(x: np.ndarray, recon: np.ndarray) -> float:
    """1 - residual variance / total variance over all tokens (SAELens's definition)."""
    x = x.astype(np.float64)
    resid = ((x - recon) ** 2).sum(axis=1)
    total = ((x - x.mean(axis=0)) ** 2).sum(axis=1)
    return float(1 - resid.mean() / total.mean())
