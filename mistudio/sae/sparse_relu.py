"""Sparse training kernels for ReLU-style SAEs, whose number of active latents varies per token.

A trained ReLU/L1 (or JumpReLU) SAE fires tens to a few hundred of its thousands of latents
per token. A dense training step still pays for five ``[B, d_sae] x d`` matrix products
after the encoder's: the decoder forward (``acts @ W_dec``), its two gradients
(``acts^T @ g`` and ``g @ W_dec^T``) and the encoder's two (``d_pre^T @ x``, ``d_pre @
W_enc``). All of them are zero wherever a latent is inactive: the ReLU (and JumpReLU)
gradient and the L1 gradient vanish there. Here only the encoder forward stays dense; then

- the active entries are listed once per step as an :class:`ActivePattern`: flat entries
  sorted by token (the CSR layout ``embedding_bag`` reads) and the permutation that sorts
  them by latent (the CSR layout of the transpose);
- the decoder forward is an ``embedding_bag`` over the active rows of ``W_dec``;
- the gradient into the active values is a sampled dense-dense product
  (``torch.sparse.sampled_addmm``: ``g @ W_dec^T`` computed only at the active entries);
- the weight gradients ``acts^T @ g`` and ``d_pre^T @ x`` are ``embedding_bag`` forwards
  over the transposed pattern (one bag per latent), and ``b_dec``'s gradient through the
  encoder input is ``-grad_b_enc @ W_enc``;
- the dense ``[B, d_sae]`` pre-activations are freed after the forward.

:func:`relu_encode` measures the density of the current batch right after the encoder
product and takes the sparse route only below ``max_density``; above it (a ReLU SAE at
initialisation fires on about half its latents) it returns dense activations with the
ordinary dense backward. The choice depends only on the weights and the batch, so runs stay
deterministic and resume bit-for-bit.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F

# Fraction of active (token, latent) entries below which the sparse route is faster on CPU.
# Measured with benchmarks/sae_train_bench.py --crossover (see docs/sae-engine.md,
# "Performance"); the sparse kernels' cost grows with the number of active entries while
# the dense products' does not, and they break even well above the densities of a trained
# SAE.
CPU_MAX_DENSITY = 0.15


@dataclass
class ActivePattern:
    """Active entries of a ``[B, d_sae]`` activation matrix.

    ``flat[N]`` (``row * d_sae + latent``), ``latents[N]`` and ``rows[N]`` are sorted by token (row-major), ``offsets[B]`` is where
    each token's entries start (``embedding_bag`` offsets), ``crow[B + 1]`` the CSR row
    pointer; ``perm[N]`` sorts the entries by latent, ``t_rows[N] = rows[perm]`` and
    ``t_offsets[d_sae]`` give the transposed layout; ``latent_counts[d_sae]`` is how many
    tokens each latent fired on.
    """

    n_rows: int
    d_sae: int
    flat: torch.Tensor
    rows: torch.Tensor
    latents: torch.Tensor
    offsets: torch.Tensor
    crow: torch.Tensor
    perm: torch.Tensor
    t_rows: torch.Tensor
    t_offsets: torch.Tensor
    latent_counts: torch.Tensor

    @property
    def nnz(self) -> int:
        return int(self.latents.numel())

    @classmethod
    def from_mask(cls, mask: torch.Tensor) -> ActivePattern:
        B, d_sae = mask.shape
        flat = mask.reshape(-1).nonzero().squeeze(1)
        rows = torch.div(flat, d_sae, rounding_mode="floor")
        latents = flat - rows * d_sae
        crow = _row_pointer(torch.bincount(rows, minlength=B))
        latent_counts = torch.bincount(latents, minlength=d_sae)
        perm = torch.argsort(latents, stable=True)  # stable: deterministic sums
        return cls(B, d_sae, flat, rows, latents, crow[:-1], crow, perm, rows[perm],
                   _row_pointer(latent_counts)[:-1], latent_counts)

    def csr(self, values: torch.Tensor) -> torch.Tensor:
        with warnings.catch_warnings():  # "Sparse CSR tensor support is in beta state"
            warnings.simplefilter("ignore", UserWarning)
            return torch.sparse_csr_tensor(self.crow, self.latents, values,
                                           (self.n_rows, self.d_sae), check_invariants=False)

    def to_dense(self, values: torch.Tensor) -> torch.Tensor:
        out = values.new_zeros(self.n_rows * self.d_sae)
        out[self.flat] = values
        return out.view(self.n_rows, self.d_sae)

    def per_token(self, values: torch.Tensor, dense_rows: torch.Tensor) -> torch.Tensor:
        """``sum_j values_j * dense_rows[latent_j]`` per token: ``[B, d]``."""
        return F.embedding_bag(self.latents, dense_rows, self.offsets, mode="sum",
                               per_sample_weights=values)

    def per_latent(self, values: torch.Tensor, dense_rows: torch.Tensor) -> torch.Tensor:
        """``sum_j values_j * dense_rows[row_j]`` per latent: ``[d_sae, d]`` (``A^T @ M``)."""
        return F.embedding_bag(self.t_rows, dense_rows, self.t_offsets, mode="sum",
                               per_sample_weights=values[self.perm])

    def sampled(self, g: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """``(g @ w^T)`` at the active entries only: ``[N]``."""
        if self.nnz == 0:
            return g.new_zeros(0)
        out = torch.sparse.sampled_addmm(self.csr(g.new_empty(self.nnz)), g, w.t(), beta=0.0)
        return out.values()


def _row_pointer(counts: torch.Tensor) -> torch.Tensor:
    ptr = counts.new_zeros(counts.numel() + 1)
    torch.cumsum(counts, 0, out=ptr[1:])
    return ptr


class _ThresholdEncode(torch.autograd.Function):
    """The activations ``pre * (pre > threshold)`` of a precomputed ``pre = x_in @ W^T + b``,
    sparse (``values[N]`` of ``pattern``) or dense; the backward of the whole encoder."""

    @staticmethod
    def forward(ctx, x, b_dec, weight, bias, pre, pattern):
        # pre (and x_in) were computed under no_grad by relu_encode; weight/bias/b_dec are
        # inputs so that autograd routes their gradients here.
        x_in = x - b_dec if b_dec is not None else x
        ctx.pattern = pattern
        if pattern is not None:
            values = pre.reshape(-1).index_select(0, pattern.flat)
            ctx.save_for_backward(x_in, weight)
            return values
        acts = pre.relu_()
        ctx.mark_dirty(pre)
        ctx.save_for_backward(x_in, weight, acts)
        return acts

    @staticmethod
    def backward(ctx, g):
        pattern = ctx.pattern
        x_in, weight = ctx.saved_tensors[:2]
        need_x, need_bdec, need_w, need_b = ctx.needs_input_grad[:4]
        grad_x = grad_bdec = grad_w = grad_b = None
        if pattern is not None:  # g: [N], the gradient at the active entries
            g = g.contiguous()
            if need_b or need_bdec:
                grad_b = torch.zeros(pattern.d_sae, dtype=g.dtype, device=g.device)
                grad_b.index_add_(0, pattern.latents, g)
            if need_w:
                grad_w = pattern.per_latent(g.to(x_in.dtype), x_in).to(weight.dtype)
            if need_x:
                grad_x = pattern.per_token(g.to(weight.dtype), weight).to(x_in.dtype)
                if need_bdec:
                    grad_bdec = -grad_x.sum(0)
            elif need_bdec:
                grad_bdec = -(grad_b.to(weight.dtype) @ weight)
        else:
            acts = ctx.saved_tensors[2]
            d_pre = g * (acts > 0)
            if need_b or need_bdec:
                grad_b = d_pre.sum(0)
            if need_w:
                grad_w = d_pre.t() @ x_in
            if need_x:
                grad_x = d_pre @ weight
                if need_bdec:
                    grad_bdec = -grad_x.sum(0)
            elif need_bdec:
                grad_bdec = -(grad_b @ weight)
        ctx.pattern = None
        return grad_x, grad_bdec, grad_w, grad_b if need_b else None, None, None


class _SparseDecode(torch.autograd.Function):
    """``sum_j values_j * W_dec[latent_j]`` per token, with a sparse backward."""

    @staticmethod
    def forward(ctx, values, w_dec, pattern):
        ctx.save_for_backward(values, w_dec)
        ctx.pattern = pattern
        return pattern.per_token(values, w_dec)

    @staticmethod
    def backward(ctx, g):
        values, w_dec = ctx.saved_tensors
        pattern = ctx.pattern
        g = g.contiguous()
        grad_values = pattern.sampled(g, w_dec) if ctx.needs_input_grad[0] else None
        grad_w = pattern.per_latent(values, g) if ctx.needs_input_grad[1] else None
        ctx.pattern = None
        return grad_values, grad_w, None


def relu_encode(x: torch.Tensor, b_dec: torch.Tensor | None, weight: torch.Tensor,
                bias: torch.Tensor, *, max_density: float
                ) -> tuple[torch.Tensor, ActivePattern | None]:
    """ReLU activations of ``(x - b_dec) @ weight^T + bias`` for training.

    Returns ``(values[N], pattern)`` when at most ``max_density`` of the ``[B, d_sae]``
    entries are positive, else ``(acts[B, d_sae], None)``; both carry the gradient of ``x``,
    ``b_dec``, ``weight`` and ``bias`` (computed sparsely in the first case).
    """
    with torch.no_grad():
        x_in = x - b_dec if b_dec is not None else x
        pre = torch.addmm(bias, x_in, weight.t())
        mask = pre > 0
        n_active = int(mask.sum())
        pattern = (ActivePattern.from_mask(mask)
                   if n_active <= max_density * mask.numel() else None)
        del mask
    return _ThresholdEncode.apply(x, b_dec, weight, bias, pre, pattern), pattern


def sparse_decode(values: torch.Tensor, w_dec: torch.Tensor,
                  pattern: ActivePattern) -> torch.Tensor:
    """The decoder product ``acts @ W_dec`` of sparse activations (no bias)."""
    return _SparseDecode.apply(values, w_dec, pattern)
