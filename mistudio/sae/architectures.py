"""SAE architectures: encode/decode, their training losses, decoder-norm rules, init.

Every SAE keeps SAELens's parameters (``W_enc [d_in, d_sae]`` exposed as a view of the
stored ``W_enc_t [d_sae, d_in]``, ``b_enc``, ``W_dec [d_sae, d_out]``, ``b_dec``; ``W_skip
[d_out, d_in]`` for skip-transcoders; ``threshold`` for JumpReLU/BatchTopK) and works in
*normalized units* while training (inputs scaled so E||x|| = sqrt(d_in)); the scaling is
folded into the weights when saving (:mod:`mistudio.sae.formats`).

- :class:`ReluSAE`: ReLU, loss ``||y - y_hat||^2 + l1 * sum_i f_i ||W_dec,i||`` (Anthropic,
  April 2024); W_dec rows initialised to norm 0.1 in random directions, W_enc = W_dec^T.
- :class:`TopKSAE`: top-k of the pre-activations (then ReLU), unit-norm decoder rows with
  W_enc = W_dec^T / sqrt(3) (sparsify's starting scale), AuxK loss on dead latents (OpenAI
  2024). Sparse encoder backward and ``embedding_bag`` decoder.
- :class:`BatchTopKSAE`: top ``k * B`` over the batch; a global threshold is estimated during
  training (EMA of the smallest selected activation) and used at inference, JumpReLU-style.
- :class:`MatryoshkaBatchTopKSAE`: BatchTopK with nested dictionaries (Bussmann et al. 2025,
  SAELens ``matryoshka_batchtopk``): the first ``w`` latents of each ``matryoshka_widths``
  level must reconstruct the input on their own, so the loss adds each inner prefix's MSE.
- :class:`JumpReLUSAE`: ``z * H(z - theta)`` with an L0 penalty; straight-through estimators
  with a rectangle kernel for ``theta`` (Gemma Scope). ``theta`` is a plain fp32 parameter
  (not ``log theta``), so Adam moves it by ~lr per step at any scale and L0 falls.

Transcoders read ``x`` (d_in) and reconstruct ``y`` (d_out) with the same machinery; they do
not subtract ``b_dec`` from the input (SAELens: ``apply_b_dec_to_input = False``).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from mistudio.sae.sparse_ops import sparse_decode, sparse_encode, to_dense
from mistudio.sae.sparse_relu import CPU_MAX_DENSITY, jumprelu_encode, relu_encode
from mistudio.sae.sparse_relu import sparse_decode as relu_sparse_decode


@dataclass
class StepOutput:
    """One training forward pass: the loss to backprop and detached tensors for metrics."""

    loss: torch.Tensor
    recon: torch.Tensor          # [B, d_out], normalized units, detached
    mse: torch.Tensor
    sparsity_loss: torch.Tensor
    aux_loss: torch.Tensor
    l0: torch.Tensor             # mean active latents per token
    l1: torch.Tensor             # mean sum of activations per token
    fired: torch.Tensor          # [d_sae] float: tokens of this batch on which each latent fired
    extra: dict | None = None    # architecture-specific per-token means (Matryoshka prefix MSEs)


class SparseAutoencoder(nn.Module):
    """The shared parts; subclasses define the activation and the sparsity loss."""

    architecture = "relu"
    unit_norm_decoder = False

    def __init__(self, d_in: int, d_sae: int, *, d_out: int | None = None, skip: bool = False,
                 transcoder: bool = False, k: int = 32, aux_k: int = 0,
                 aux_k_coefficient: float = 1 / 32, l1_coefficient: float = 5.0,
                 l0_coefficient: float = 1.0, bandwidth: float = 0.05,
                 init_threshold: float = 0.05, seed: int = 0, device=None):
        super().__init__()
        self.d_in, self.d_sae = int(d_in), int(d_sae)
        self.d_out = int(d_out or d_in)
        self.transcoder = bool(transcoder or skip or self.d_out != self.d_in)
        self.apply_b_dec_to_input = not self.transcoder
        self.k, self.aux_k = int(k), int(aux_k or max(1, min(self.d_in // 2, self.d_sae // 2)))
        self.aux_k_coefficient = float(aux_k_coefficient)
        self.l1_coefficient, self.l0_coefficient = float(l1_coefficient), float(l0_coefficient)
        self.bandwidth = float(bandwidth)
        self.W_enc_t = nn.Parameter(torch.empty(self.d_sae, self.d_in, device=device))
        self.b_enc = nn.Parameter(torch.zeros(self.d_sae, device=device))
        self.W_dec = nn.Parameter(torch.empty(self.d_sae, self.d_out, device=device))
        self.b_dec = nn.Parameter(torch.zeros(self.d_out, device=device))
        self.W_skip = nn.Parameter(torch.zeros(self.d_out, self.d_in, device=device)) if skip else None
        self._init_threshold(float(init_threshold), device)
        self.reset_parameters(seed)

    # ------------------------------------------------------------------ init

    def _init_threshold(self, value: float, device) -> None:
        pass

    def _decoder_init_norm(self) -> float:
        return 1.0

    def _encoder_init_scale(self) -> float:
        """Encoder rows start at this multiple of the decoder rows' norm."""
        return 1.0

    @torch.no_grad()
    def reset_parameters(self, seed: int) -> None:
        """Random decoder directions, encoder = decoder^T (a seeded generator: sweeps and
        separate runs with the same seed start identical)."""
        gen = torch.Generator().manual_seed(int(seed))
        w = torch.randn(self.d_sae, self.d_out, generator=gen)
        w *= self._decoder_init_norm() / w.norm(dim=1, keepdim=True)
        self.W_dec.copy_(w)
        enc_norm = self._decoder_init_norm() * self._encoder_init_scale()
        if self.d_out == self.d_in:
            self.W_enc_t.copy_(w * self._encoder_init_scale())
        else:
            e = torch.randn(self.d_sae, self.d_in, generator=gen)
            self.W_enc_t.copy_(e * (enc_norm / e.norm(dim=1, keepdim=True)))
        self.b_enc.zero_()
        self.b_dec.zero_()
        if self.W_skip is not None:
            self.W_skip.zero_()

    # ------------------------------------------------------------------ inference

    @property
    def W_enc(self) -> torch.Tensor:
        return self.W_enc_t.t()

    def _input(self, x: torch.Tensor) -> torch.Tensor:
        return x - self.b_dec if self.apply_b_dec_to_input else x

    def pre_acts(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(self._input(x), self.W_enc_t, self.b_enc)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Dense latent activations ``[B, d_sae]`` (inference semantics)."""
        return F.relu(self.pre_acts(x))

    def decode(self, acts: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        out = acts @ self.W_dec + self.b_dec
        if self.W_skip is not None:
            if x is None:
                raise ValueError("a skip-transcoder needs the input x to decode")
            out = out + x @ self.W_skip.t()
        return out

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None, **train_kw):
        """Reconstruction of ``x``; with a target ``y``: :meth:`training_step` (so DDP's
        wrapper, which only sees ``forward``, runs training steps)."""
        if y is None and not train_kw:
            return self.decode(self.encode(x), x)
        return self.training_step(x, x if y is None else y, **train_kw)

    # ------------------------------------------------------------------ training

    def training_step(self, x: torch.Tensor, y: torch.Tensor, *, sparsity_scale: float = 1.0,
                      dead_mask: torch.Tensor | None = None,
                      matmul_dtype: torch.dtype | None = None) -> StepOutput:
        raise NotImplementedError

    # ReLU and JumpReLU: "auto" takes the sparse kernels of mistudio.sae.sparse_relu on CPU
    # in fp32 whenever the batch's density is at most sparse_max_density; "off": always
    # dense; "on": sparse at any density (tests). CUDA, autocast and torch.compile always
    # take the dense step (not measured on a GPU; the dense step is the proven one there).
    sparse_path = "auto"
    sparse_max_density = CPU_MAX_DENSITY

    def _sparse_density_limit(self, x: torch.Tensor, matmul_dtype) -> float | None:
        """The density below which this step runs sparse, or None for the dense step."""
        if self.sparse_path == "off" or torch.compiler.is_compiling():
            return None
        if self.sparse_path == "on":
            return 1.0
        if x.device.type != "cpu" or matmul_dtype not in (None, torch.float32):
            return None
        return self.sparse_max_density

    def _skip(self, x: torch.Tensor) -> torch.Tensor | float:
        return x @ self.W_skip.t() if self.W_skip is not None else 0.0

    @torch.no_grad()
    def constrain_gradients(self) -> None:
        """Before the optimizer step: unit-norm decoders drop the gradient along each row."""
        if self.unit_norm_decoder and self.W_dec.grad is not None:
            g, w = self.W_dec.grad, self.W_dec
            g -= (g * w).sum(dim=1, keepdim=True) * w

    @torch.no_grad()
    def after_step(self) -> None:
        """After the optimizer step: re-project onto the constraints."""
        if self.unit_norm_decoder:
            self.W_dec /= self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-8)

    def hyperparameters(self) -> dict:
        """Architecture settings stored with the weights (SAELens cfg fields where they exist)."""
        return {}

    def metric_names(self) -> tuple[str, ...]:
        """Names of the architecture's own metrics (``StepOutput.extra``), in order."""
        return ()


def _autocast(x: torch.Tensor, dtype: torch.dtype | None):
    if dtype is None or dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=x.device.type, dtype=dtype)


