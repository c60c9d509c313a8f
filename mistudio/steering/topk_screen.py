"""Exact TopK latents of a few chosen features without a float32 pass over the whole encoder.

Clamping a TopK SAE's latent needs to know whether it is among the k largest pre-activations,
which depends on every other latent: a float32 product with the whole encoder per token
(56 MB at d_sae 24,576 x d_in 576, ~5 % of SmolLM2-135M's weights read per decoding step).
Here that product runs on a cheap copy of the encoder instead, each approximate
pre-activation with a bound on its error:

- ``int8``: each encoder row quantised to int8 with its own scale (a quarter of the bytes;
  ``torch._weight_int8pack_mm``, bfloat16 activations). The bound is computed, not assumed:
  ``||x|| * ||W_j - s_j q_j||`` (the weight rounding, its norm kept per row) +
  ``||x - bf16(x)|| * ||s_j q_j||`` (the activation rounding) + the kernel's float32
  accumulation and bfloat16 output rounding.
- ``float16`` (where the int8 kernel is missing): half the bytes, bound
  ``MARGIN * ||x|| * ||W_j||`` (10x the worst float16 rounding of both operands).

Either way the build checks the bound on random inputs (with room to spare) and the screen is
not used if it fails. Every latent of the true top k has ``approx_j + E_j`` >= the k-th largest
``approx_j - E_j``: those candidates (a few hundred; their union over the rows, plus the chosen
features) get exact float32 pre-activations, which decide the top k exactly.
"""

from __future__ import annotations

import weakref

import torch
import torch.nn.functional as F

#: Above this many rows a float32 GEMM (which reads the encoder once for all rows and runs
#: at full speed) costs less than the screen's product plus the candidates (prompt passes).
MAX_ROWS = 4


_BUILT: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def screen_for(sae, W: torch.Tensor, b: torch.Tensor, k: int) -> "TopKScreen | None":
    """The screen of ``sae``'s encoder, built once per SAE (quantising 24,576 rows takes a
    fraction of a second; a comparison builds a new hook every time) and rebuilt when its
    weights change in place."""
    key = (sae.W_enc_t._version, sae.b_enc._version, W.dtype, W.device, int(k))
    hit = _BUILT.get(sae)
    if hit is not None and hit[0] == key:
        return hit[1]
    screen = TopKScreen.build(W, b, k)
    _BUILT[sae] = (key, screen)
    return screen


def _int8_kernel() -> bool:
    op = getattr(torch, "_weight_int8pack_mm", None)
    if op is None:
        return False
    try:
        op(torch.ones(1, 32, dtype=torch.bfloat16), torch.ones(8, 32, dtype=torch.int8),
           torch.ones(8, dtype=torch.bfloat16))
        return True
    except (RuntimeError, NotImplementedError):
        return False


