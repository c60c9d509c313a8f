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
from mistudio.steering.topk_screen import screen_for


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
                self.screen = screen_for(sae, self.W, self.b, self.k)
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
                got = self.screen.latents(xin, self.features)
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


def scope_range(scope: str, start: int, length: int, prompt_len: int) -> tuple[int, int]:
    """The scope's positions among ``start .. start + length - 1``, as a slice ``(lo, hi)``
    of the pass (empty when ``lo >= hi``)."""
    if scope == "prompt":
        return 0, max(0, min(length, prompt_len - start))
    if scope == "generated":
        return max(0, min(length, prompt_len - start)), length
    return 0, length


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
        # steered rows that are one contiguous block (the usual case: the baseline is row 0,
        # the columns follow) are edited in place through a view, without gathering
        self.row_block = (slice(steered[0], steered[-1] + 1)
                          if steered and steered == list(range(steered[0], steered[-1] + 1))
                          else None)
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
        # The positions in scope are a contiguous range known from Python ints: slicing them
        # needs no mask, no nonzero() and no device-to-host sync (one token a step when
        # decoding with the KV cache).
        lo, hi = scope_range(self.scope, self.offset, length, self.prompt_len)
        if lo >= hi:
            return x
        if batch != self.n_rows:  # a shared prefill (batch 1) never reaches here unsteered
            raise RuntimeError(f"steering hook built for {self.n_rows} rows got {batch}")
        out = x.clone()
        if self.row_block is not None:
            xs = out[self.row_block, lo:hi]
            xs += self.delta(xs)
        else:
            xs = out[self.rows, lo:hi]
            out[self.rows, lo:hi] = xs + self.delta(xs)
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