def _mse(recon: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (recon.float() - y).pow(2).sum(dim=-1).mean()


class ReluSAE(SparseAutoencoder):
    architecture = "relu"

    def _decoder_init_norm(self) -> float:
        return 0.1

    def training_step(self, x, y, *, sparsity_scale=1.0, dead_mask=None, matmul_dtype=None):
        limit = self._sparse_density_limit(x, matmul_dtype)
        if limit is not None:
            return self._training_step_cpu(x, y, sparsity_scale, limit)
        with _autocast(x, matmul_dtype):
            acts = F.relu(self.pre_acts(x))
            recon = acts @ self.W_dec + self.b_dec + self._skip(x)
        acts = acts.float()
        mse = _mse(recon, y)
        weighted = (acts * self.W_dec.norm(dim=1)).sum(dim=-1).mean()
        sparsity = self.l1_coefficient * sparsity_scale * weighted
        active = acts > 0
        zero = mse.new_zeros(())
        return StepOutput(loss=mse + sparsity, recon=recon.detach().float(), mse=mse.detach(),
                          sparsity_loss=sparsity.detach(), aux_loss=zero,
                          l0=active.sum(dim=-1).float().mean(),
                          l1=acts.detach().sum(dim=-1).mean(), fired=active.sum(dim=0).float())

    def _training_step_cpu(self, x, y, sparsity_scale, max_density) -> StepOutput:
        """The same loss through :func:`relu_encode`: sparse kernels when the batch is
        sparse enough, the dense products otherwise (same values, other summation order)."""
        B = x.shape[0]
        values, pattern = relu_encode(x, self.b_dec if self.apply_b_dec_to_input else None,
                                      self.W_enc_t, self.b_enc, max_density=max_density)
        norms = self.W_dec.norm(dim=1)
        if pattern is None:  # dense: values are the activations [B, d_sae]
            recon = values @ self.W_dec + self.b_dec + self._skip(x)
            weighted = (values.sum(dim=0) * norms).sum() / B
            with torch.no_grad():
                fired = (values > 0).sum(dim=0).float()
        else:
            recon = relu_sparse_decode(values, self.W_dec, pattern) + self.b_dec + self._skip(x)
            weighted = (values * norms[pattern.latents]).sum() / B
            fired = pattern.latent_counts.float()
        mse = _mse(recon, y)
        sparsity = self.l1_coefficient * sparsity_scale * weighted
        return StepOutput(loss=mse + sparsity, recon=recon.detach(), mse=mse.detach(),
                          sparsity_loss=sparsity.detach(), aux_loss=mse.new_zeros(()),
                          l0=fired.sum() / B, l1=values.detach().sum() / B, fired=fired)

    def hyperparameters(self) -> dict:
        return {"l1_coefficient": self.l1_coefficient}


class TopKSAE(SparseAutoencoder):
    architecture = "topk"
    unit_norm_decoder = True
    batch_mode = False

    def _encoder_init_scale(self) -> float:
        # W_enc = W_dec^T / sqrt(3): the encoder norm sparsify starts from (its encoder is
        # nn.Linear's default init, row norm ~1/sqrt(3); its decoder the unit-norm copy).
        # Measured (benchmarks/sae_train_bench.py, CPU size): held-out EV after 62 / 150 /
        # 300 steps 0.53 / 0.58 / 0.66 instead of 0.38 / 0.50 / 0.57 with W_enc = W_dec^T.
        return 3 ** -0.5

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.pre_acts(x)
        vals, idx = pre.topk(self.k, dim=-1)
        return torch.zeros_like(pre).scatter_(-1, idx, F.relu(vals))

    def _select(self, x_in, matmul_dtype):
        return sparse_encode(x_in, self.W_enc_t, self.b_enc, self.k, batch_mode=self.batch_mode,
                             matmul_dtype=matmul_dtype)

    def training_step(self, x, y, *, sparsity_scale=1.0, dead_mask=None, matmul_dtype=None):
        x_in = self._input(x)
        values, latents, offsets = self._select(x_in, matmul_dtype)
        recon = sparse_decode(values, latents, offsets, self.W_dec) + self.b_dec
        if self.W_skip is not None:
            with _autocast(x, matmul_dtype):
                recon = recon + self._skip(x)
        recon = recon.float()
        mse = _mse(recon, y)
        aux = self._aux_loss(x_in, (y - recon).detach(), dead_mask, matmul_dtype)
        loss = mse + self.aux_k_coefficient * aux if aux is not None else mse
        with torch.no_grad():
            active = values > 0
            B = x.shape[0]
            fired = torch.zeros(self.d_sae, device=x.device).index_add_(
                0, latents, active.float())
            l0 = active.sum().float() / B
            l1 = values.sum() / B
        zero = mse.new_zeros(())
        self._after_select(values, active)
        return StepOutput(loss=loss, recon=recon.detach(), mse=mse.detach(), sparsity_loss=zero,
                          aux_loss=aux.detach() if aux is not None else zero, l0=l0, l1=l1,
                          fired=fired)

    def _after_select(self, values, active) -> None:
        pass

    def _aux_loss(self, x_in, residual, dead_mask, matmul_dtype):
        """AuxK: the top ``aux_k`` dead latents try to reconstruct the residual error."""
        if dead_mask is None or self.aux_k_coefficient <= 0:
            return None
        dead = dead_mask.nonzero().squeeze(1)
        n_dead = int(dead.numel())
        if n_dead == 0:
            return None
        with _autocast(x_in, matmul_dtype):
            pre = F.linear(x_in, self.W_enc_t[dead], self.b_enc[dead])
        ka = min(self.aux_k, n_dead)
        vals, idx = pre.float().topk(ka, dim=-1, sorted=False)
        aux_recon = F.embedding_bag(dead[idx], self.W_dec, mode="sum",
                                    per_sample_weights=F.relu(vals))
        scale = min(n_dead / self.aux_k, 1.0)
        return scale * (aux_recon - residual).pow(2).sum(dim=-1).mean()

    def hyperparameters(self) -> dict:
        return {"k": self.k, "aux_k": self.aux_k, "aux_k_coefficient": self.aux_k_coefficient}


class BatchTopKSAE(TopKSAE):
    """Top ``k * B`` over the batch. Under ``torchrun`` the trainer sets ``world_size``: the
    selection is then over the global batch of all processes and the threshold estimate is
    the global smallest selected activation, so every process keeps the same threshold and N
    processes train the SAE one process would on the whole batch."""

    architecture = "batchtopk"
    batch_mode = True
    THRESHOLD_EMA = 0.99
    world_size = 1  # processes sharing each batch (set by the trainer under DDP)

    def _init_threshold(self, value, device) -> None:
        self.register_buffer("threshold", torch.zeros(1, device=device))
        self.register_buffer("threshold_seen", torch.zeros((), device=device))

    def _select(self, x_in, matmul_dtype):
        if self.world_size > 1:
            from mistudio.sae.distributed import global_batch_topk_encode

            return global_batch_topk_encode(x_in, self.W_enc_t, self.b_enc, self.k,
                                            self.world_size, matmul_dtype)
        return super()._select(x_in, matmul_dtype)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:  # training-mode encode: the batch selection itself
            vals, latents, offsets = sparse_encode(self._input(x), self.W_enc_t, self.b_enc,
                                                   self.k, batch_mode=True)
            return to_dense(vals, latents, offsets, self.d_sae)
        pre = self.pre_acts(x)
        return F.relu(pre) * (pre > self.threshold)

    @torch.no_grad()
    def _after_select(self, values, active) -> None:
        smallest = (values[active].min().float() if bool(active.any())
                    else values.new_full((), float("inf"), dtype=torch.float32))
        if self.world_size > 1:
            from mistudio.sae.distributed import all_reduce

            smallest = all_reduce(smallest.clone(), "min")
        if not bool(torch.isfinite(smallest)):
            return
        if self.threshold_seen.item() == 0:
            self.threshold.fill_(smallest)
        else:
            self.threshold.mul_(self.THRESHOLD_EMA).add_((1 - self.THRESHOLD_EMA) * smallest)
        self.threshold_seen.add_(1)


def _rectangle(z: torch.Tensor) -> torch.Tensor:
    return ((z > -0.5) & (z < 0.5)).to(z.dtype)


class _JumpReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, pre, threshold, bandwidth: float):
        ctx.save_for_backward(pre, threshold)
        ctx.bandwidth = bandwidth
        return pre * (pre > threshold)

    @staticmethod
    def backward(ctx, g):
        pre, threshold = ctx.saved_tensors
        bw = ctx.bandwidth
        grad_pre = g * (pre > threshold)
        grad_thr = -((threshold / bw) * _rectangle((pre - threshold) / bw) * g).sum(dim=0)
        return grad_pre, grad_thr, None


