"""Matryoshka BatchTopK SAEs: nested dictionaries trained with one loss per prefix.

As in Bussmann et al. 2025 ("Learning Multi-Level Features with Matryoshka Sparse
Autoencoders") and SAELens's ``matryoshka_batchtopk``: the first latents must reconstruct
the input on their own, which keeps general features in the early latents and reduces
feature absorption. Saved, like BatchTopK, as a JumpReLU SAE (:mod:`mistudio.sae.formats`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mistudio.sae.architectures import BatchTopKSAE, StepOutput, _autocast
from mistudio.sae.config import resolve_matryoshka_widths


class MatryoshkaBatchTopKSAE(BatchTopKSAE):
    """BatchTopK whose latents form nested dictionaries (SAELens ``matryoshka_batchtopk``).

    ``widths`` are increasing prefix sizes ending at ``d_sae``. One BatchTopK selection is
    made over all latents (as SAELens does); the loss is the full reconstruction's MSE plus,
    for every inner width ``w``, the MSE of ``b_dec + sum_{i<w} f_i W_dec,i``. AuxK works on
    the full residual (SAELens's default, ``use_matryoshka_aux_loss = False``); with
    ``use_matryoshka_aux_loss`` it works level by level, as SAELens's option does (see
    :meth:`matryoshka_aux_loss`). Saved like BatchTopK: a JumpReLU SAE with the global
    threshold.

    Why one decode serves every level: the selected entries are regrouped by (token, level)
    and one ``embedding_bag`` over ``B * L`` bags gives each level's partial sum per token;
    a cumulative sum over levels is then every prefix reconstruction at once, so the nested
    losses cost one decode plus ``L`` small MSEs instead of ``L`` decodes (and their
    gradient a linear surrogate, see :meth:`training_step`).
    """

    architecture = "matryoshka_batchtopk"

    def __init__(self, d_in: int, d_sae: int, *, widths=(), use_matryoshka_aux_loss=False,
                 **kw):
        super().__init__(d_in, d_sae, **kw)
        self.widths = resolve_matryoshka_widths(widths, self.d_sae)
        self.use_matryoshka_aux_loss = bool(use_matryoshka_aux_loss)
        self.register_buffer("_level_edges", torch.tensor(self.widths[:-1], dtype=torch.long,
                                                          device=self.W_dec.device),
                             persistent=False)

    def level_parts(self, values, latents, offsets) -> torch.Tensor:
        """``[L, B, d_out]``: each level's share of the decode (no bias): level ``j`` sums
        the selected latents in ``[widths[j-1], widths[j])``. Level-major, so sums over
        levels add contiguous ``[B, d_out]`` slabs."""
        B, L = offsets.shape[0], len(self.widths)
        counts = torch.diff(offsets, append=offsets.new_tensor([latents.numel()]))
        rows = torch.repeat_interleave(torch.arange(B, device=latents.device), counts)
        level = torch.bucketize(latents, self._level_edges.to(latents.device), right=True)
        bag = level * B + rows
        order = torch.argsort(bag, stable=True)
        bag_counts = torch.bincount(bag, minlength=B * L)
        bag_offsets = torch.zeros(B * L, dtype=torch.long, device=latents.device)
        bag_offsets[1:] = bag_counts.cumsum(0)[:-1]
        parts = F.embedding_bag(latents[order], self.W_dec, bag_offsets, mode="sum",
                                per_sample_weights=values[order].to(self.W_dec.dtype))
        return parts.view(L, B, -1)

    def prefix_reconstructions(self, values, latents, offsets, x=None) -> torch.Tensor:
        """``[L, B, d_out]``: the reconstruction from the first ``widths[j]`` latents."""
        prefix = self.level_parts(values, latents, offsets).cumsum(dim=0)
        return prefix + self.b_dec + self._skip(x) if x is not None else prefix + self.b_dec

    def training_step(self, x, y, *, sparsity_scale=1.0, dead_mask=None, matmul_dtype=None):
        x_in = self._input(x)
        values, latents, offsets = self._select(x_in, matmul_dtype)
        parts = self.level_parts(values, latents, offsets).float()  # [L, B, d_out]
        base = self.b_dec
        if self.W_skip is not None:
            with _autocast(x, matmul_dtype):
                base = base + self._skip(x)
        base = base.float()
        B = x.shape[0]
        # The nested loss sum_j mean_b ||y - base - C_j||^2 with C_j = sum_{i<=j} D_i (the
        # prefix sums of the level parts D). Its values come from residuals computed once
        # without autograd; its gradient enters through a linear surrogate: d/dD_i =
        # -2/B sum_{j>=i} r_j and d/dbase = -2/B sum_j r_j. Autograd through the cumsum and
        # L [B, d] MSEs took a third of the step with 6 levels (benchmarks/sae_train_bench.py
        # --arch matryoshka); the values and gradients equal the direct loss (tested).
        with torch.no_grad():
            resid = (y - base.detach()).unsqueeze(0) - parts.cumsum(dim=0)  # r_j [L, B, d]
            level_mse = resid.pow(2).sum(dim=-1).mean(dim=1)  # [L]
            total = resid.sum(dim=0)  # sum_j r_j  [B, d]
            tail = total.unsqueeze(0) - resid.cumsum(dim=0) + resid  # sum_{j>=i} r_j
            recon = y - resid[-1]
        surrogate = -(2.0 / B) * ((parts * tail).sum() + (base * total).sum())
        loss = level_mse.sum() + (surrogate - surrogate.detach())
        mse = level_mse[-1]
        if self.use_matryoshka_aux_loss:
            aux = self.matryoshka_aux_loss(x_in, resid, dead_mask, matmul_dtype)
        else:
            aux = self._aux_loss(x_in, resid[-1], dead_mask, matmul_dtype)
        if aux is not None:
            loss = loss + self.aux_k_coefficient * aux
        with torch.no_grad():
            active = values > 0
            fired = torch.zeros(self.d_sae, device=x.device).index_add_(
                0, latents, active.float())
            inner = level_mse[:-1]
            extra = {f"inner_mse_loss_{w}": inner[j] for j, w in enumerate(self.widths[:-1])}
        zero = mse.new_zeros(())
        self._after_select(values, active)
        return StepOutput(loss=loss, recon=recon, mse=mse, sparsity_loss=zero,
                          aux_loss=aux.detach() if aux is not None else zero,
                          l0=active.sum().float() / B, l1=values.detach().sum() / B,
                          fired=fired, extra=extra)

    def matryoshka_aux_loss(self, x_in, resid, dead_mask, matmul_dtype):
        """SAELens's ``use_matryoshka_aux_loss``: AuxK per level. The dead latents of level
        ``j`` (latents ``[widths[j-1], widths[j])``) reconstruct the residual of the prefix
        reconstruction up to ``widths[j]`` (``resid[j]``, its own level's error rather than
        the whole SAE's): the top ``min(aux_k, dead in the level)`` of their pre-activations
        (ReLU, like our AuxK), decoded without bias; each level's mean squared error is
        scaled by ``min(dead in the level / aux_k, 1)`` and the levels' terms are summed.
        Levels with no dead latent add nothing; None when no latent is dead. (SAELens takes
        ``aux_k = d_in // 2`` here; ours is the ``aux_k`` setting, whose default is that.)"""
        if dead_mask is None or self.aux_k_coefficient <= 0:
            return None
        dead = dead_mask.nonzero().squeeze(1)
        if int(dead.numel()) == 0:
            return None
        with _autocast(x_in, matmul_dtype):
            pre = F.linear(x_in, self.W_enc_t[dead], self.b_enc[dead])
        pre = pre.float()
        level = torch.bucketize(dead, self._level_edges.to(dead.device), right=True)
        counts = torch.bincount(level, minlength=len(self.widths)).tolist()  # one sync
        total = None
        start = 0
        for j, n_dead in enumerate(counts):
            cols = slice(start, start + n_dead)  # dead is sorted, so a level is a run
            start += n_dead
            if n_dead == 0:
                continue
            ka = min(self.aux_k, n_dead)
            vals, idx = pre[:, cols].topk(ka, dim=-1, sorted=False)
            recon = F.embedding_bag(dead[cols][idx], self.W_dec, mode="sum",
                                    per_sample_weights=F.relu(vals).to(self.W_dec.dtype))
            term = min(n_dead / self.aux_k, 1.0) * (recon.float() - resid[j]).pow(2).sum(
                dim=-1).mean()
            total = term if total is None else total + term
        return total

    def metric_names(self) -> tuple[str, ...]:
        return tuple(f"inner_mse_loss_{w}" for w in self.widths[:-1])

    @torch.no_grad()
    def prefix(self, width: int) -> BatchTopKSAE:
        """The SAE made of the first ``width`` latents (a level of the nest), as a BatchTopK
        SAE with the same global threshold: what a user keeps for a smaller dictionary."""
        if width not in self.widths:
            raise ValueError(f"{width} is not one of the Matryoshka widths {self.widths}")
        small = BatchTopKSAE(self.d_in, width, d_out=self.d_out if self.transcoder else None,
                             skip=self.W_skip is not None, transcoder=self.transcoder,
                             k=self.k, aux_k=min(self.aux_k, width),
                             aux_k_coefficient=self.aux_k_coefficient,
                             device=self.W_dec.device)
        small.apply_b_dec_to_input = self.apply_b_dec_to_input
        small.W_enc_t.copy_(self.W_enc_t[:width])
        small.b_enc.copy_(self.b_enc[:width])
        small.W_dec.copy_(self.W_dec[:width])
        small.b_dec.copy_(self.b_dec)
        if self.W_skip is not None:
            small.W_skip.copy_(self.W_skip)
        small.threshold.copy_(self.threshold)
        small.threshold_seen.copy_(self.threshold_seen)
        return small.train(self.training)

    def hyperparameters(self) -> dict:
        return {**super().hyperparameters(), "matryoshka_widths": list(self.widths),
                "use_matryoshka_aux_loss": self.use_matryoshka_aux_loss}
