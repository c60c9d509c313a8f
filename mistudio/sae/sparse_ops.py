"""Sparse encoder/decoder kernels for TopK-style SAEs (plain PyTorch, CPU and CUDA).

Why: in a TopK SAE only ``k`` of ``d_sae`` latents are active per token, yet a dense
implementation pays for the full ``[B, d_sae]`` matrices three more times after the encoder
GEMM (dense decoder forward, decoder backward, encoder weight gradient). Here:

- the encoder forward is one GEMM + a per-row (or batch-wide) selection;
- the encoder backward touches only the selected entries: the weight gradient is a
  sparse ``[d_sae, B] @ [B, d_in]`` product and the input gradient an ``embedding_bag``;
- the decoder is ``embedding_bag`` over the selected rows of ``W_dec`` (its backward is
  sparse too).

Selections are returned *flat*: ``values [N]``, ``latents [N]`` (latent index of each
entry) and ``offsets [B]`` (where each token's entries start), sorted by token, which is
the layout ``embedding_bag`` takes; TopK has exactly ``k`` entries per token, BatchTopK a
variable number.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _encoder_pre(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                 matmul_dtype: torch.dtype | None) -> torch.Tensor:
    if matmul_dtype is not None and matmul_dtype != x.dtype:
        return torch.addmm(bias.to(matmul_dtype), x.to(matmul_dtype), weight.to(matmul_dtype).t())
    return torch.addmm(bias, x, weight.t())


def batch_topk_select(pre: torch.Tensor, n_select: int, candidates_per_row: int
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat positions (row, latent) of the ``n_select`` largest entries of ``pre`` overall.

    Exact, but cheaper than a top-k over all ``B * d_sae`` entries: each row's top
    ``candidates_per_row`` are taken first, and the global top-n is chosen among those. If a
    row had all its candidates chosen it might have more, so that (rare) case falls back to
    the full selection. Returned sorted by row.
    """
    B, D = pre.shape
    kc = min(D, max(1, candidates_per_row))
    cand_vals, cand_idx = pre.topk(kc, dim=1, sorted=False)
    n_select = min(n_select, B * kc)
    top_vals, top_pos = cand_vals.reshape(-1).topk(n_select, sorted=False)
    if kc < D:
        chosen_per_row = torch.bincount(top_pos // kc, minlength=B)
        if bool((chosen_per_row >= kc).any()):  # some row may hold more: do it exactly
            _, flat = pre.reshape(-1).topk(n_select, sorted=False)
            flat, _ = flat.sort()
            return flat // D, flat % D
    top_pos, _ = top_pos.sort()
    rows = top_pos // kc
    latents = cand_idx.reshape(-1)[top_pos]
    return rows, latents


class SparseEncode(torch.autograd.Function):
    """``relu`` of a sparse selection of ``x @ W^T + b``, with a sparse backward.

    ``forward(x, weight[d_sae, d_in], bias[d_sae], k, batch_mode, matmul_dtype)`` returns
    ``(values[N], latents[N], offsets[B])``: ``batch_mode`` False picks the top ``k`` per
    row, True the top ``k * B`` of the batch.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, k: int, batch_mode: bool, matmul_dtype):
        B = x.shape[0]
        pre = _encoder_pre(x, weight, bias, matmul_dtype)
        if batch_mode:
            rows, latents = batch_topk_select(pre, k * B, 4 * k)
            values = pre[rows, latents].float()
            counts = torch.bincount(rows, minlength=B)
            offsets = torch.zeros(B, dtype=torch.long, device=x.device)
            offsets[1:] = counts.cumsum(0)[:-1]
        else:
            vals, idx = pre.topk(k, dim=1, sorted=False)
            values = vals.float().reshape(-1)
            latents = idx.reshape(-1)
            offsets = torch.arange(0, B * k, k, device=x.device)
            rows = None
        del pre
        values = values.relu_()
        ctx.save_for_backward(x, weight, values, latents, offsets)
        ctx.rows = rows
        ctx.mark_non_differentiable(latents, offsets)
        return values, latents, offsets

    @staticmethod
    def backward(ctx, g_values, _g_latents=None, _g_offsets=None):
        x, weight, values, latents, offsets = ctx.saved_tensors
        B, d_in = x.shape
        d_sae = weight.shape[0]
        g = g_values * (values > 0)
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[1]:
            rows = ctx.rows
            if rows is None:
                k = latents.numel() // B
                rows = torch.arange(B, device=x.device).repeat_interleave(k)
            gmat = torch.sparse_coo_tensor(torch.stack([latents, rows]), g.to(x.dtype),
                                           (d_sae, B), check_invariants=False)
            grad_w = torch.sparse.mm(gmat, x).to(weight.dtype)
        if ctx.needs_input_grad[2]:
            grad_b = torch.zeros(d_sae, dtype=g.dtype, device=g.device).index_add_(0, latents, g)
        if ctx.needs_input_grad[0]:
            grad_x = F.embedding_bag(latents, weight, offsets, mode="sum",
                                     per_sample_weights=g.to(weight.dtype)).to(x.dtype)
        ctx.rows = None
        return grad_x, grad_w, grad_b, None, None, None


def sparse_encode(x, weight, bias, k: int, *, batch_mode: bool = False,
                  matmul_dtype: torch.dtype | None = None):
    return SparseEncode.apply(x, weight, bias, k, batch_mode, matmul_dtype)


def sparse_decode(values: torch.Tensor, latents: torch.Tensor, offsets: torch.Tensor,
                  w_dec: torch.Tensor) -> torch.Tensor:
    """``sum_j values_j * W_dec[latents_j]`` per token: ``[B, d_out]`` (no bias)."""
    return F.embedding_bag(latents, w_dec, offsets, mode="sum",
                           per_sample_weights=values.to(w_dec.dtype))


def to_dense(values: torch.Tensor, latents: torch.Tensor, offsets: torch.Tensor,
             d_sae: int) -> torch.Tensor:
    """The flat selection as a dense ``[B, d_sae]`` activation matrix."""
    B = offsets.shape[0]
    counts = torch.diff(offsets, append=offsets.new_tensor([latents.numel()]))
    rows = torch.repeat_interleave(torch.arange(B, device=values.device), counts)
    out = torch.zeros(B, d_sae, dtype=values.dtype, device=values.device)
    out[rows, latents] = values
    return out