class _Step(torch.autograd.Function):
    """Heaviside step H(pre - threshold); straight-through gradient to the threshold only."""

    @staticmethod
    def forward(ctx, pre, threshold, bandwidth: float):
        ctx.save_for_backward(pre, threshold)
        ctx.bandwidth = bandwidth
        return (pre > threshold).to(pre.dtype)

    @staticmethod
    def backward(ctx, g):
        pre, threshold = ctx.saved_tensors
        bw = ctx.bandwidth
        grad_thr = -((1.0 / bw) * _rectangle((pre - threshold) / bw) * g).sum(dim=0)
        return None, grad_thr, None


class JumpReLUSAE(SparseAutoencoder):
    architecture = "jumprelu"
    unit_norm_decoder = True

    def _init_threshold(self, value, device) -> None:
        self.threshold = nn.Parameter(torch.full((self.d_sae,), value, device=device))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.pre_acts(x)
        return F.relu(pre) * (pre > self.threshold)

    def training_step(self, x, y, *, sparsity_scale=1.0, dead_mask=None, matmul_dtype=None):
        limit = self._sparse_density_limit(x, matmul_dtype)
        if limit is not None:
            return self._training_step_cpu(x, y, sparsity_scale, limit)
        with _autocast(x, matmul_dtype):
            pre = self.pre_acts(x)
        pre = pre.float()
        threshold = self.threshold.float()
        # pre * H(pre - theta) equals relu(pre) * H(...) since theta >= 0; feeding relu(pre)
        # would put every negative pre-activation inside the STE kernel when theta < bw/2.
        acts = _JumpReLU.apply(pre, threshold, self.bandwidth)
        with _autocast(x, matmul_dtype):
            recon = acts @ self.W_dec + self.b_dec + self._skip(x)
        recon = recon.float()
        mse = _mse(recon, y)
        l0_ste = _Step.apply(pre, threshold, self.bandwidth).sum(dim=-1).mean()
        sparsity = self.l0_coefficient * sparsity_scale * l0_ste
        with torch.no_grad():
            active = acts > 0
        zero = mse.new_zeros(())
        return StepOutput(loss=mse + sparsity, recon=recon.detach(), mse=mse.detach(),
                          sparsity_loss=sparsity.detach(), aux_loss=zero,
                          l0=active.sum(dim=-1).float().mean(),
                          l1=acts.detach().sum(dim=-1).mean(), fired=active.sum(dim=0).float())

    def _training_step_cpu(self, x, y, sparsity_scale, max_density) -> StepOutput:
        """The same loss and straight-through gradients through :func:`jumprelu_encode`:
        sparse kernels when few entries are active or near the threshold, else dense."""
        B = x.shape[0]
        values, probe, l0_ste, pattern, band = jumprelu_encode(
            x, self.b_dec if self.apply_b_dec_to_input else None, self.W_enc_t, self.b_enc,
            self.threshold, self.bandwidth, max_density=max_density)
        if pattern is None:
            recon = values @ self.W_dec + self.b_dec + self._skip(x)
            with torch.no_grad():
                fired = (values > 0).sum(dim=0).float()
        else:
            recon = (relu_sparse_decode(values, self.W_dec, pattern, probe, band) + self.b_dec
                     + self._skip(x))
            with torch.no_grad():  # fired = acts > 0, as in the dense step
                fired = torch.zeros(self.d_sae, device=x.device).index_add_(
                    0, pattern.latents, (values > 0).float())
        mse = _mse(recon, y)
        sparsity = self.l0_coefficient * sparsity_scale * l0_ste
        return StepOutput(loss=mse + sparsity, recon=recon.detach(), mse=mse.detach(),
                          sparsity_loss=sparsity.detach(), aux_loss=mse.new_zeros(()),
                          l0=fired.sum() / B, l1=values.detach().sum() / B, fired=fired)

    @torch.no_grad()
    def after_step(self) -> None:
        super().after_step()
        self.threshold.clamp_(min=0.0)

    def hyperparameters(self) -> dict:
        return {"l0_coefficient": self.l0_coefficient, "jumprelu_bandwidth": self.bandwidth}


