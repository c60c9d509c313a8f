"""Statistics of the SAE's weights alone: logit lens, decoder neighbours, neuron alignment.

Logit lens: each feature's decoder direction, mapped into the residual stream (through the
MLP's output weights for SAEs on ``mlp.hook_post``; other hook points already write the
residual basis), times the unembedding. Two conventions, both stored:

- ``raw``: ``W_dec @ W_U`` with ``W_U`` the model's output embedding as stored (sae_vis,
  SAEDashboard);
- ``folded``: the final norm's gain folded into ``W_U`` first, ``W_dec @ (diag(g) W_U)``
  (TransformerLens ``fold_ln``; Gemma's norms scale by ``1 + g``).

Decoder neighbours: cosine similarity of decoder rows. Neuron alignment (SAEs on
``mlp.hook_post`` only): the largest decoder entries by magnitude, with their share of the
row's L1 norm. Everything works in feature blocks, so memory stays bounded.
"""

from __future__ import annotations

import numpy as np

from mistudio.analysis.per_feature import HIST_BINS
from mistudio.analysis.kernels import row_stats

N_LOGITS = 10
N_NEURONS = 5


def _linear_weight_in_out(module):
    """(weight as [in, out]) of an nn.Linear or GPT-2's Conv1D."""
    w = module.weight
    if type(module).__name__ == "Conv1D":  # GPT-2: weight is [in, out]
        return w
    return w.t()


def residual_directions(sae_w_dec, model, hook_type: str, layer: int | None, model_type: str):
    """Decoder rows ``[d_sae, d_out]`` as residual-stream directions ``[d_sae, d_model]``."""
    if hook_type != "mlp_post":
        return sae_w_dec
    from mistudio.models import hooks

    fam = hooks.family_of(model_type)
    proj = model.get_submodule(f"{fam.blocks}.{layer}.{fam.mlp_post}")
    w = _linear_weight_in_out(proj)  # [d_mlp, d_model]
    return sae_w_dec @ w.to(sae_w_dec.dtype)


def unembedding(model, convention: str, model_type: str):
    """``W_U [d_model, vocab]`` in one of the two conventions."""
    from mistudio.models import hooks

    w_u = model.get_output_embeddings().weight.detach().float().t()
    if convention == "raw":
        return w_u
    fam = hooks.family_of(model_type)
    gain = model.get_submodule(fam.final_norm).weight.detach().float()
    if model_type.startswith("gemma"):
        gain = 1.0 + gain
    return gain[:, None] * w_u


def logit_lens(directions, w_u, block: int = 256, check_cancelled=None) -> dict[str, np.ndarray]:
    """Top/bottom ``N_LOGITS`` tokens and a 50-bin histogram over the vocabulary per feature."""
    import torch

    d_sae, vocab = directions.shape[0], w_u.shape[1]
    k = min(N_LOGITS, vocab)
    out = {"top_ids": np.zeros((d_sae, k), np.int32), "top_values": np.zeros((d_sae, k), np.float32),
           "bottom_ids": np.zeros((d_sae, k), np.int32),
           "bottom_values": np.zeros((d_sae, k), np.float32),
           "hist": np.zeros((d_sae, HIST_BINS), np.int32),
           "range": np.zeros((d_sae, 2), np.float32)}
    with torch.no_grad():
        for b0 in range(0, d_sae, block):
            if check_cancelled:
                check_cancelled()
            b1 = min(d_sae, b0 + block)
            logits = directions[b0:b1].float() @ w_u
            if logits.device.type == "cpu":
                # one fused pass per row (numba): the torch ops below cost several GEMMs
                stats = row_stats(logits.numpy(), k, HIST_BINS)
            else:
                stats = _row_stats_torch(logits, k)
            for name in out:
                out[name][b0:b1] = stats[name]
    return out


def _row_stats_torch(logits, k: int) -> dict[str, np.ndarray]:
    """:func:`row_stats` with torch ops (accelerators, where they are cheap)."""
    import torch

    tv, ti = logits.topk(k, dim=1)
    bv, bi = logits.topk(k, dim=1, largest=False)
    lo, hi = torch.aminmax(logits, dim=1)
    width = ((hi - lo) / HIST_BINS).clamp_min(1e-12)
    # bins in place (the logits are not needed any more): one pass, int32 indices
    bins = logits.sub_(lo[:, None]).div_(width[:, None]).floor_().clamp_(0, HIST_BINS - 1)
    bins = bins.to(torch.int32)
    n = logits.shape[0]
    bins += (torch.arange(n, device=bins.device, dtype=torch.int32) * HIST_BINS)[:, None]
    hist = torch.bincount(bins.reshape(-1), minlength=n * HIST_BINS)
    return {"top_ids": ti.cpu().numpy(), "top_values": tv.cpu().numpy(),
            "bottom_ids": bi.cpu().numpy(), "bottom_values": bv.cpu().numpy(),
            "hist": hist.reshape(n, HIST_BINS).cpu().numpy(),
            "range": torch.stack([lo, hi], dim=1).cpu().numpy()}


def decoder_neighbours(w_dec, k: int, block: int = 1024, check_cancelled=None
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` cosine similarities between decoder rows (self excluded)."""
    import torch

    d_sae = w_dec.shape[0]
    unit = w_dec.float() / w_dec.float().norm(dim=1, keepdim=True).clamp_min(1e-12)
    kk = min(k, d_sae - 1)
    ids = np.full((d_sae, k), -1, np.int32)
    vals = np.full((d_sae, k), np.nan, np.float32)
    with torch.no_grad():
        for b0 in range(0, d_sae, block):
            if check_cancelled:
                check_cancelled()
            b1 = min(d_sae, b0 + block)
            cos = unit[b0:b1] @ unit.t()
            cos[torch.arange(b1 - b0), torch.arange(b0, b1)] = -np.inf
            v, i = cos.topk(kk, dim=1)
            ids[b0:b1, :kk] = i.cpu().numpy()
            vals[b0:b1, :kk] = v.cpu().numpy()
    return ids, vals


def neuron_alignment(w_dec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(neuron ids, decoder entries, % of the row's L1 norm), largest |entry| first."""
    w = w_dec.float()
    k = min(N_NEURONS, w.shape[1])
    _, idx = w.abs().topk(k, dim=1)
    values = w.gather(1, idx)
    pct = 100.0 * values.abs() / w.abs().sum(dim=1, keepdim=True).clamp_min(1e-12)
    return (idx.cpu().numpy().astype(np.int32), values.cpu().numpy(),
            pct.cpu().numpy().astype(np.float32))
