"""The steering hook: edits the residual at an SAE's hook point, per batch row and position.

Each batch row has a :class:`RowPlan` (None: the row runs unsteered, e.g. the baseline). A
plan is an additive vector (the sum of every ``add``/``vector`` intervention, in activation
units already) and a set of clamps ``{feature: target activation}``. Clamps are computed
with the error term kept: ``x += (target - f(x)) @ W_dec[clamped]``, which equals
``decode(f') + (x - decode(f))`` for the linear decoder, and needs only the clamped latents
(for ReLU/JumpReLU/BatchTopK a few encoder columns; TopK needs every pre-activation to know
whether a latent is among the top k).

Positions: the engine sets :attr:`SteeringHook.offset` to the absolute position of the first
token of each forward pass (0 for a full pass, the cache length when decoding with the KV
cache), so the scope (``prompt``: positions < prompt length, ``generated``: positions >= it,
``all``) means the same with and without the cache.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import torch

from mistudio.models.hooks import HookTarget, get_module, input_tensor


@dataclass
class RowPlan:
    add: torch.Tensor | None = None               # [d] summed additive direction
    clamps: dict[int, float] = field(default_factory=dict)
    features: list[int] = field(default_factory=list)  # every feature intervened on (metrics)

    @property
    def empty(self) -> bool:
        return self.add is None and not self.clamps


class LatentReader:
    """Reads chosen SAE latents exactly as the SAE's ``encode`` would."""

    def __init__(self, sae, features: list[int], dtype, device):
        from mistudio.sae.architectures import BatchTopKSAE, JumpReLUSAE, TopKSAE

        self.features = torch.tensor(features, dtype=torch.long, device=device)
        self.b_dec = (sae.b_dec.detach().to(device, dtype) if sae.apply_b_dec_to_input
                      else None)
        self.full = isinstance(sae, TopKSAE) and not isinstance(sae, BatchTopKSAE)
        self.screen = None
        if self.full:
            self.k = int(sae.k)
            self.W = sae.W_enc_t.detach().to(device, dtype)             # [d_sae, d]
            self.b = sae.b_enc.detach().to(device, dtype)
            if torch.device(device).type == "cpu" and dtype == torch.float32:
                self.screen = HalfScreen.build(self.W, self.b)
        else:
            self.W = sae.W_enc_t.detach()[self.features].to(device, dtype)  # [K, d]
            self.b = sae.b_enc.detach()[self.features].to(device, dtype)
        self.threshold = None
        if isinstance(sae, (JumpReLUSAE, BatchTopKSAE)):
            self.threshold = sae.threshold.detach().expand(sae.d_sae)[self.features].to(
                device, dtype)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Latents ``[..., K]`` of the chosen features."""
        xin = x - self.b_dec if self.b_dec is not None else x
        if self.full:
            if self.screen is not None:
                got = self.screen.latents(xin, self.k, self.features)
                if got is not None:
                    return got
            pre = torch.nn.functional.linear(xin, self.W, self.b)
            kth = pre.topk(self.k, dim=-1).values[..., -1:]
            chosen = pre[..., self.features]
            return torch.relu(chosen) * (chosen >= kth)
        pre = torch.nn.functional.linear(xin, self.W, self.b)
        acts = torch.relu(pre)
        if self.threshold is not None:
            acts = acts * (pre > self.threshold)
        return acts


class HalfScreen:
    """The exact k-th largest pre-activation of a TopK SAE at a quarter of the memory reads.

    The full fp32 encoder product is the cost of clamping a TopK SAE's latent (a GEMV over
    d_sae x d_in floats per token; 56 MB at 24,576 x 576). Here the product runs in float16
    (4x faster on this CPU), each pre-activation with an error bound
    ``E_j = MARGIN * ||x|| * ||W_j||`` (10x the worst float16 rounding of both operands with a
    float32 accumulator; checked on random inputs when built, else not used). Every latent of
    the true top k has ``approx_j + E_j`` >= the k-th largest ``approx_j - E_j``, so the true
    top k is among those candidates; their exact float32 pre-activations decide the top k and
    give the clamped latents. None (the caller computes everything) when float16 would
    overflow.
    """

    MARGIN = 1e-2

    def __init__(self, W, b):
        self.W, self.b = W, b
        self.W_half = W.half()
        self.row_norms = W.norm(dim=1)

    @classmethod
    def build(cls, W, b) -> "HalfScreen | None":
        screen = cls(W, b)
        g = torch.Generator().manual_seed(0)
        x = torch.randn(8, W.shape[1], generator=g) * 10
        exact = torch.nn.functional.linear(x, W)
        approx = torch.nn.functional.linear(x.half(), screen.W_half).float()
        bound = screen.MARGIN * x.norm(dim=1, keepdim=True) * screen.row_norms
        if not bool(((approx - exact).abs() <= 0.25 * bound).all()):
            return None  # this float16 kernel is less accurate than assumed
        return screen

    def latents(self, xin: torch.Tensor, k: int, features: torch.Tensor):
        """TopK latents ``[..., K]`` of ``features``, or None when float16 cannot be used."""
        flat = xin.reshape(-1, xin.shape[-1])
        if flat.shape[0] == 0 or bool(flat.abs().max() > 6e4):
            return None
        approx = torch.nn.functional.linear(flat.half(), self.W_half).float() + self.b
        if not bool(torch.isfinite(approx).all()):
            return None
        err = self.MARGIN * flat.norm(dim=1, keepdim=True) * self.row_norms
        floor = (approx - err).topk(k, dim=-1).values[:, -1:]
        out = torch.zeros(flat.shape[0], len(features), dtype=flat.dtype, device=flat.device)
        for r in range(flat.shape[0]):
            cand = ((approx[r] + err[r]) >= floor[r]).nonzero().squeeze(-1)
            exact = torch.nn.functional.linear(flat[r], self.W[cand], self.b[cand])
            kth = exact.topk(k).values[-1]
            # a feature outside the candidates is not in the top k: its latent is 0
            where = (cand[:, None] == features[None, :])
            has = where.any(0)
            vals = (exact[:, None] * where).sum(0)
            out[r] = torch.where(has, torch.relu(vals) * (vals >= kth), torch.zeros_like(vals))
        return out.reshape(*xin.shape[:-1], len(features))


def in_scope(scope: str, start: int, length: int, prompt_len: int, device) -> torch.Tensor:
    pos = torch.arange(start, start + length, device=device)
    if scope == "prompt":
        return pos < prompt_len
    if scope == "generated":
        return pos >= prompt_len
    return torch.ones(length, dtype=torch.bool, device=device)


class SteeringHook:
    """Edits the hook point's tensor for the rows that have a plan. Use as a context
    manager (``with hook.attached(model): ...``)."""

    def __init__(self, target: HookTarget, plans: list[RowPlan | None], *, sae=None,
                 scope: str = "all", prompt_len: int = 0, dtype=torch.float32, device="cpu"):
        self.target = target
        self.scope = scope
        self.prompt_len = int(prompt_len)
        self.offset = 0
        self.captured: torch.Tensor | None = None  # the input of the last pass, when asked
        self.capture = False
        self.n_rows = len(plans)
        steered = [i for i, p in enumerate(plans) if p is not None and not p.empty]
        self.rows = torch.tensor(steered, dtype=torch.long, device=device)
        self.enabled = bool(steered)
        d = None
        adds = []
        for i in steered:
            a = plans[i].add
            adds.append(a)
            if a is not None:
                d = a.shape[-1]
        if sae is not None:
            d = sae.d_out
        self.add = None
        if any(a is not None for a in adds):
            self.add = torch.stack([a.to(device, dtype) if a is not None
                                    else torch.zeros(d, device=device, dtype=dtype)
                                    for a in adds])                       # [R, d]
        features = sorted({f for i in steered for f in plans[i].clamps})
        self.reader = None
        if features:
            if sae is None:
                raise ValueError("clamping needs the SAE")
            self.reader = LatentReader(sae, features, dtype, device)
            self.W_dec = sae.W_dec.detach()[features].to(device, dtype)   # [K, d]
            nan = float("nan")
            self.targets = torch.tensor([[plans[i].clamps.get(f, nan) for f in features]
                                         for i in steered], device=device, dtype=dtype)
            self.clamped = ~torch.isnan(self.targets)                     # [R, K]
            self.targets = torch.nan_to_num(self.targets)

    # ------------------------------------------------------------------ the edit

    def delta(self, xs: torch.Tensor) -> torch.Tensor:
        """What to add to ``xs [R, t, d]`` (the steered rows' in-scope positions)."""
        out = torch.zeros_like(xs) if self.add is None else self.add[:, None, :].expand_as(xs)
        if self.reader is not None:
            f = self.reader(xs)                                            # [R, t, K]
            change = torch.where(self.clamped[:, None, :], self.targets[:, None, :] - f,
                                 torch.zeros_like(f))
            out = out + change @ self.W_dec
        return out

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        if self.capture:
            self.captured = x.detach().clone()
        if not self.enabled:
            return x
        batch, length = x.shape[0], x.shape[1]
        mask = in_scope(self.scope, self.offset, length, self.prompt_len, x.device)
        if not bool(mask.any()):
            return x
        rows = self.rows
        if batch != self.n_rows:  # a shared prefill (batch 1) never reaches here unsteered
            raise RuntimeError(f"steering hook built for {self.n_rows} rows got {batch}")
        cols = mask.nonzero().squeeze(-1)
        xs = x[rows][:, cols]
        out = x.clone()
        out[rows[:, None], cols[None, :]] = xs + self.delta(xs)
        return out

    # ------------------------------------------------------------------ attaching

    @contextlib.contextmanager
    def attached(self, model):
        module = get_module(model, self.target.module_path)
        if self.target.io == "output":
            def hook(_m, _args, output):
                if isinstance(output, (tuple, list)):
                    return (self.apply(output[0]), *output[1:])
                return self.apply(output)

            handle = module.register_forward_hook(hook)
        else:
            def pre_hook(_m, args, kwargs):
                x = input_tensor(args, kwargs)
                new = self.apply(x)
                if new is x:
                    return None
                if args:
                    return (new, *args[1:]), kwargs
                key = next(k for k in ("hidden_states", "hidden_state", "x", "input")
                           if k in kwargs)
                return args, {**kwargs, key: new}

            handle = module.register_forward_pre_hook(pre_hook, with_kwargs=True)
        try:
            yield self
        finally:
            handle.remove()