# after the classes it builds on: the Matryoshka module imports them from here
from mistudio.sae.matryoshka import MatryoshkaBatchTopKSAE  # noqa: E402

SAE_CLASSES: dict[str, type[SparseAutoencoder]] = {
    "relu": ReluSAE, "topk": TopKSAE, "batchtopk": BatchTopKSAE, "jumprelu": JumpReLUSAE,
    "matryoshka_batchtopk": MatryoshkaBatchTopKSAE,
}


def build_sae(member, d_in: int, d_out: int | None = None, device=None) -> SparseAutoencoder:
    """An SAE for one :class:`~mistudio.sae.config.TrainingConfig` member."""
    cls = SAE_CLASSES[member.architecture]
    extra = ({"widths": member.matryoshka_widths,
              "use_matryoshka_aux_loss": member.use_matryoshka_aux_loss}
             if cls is MatryoshkaBatchTopKSAE else {})
    return cls(d_in, member.resolved_d_sae(d_in), d_out=d_out if member.is_transcoder else None,
               skip=member.kind == "skip_transcoder", transcoder=member.is_transcoder,
               k=member.k, aux_k=member.resolved_aux_k(d_in),
               aux_k_coefficient=member.aux_k_coefficient, l1_coefficient=member.l1_coefficient,
               l0_coefficient=member.l0_coefficient, bandwidth=member.jumprelu_bandwidth,
               init_threshold=member.jumprelu_init_threshold, seed=member.resolved_init_seed,
               device=device, **extra)