class TopKScreen:
    MARGIN = 1e-2  # float16: 10x the worst rounding of both operands, relative to ||x||·||W_j||
    #: the int8 kernel's float32 accumulation over d_in terms and bfloat16 output rounding
    #: (2^-8 of the output; the accumulation a generous 1e-4 of ||x||·||W_j||)
    OUT_ROUNDING = 2.0 ** -8
    ACCUMULATION = 1e-4

    def __init__(self, W: torch.Tensor, b: torch.Tensor, k: int, kind: str):
        self.W, self.b, self.k, self.kind = W, b, int(k), kind
        # how often each path ran (benchmarks/steering_bench.py prints them)
        self.counts = {"calls": 0, "skipped": 0, "screened": 0, "resolved": 0}
        if kind == "int8":
            scale = (W.abs().amax(dim=1) / 127).clamp_min(1e-30).bfloat16()
            self.q = torch.round(W / scale.float()[:, None]).clamp(-127, 127).to(torch.int8)
            self.scale = scale
            deq = self.q.double() * scale.double()[:, None]
            # rounded up a little so the float32 copies never understate them
            qerr = (W.double() - deq).norm(dim=1) * (1 + 1e-6)
            wq = deq.norm(dim=1) * (1 + 1e-6)
            self.wq = wq.float()
            self.qerr_acc = (qerr + self.ACCUMULATION * wq).float()
            self.max_norm = float(wq.max())
        else:
            self.W_half = W.half()
            self.margin_norms = self.MARGIN * W.norm(dim=1)
            self.max_norm = float(W.norm(dim=1).max())

    @classmethod
    def build(cls, W: torch.Tensor, b: torch.Tensor, k: int) -> "TopKScreen | None":
        """The cheapest screen whose error bound holds on random inputs, or None."""
        if W.device.type != "cpu" or W.dtype != torch.float32 or k >= W.shape[0]:
            return None
        g = torch.Generator().manual_seed(0)
        x = torch.randn(8, W.shape[1], generator=g) * 10
        exact = F.linear(x, W, b)
        for kind in (["int8"] if _int8_kernel() else []) + ["float16"]:
            screen = cls(W, b, k, kind)
            approx, err = screen.approximate(x)
            if bool(((approx - exact).abs() <= 0.5 * err).all()):
                return screen
        return None

    def approximate(self, flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Approximate pre-activations ``[R, d_sae]`` and their error bounds, or None when
        this screen cannot represent ``flat`` (non-finite values, float16 overflow)."""
        xn = flat.norm(dim=1, keepdim=True)
        # finite inputs give finite products unless |x|·|W_j| nears float32's (= bfloat16's)
        # range: one scalar check instead of a pass over the output
        norm = float(xn.max())
        if self.kind == "float16":
            if not (norm < 6e4 and norm * self.max_norm < 6e4):
                return None
        elif not norm * self.max_norm < 1e37:
            return None
        if self.kind == "int8":
            xb = flat.bfloat16()
            out = torch._weight_int8pack_mm(xb, self.q, self.scale)
            en = (flat - xb.float()).norm(dim=1, keepdim=True)
            err = torch.addcmul(xn * self.qerr_acc, en, self.wq)
            err.add_(out.abs(), alpha=self.OUT_ROUNDING)
            return torch.add(out, self.b), err
        approx = torch.add(F.linear(flat.half(), self.W_half), self.b)
        return approx, xn * self.margin_norms

    def latents(self, xin: torch.Tensor, features: torch.Tensor) -> torch.Tensor | None:
        """TopK latents ``[..., K]`` of ``features``, or None when the screen does not apply
        (the caller computes every pre-activation in float32).

        A latent is in the top k iff fewer than k pre-activations are strictly larger (what
        ``pre >= k-th largest`` means). Its own pre-activation is computed exactly (K rows of
        the encoder); if it is <= 0 the latent is 0 whatever the others are, and the screen is
        not run at all. Otherwise the bounds count the certainly-larger and the
        possibly-larger latents; only when they straddle k are the ones in between computed
        exactly (a handful, near the k-th value)."""
        flat = xin.reshape(-1, xin.shape[-1])
        if flat.shape[0] == 0 or flat.shape[0] > MAX_ROWS:
            return None
        own = F.linear(flat, self.W[features], self.b[features])          # [R, K] exact
        shape = (*xin.shape[:-1], len(features))
        self.counts["calls"] += 1
        if not bool((own > 0).any()):
            self.counts["skipped"] += 1
            return torch.zeros(shape, dtype=flat.dtype, device=flat.device)
        got = self.approximate(flat)
        if got is None:
            return None
        self.counts["screened"] += 1
        approx, err = got
        p = own[:, :, None]                                                 # [R, K, 1]
        above = (approx - err)[:, None, :] > p                              # certainly larger
        maybe = (approx + err)[:, None, :] > p                              # possibly larger
        larger = above.sum(-1)                                              # [R, K]
        unsure = (larger < self.k) & (maybe.sum(-1) >= self.k)
        if bool(unsure.any()):
            self.counts["resolved"] += 1
            between = maybe & ~above & unsure[:, :, None]
            between[:, torch.arange(len(features)), features] = False       # not itself
            cols = between.any(dim=1).any(dim=0).nonzero().squeeze(1)
            exact = F.linear(flat, self.W[cols], self.b[cols])              # [R, U]
            larger = larger + ((exact[:, None, :] > p) & between[:, :, cols]).sum(-1)
        return (torch.relu(own) * (larger < self.k)).reshape(shape)
