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

    ``flat[N]`` (``row * d_sae + latent``), ``latents[N]`` and ``rows[N]`` are sorted by
    token (row-major), ``offsets[B]`` is where each token's entries start (``embedding_bag``
    offsets), ``crow[B + 1]`` the CSR row pointer; ``perm[N]`` sorts the entries by latent,
    ``t_rows[N] = rows[perm]`` and ``t_offsets[d_sae]`` give the transposed layout;
    ``latent_counts[d_sae]`` is how many tokens each latent fired on.
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
        # zeros, not empty: sampled_addmm propagates NaNs of its input even with beta 0
        out = torch.sparse.sampled_addmm(self.csr(g.new_zeros(self.nnz)), g, w.t(), beta=0.0)
        return out.values()


def _row_pointer(counts: torch.Tensor) -> torch.Tensor:
    ptr = counts.new_zeros(counts.numel() + 1)
    torch.cumsum(counts, 0, out=ptr[1:])
    return ptr


def _encoder_grads(ctx, pattern, d_pre, x_in, weight):
    """Gradients of ``(x, b_dec, weight, bias)`` of ``pre = (x - b_dec) @ weight^T + bias``
    from ``d_pre``: ``[N]`` at the entries of ``pattern``, or dense ``[B, d_sae]``."""
    need_x, need_bdec, need_w, need_b = ctx.needs_input_grad[:4]
    grad_x = grad_bdec = grad_w = grad_b = None
    if pattern is not None:
        d_pre = d_pre.contiguous()
        if need_b or need_bdec:
            grad_b = torch.zeros(pattern.d_sae, dtype=d_pre.dtype, device=d_pre.device)
            grad_b.index_add_(0, pattern.latents, d_pre)
        if need_w:
            grad_w = pattern.per_latent(d_pre.to(x_in.dtype), x_in).to(weight.dtype)
        if need_x:
            grad_x = pattern.per_token(d_pre.to(weight.dtype), weight).to(x_in.dtype)
    else:
        if need_b or need_bdec:
            grad_b = d_pre.sum(0)
        if need_w:
            grad_w = d_pre.t() @ x_in
        if need_x:
            grad_x = d_pre @ weight
    if need_bdec:  # x_in = x - b_dec
        grad_bdec = -grad_x.sum(0) if grad_x is not None else -(grad_b.to(weight.dtype) @ weight)
    return grad_x, grad_bdec, grad_w, grad_b if need_b else None


class _ReluEncode(torch.autograd.Function):
    """``relu`` of a precomputed ``pre = (x - b_dec) @ W^T + b``: sparse (``values[N]`` at
    the entries of ``pattern``) or dense; its backward is the whole encoder's."""

    @staticmethod
    def forward(ctx, x, b_dec, weight, bias, pre, pattern):
        # pre was computed under no_grad by relu_encode; x, b_dec, weight and bias are
        # inputs so that autograd routes their gradients here.
        x_in = x - b_dec if b_dec is not None else x
        ctx.pattern = pattern
        if pattern is not None:
            ctx.save_for_backward(x_in, weight)
            return pre.reshape(-1).index_select(0, pattern.flat)
        acts = pre.relu_()
        ctx.mark_dirty(pre)
        ctx.save_for_backward(x_in, weight, acts)
        return acts

    @staticmethod
    def backward(ctx, g):
        pattern = ctx.pattern
        x_in, weight = ctx.saved_tensors[:2]
        d_pre = g if pattern is not None else g * (ctx.saved_tensors[2] > 0)
        grads = _encoder_grads(ctx, pattern, d_pre, x_in, weight)
        ctx.pattern = None
        return *grads, None, None


def _in_band(pre: torch.Tensor, threshold: torch.Tensor, bandwidth: float) -> torch.Tensor:
    """Where the rectangle kernel of the JumpReLU straight-through estimator is non-zero
    (the same expression as the dense step's)."""
    z = (pre - threshold) / bandwidth
    return (z > -0.5) & (z < 0.5)


class _JumpReLUEncode(torch.autograd.Function):
    """JumpReLU ``pre * H(pre - theta)`` of a precomputed ``pre`` and the L0 count, with the
    Gemma Scope straight-through gradients for ``theta`` (rectangle kernel of width
    ``bandwidth``). Sparse: returns ``values[N]`` at the active entries, a zero ``probe[M]``
    at the entries inside the kernel's band (the decoder gives it the gradient there, which
    the threshold needs) and ``l0``; dense: ``acts[B, d_sae]``, an empty probe and ``l0``."""

    @staticmethod
    def forward(ctx, x, b_dec, weight, bias, threshold, pre, pattern, band, bandwidth):
        x_in = x - b_dec if b_dec is not None else x
        ctx.pattern, ctx.band, ctx.bandwidth = pattern, band, bandwidth
        B = pre.shape[0]
        if pattern is not None:
            ctx.save_for_backward(x_in, weight, threshold)
            values = pre.reshape(-1).index_select(0, pattern.flat)
            return values, pre.new_zeros(band.nnz), pre.new_tensor(pattern.nnz / B)
        active = pre > threshold
        ctx.save_for_backward(x_in, weight, threshold, pre)
        return pre * active, pre.new_zeros(0), active.sum().to(pre.dtype) / B

    @staticmethod
    def backward(ctx, g_values, g_probe, g_l0):
        pattern, band, bw = ctx.pattern, ctx.band, ctx.bandwidth
        x_in, weight, threshold = ctx.saved_tensors[:3]
        B = x_in.shape[0]
        g_l0 = g_l0 if g_l0 is not None else torch.zeros((), device=x_in.device)
        if pattern is not None:
            d_pre = g_values
            if g_probe is None:
                g_probe = threshold.new_zeros(band.nnz)
            acts_grad_in_band = torch.zeros_like(threshold).index_add_(
                0, band.latents, g_probe.to(threshold.dtype))
            band_counts = band.latent_counts.to(threshold.dtype)
        else:
            pre = ctx.saved_tensors[3]
            d_pre = g_values * (pre > threshold)
            rect = _in_band(pre, threshold, bw).to(pre.dtype)
            acts_grad_in_band = (rect * g_values).sum(0)
            band_counts = rect.sum(0)
        grad_thr = -(threshold / bw) * acts_grad_in_band - (g_l0 / (B * bw)) * band_counts
        grads = _encoder_grads(ctx, pattern, d_pre, x_in, weight)
        ctx.pattern = ctx.band = None
        return *grads, grad_thr, None, None, None, None


class _SparseDecode(torch.autograd.Function):
    """``sum_j values_j * W_dec[latent_j]`` per token, with a sparse backward; ``probe``
    (zeros at the entries of ``band``, or None) only receives ``g @ W_dec^T`` there."""

    @staticmethod
    def forward(ctx, values, w_dec, probe, pattern, band):
        ctx.save_for_backward(values, w_dec)
        ctx.pattern, ctx.band = pattern, band
        return pattern.per_token(values, w_dec)

    @staticmethod
    def backward(ctx, g):
        values, w_dec = ctx.saved_tensors
        pattern, band = ctx.pattern, ctx.band
        g = g.contiguous()
        grad_values = pattern.sampled(g, w_dec) if ctx.needs_input_grad[0] else None
        grad_w = pattern.per_latent(values, g) if ctx.needs_input_grad[1] else None
        grad_probe = band.sampled(g, w_dec) if ctx.needs_input_grad[2] else None
        ctx.pattern = ctx.band = None
        return grad_values, grad_w, grad_probe, None, None


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
    return _ReluEncode.apply(x, b_dec, weight, bias, pre, pattern), pattern


def jumprelu_encode(x: torch.Tensor, b_dec: torch.Tensor | None, weight: torch.Tensor,
                    bias: torch.Tensor, threshold: torch.Tensor, bandwidth: float, *,
                    max_density: float):
    """JumpReLU activations for training: ``(values, probe, l0, pattern, band)``.

    Sparse when the active entries plus those inside the straight-through kernel's band are
    at most ``max_density`` of ``[B, d_sae]``: ``values[N]`` at ``pattern``, ``probe[M]``
    (zeros) at ``band``, to be passed to :func:`sparse_decode`. Dense otherwise: ``values``
    is ``acts[B, d_sae]`` and ``pattern``/``band`` are None. ``l0`` is the mean number of
    active latents per token, differentiable in ``threshold`` (straight-through).
    """
    with torch.no_grad():
        x_in = x - b_dec if b_dec is not None else x
        pre = torch.addmm(bias, x_in, weight.t())
        active = pre > threshold
        band_mask = _in_band(pre, threshold, bandwidth)
        n = int(active.sum()) + int(band_mask.sum())
        pattern = band = None
        if n <= max_density * active.numel():
            pattern, band = ActivePattern.from_mask(active), ActivePattern.from_mask(band_mask)
        del active, band_mask
    values, probe, l0 = _JumpReLUEncode.apply(x, b_dec, weight, bias, threshold, pre,
                                              pattern, band, bandwidth)
    return values, probe, l0, pattern, band


def sparse_decode(values: torch.Tensor, w_dec: torch.Tensor, pattern: ActivePattern,
                  probe: torch.Tensor | None = None,
                  band: ActivePattern | None = None) -> torch.Tensor:
    """The decoder product ``acts @ W_dec`` of sparse activations (no bias); ``probe`` at
    ``band``: see :func:`jumprelu_encode`."""
    return _SparseDecode.apply(values, w_dec, probe, pattern, band)
