"""Training metrics with SAELens's definitions, accumulated on the device without syncs.

Per SAE, a :class:`MemberTracker` keeps:

- window sums (since the last report) of squared error, total variance (deviation from
  each batch's mean), cosine similarity, L2 ratio, L0, L1, losses: reported every
  ``metrics_every_steps`` steps, then reset. ``explained_variance = 1 - sum err / sum var``
  (SAELens ``metrics/explained_variance``, which equals the per-batch value for one batch);
- ``tokens_since_fired`` per latent. One definition of a dead latent, SAELens's window
  definition, everywhere it is reported (the ``dead_fraction`` metric, the training card,
  ``result.json``'s ``dead_latents``, the CLI): a latent is dead when it has not fired in the
  last ``dead_window_tokens`` tokens; while fewer tokens than that have been trained, the
  window is every token so far (so a latent that never fired counts as dead in a short run
  too). AuxK (TopK/BatchTopK) revives only latents silent for the full window;
- firing counts over the report window (``dense_fraction``: latents firing on > 10% of the
  window's tokens) and over the whole run since the last checkpoint (feature density
  histogram, ``log10`` of the firing frequency as SAELens logs it).

All of it is a state dict saved in checkpoints, so a resumed run reports the same numbers.
"""

from __future__ import annotations

import math

import torch

DENSE_THRESHOLD = 0.1
DENSITY_BINS = 50
DENSITY_LOG10_MIN = -8.0


def explained_variance(y: torch.Tensor, recon: torch.Tensor) -> float:
    """SAELens's explained variance of one batch (reference definition, used by tests too)."""
    err = (recon - y).pow(2).sum(dim=-1)
    var = (y - y.mean(dim=0)).pow(2).sum(dim=-1)
    return float(1 - err.mean() / var.mean())


class MemberTracker:
    SUMS = ("err", "var", "cos", "l2_ratio", "l0", "l1", "loss", "mse", "aux_loss",
            "sparsity_loss", "steps", "tokens", "finite")

    def __init__(self, d_sae: int, device, dead_window_tokens: int,
                 extra_names: tuple[str, ...] = ()):
        self.d_sae = d_sae
        # the architecture's own per-token means (StepOutput.extra), e.g. Matryoshka's
        # prefix losses: summed like the others, in one more device tensor
        self.extra_names = tuple(extra_names)
        self.extra_sums = torch.zeros(len(self.extra_names), dtype=torch.float64, device=device)
        self.device = device
        self.dead_window_tokens = int(dead_window_tokens)
        self.sums = torch.zeros(len(self.SUMS), dtype=torch.float64, device=device)
        self.tokens_since_fired = torch.zeros(d_sae, dtype=torch.long, device=device)
        self.window_fired = torch.zeros(d_sae, dtype=torch.float64, device=device)
        self.density_fired = torch.zeros(d_sae, dtype=torch.float64, device=device)
        self.density_tokens = 0

    # ------------------------------------------------------------------ per step

    def dead_mask(self) -> torch.Tensor:
        """The latents AuxK revives: silent for the full ``dead_window_tokens``."""
        return self.tokens_since_fired >= self.dead_window_tokens

    @property
    def dead_window(self) -> int:
        """The reported window: ``dead_window_tokens``, or every token so far if fewer."""
        return max(1, min(self.dead_window_tokens, self.density_tokens or self.dead_window_tokens))

    def reported_dead_mask(self) -> torch.Tensor:
        """Dead latents as reported everywhere (see the module docstring)."""
        return self.tokens_since_fired >= self.dead_window

    @torch.no_grad()
    def update(self, out, y: torch.Tensor, fired: torch.Tensor, n_tokens: int) -> None:
        """``out``: the :class:`StepOutput`; ``fired``: per-latent firing counts (all ranks)."""
        recon = out.recon
        y = y.float()
        err = (recon - y).pow(2).sum(dim=-1)
        var = (y - y.mean(dim=0)).pow(2).sum(dim=-1)
        y_norm = y.norm(dim=-1)
        r_norm = recon.norm(dim=-1)
        cos = (recon * y).sum(dim=-1) / (y_norm * r_norm).clamp_min(1e-12)
        finite = torch.isfinite(out.loss.detach()).to(torch.float64)
        B = y.shape[0]
        vals = torch.stack([
            err.sum(), var.sum(), cos.sum(), (r_norm / y_norm.clamp_min(1e-12)).sum(),
            out.l0 * B, out.l1 * B, out.loss.detach() * B, out.mse * B, out.aux_loss * B,
            out.sparsity_loss * B, torch.ones((), device=y.device),
            torch.full((), float(B), device=y.device), finite - 1.0,
        ]).to(torch.float64)
        self.sums += vals
        if self.extra_names:
            self.extra_sums += torch.stack([out.extra[k] for k in self.extra_names]).to(
                torch.float64) * B
        self.tokens_since_fired += n_tokens
        self.tokens_since_fired.masked_fill_(fired > 0, 0)
        self.window_fired += fired
        self.density_fired += fired
        self.density_tokens += n_tokens

    def nonfinite(self) -> bool:
        """Did any step since the last report give a NaN/inf loss? (one device sync)"""
        return bool(self.sums[self.SUMS.index("finite")].item() < 0)

    # ------------------------------------------------------------------ reports

    @torch.no_grad()
    def report(self) -> dict[str, float]:
        """Metrics over the window since the last report; resets the window."""
        s = dict(zip(self.SUMS, self.sums.tolist()))
        n = max(s["tokens"], 1.0)
        window_tokens = s["tokens"]
        freq = self.window_fired / max(window_tokens, 1.0)
        out = {
            "loss": s["loss"] / n, "mse": s["mse"] / n,
            "explained_variance": 1 - s["err"] / s["var"] if s["var"] > 0 else float("nan"),
            "l0": s["l0"] / n, "l1": s["l1"] / n, "aux_loss": s["aux_loss"] / n,
            "sparsity_loss": s["sparsity_loss"] / n, "cosine_sim": s["cos"] / n,
            "l2_ratio": s["l2_ratio"] / n,
            "dead_fraction": float(self.reported_dead_mask().double().mean().item()),
            "dense_fraction": float((freq > DENSE_THRESHOLD).double().mean().item()),
        }
        for name, total in zip(self.extra_names, self.extra_sums.tolist()):
            out[name] = total / n
        self.sums.zero_()
        self.extra_sums.zero_()
        self.window_fired.zero_()
        return out

    @torch.no_grad()
    def density(self) -> dict:
        """Firing frequency per latent since the last reset, and its log10 histogram."""
        freq = (self.density_fired / max(self.density_tokens, 1)).float().cpu()
        log10 = torch.log10(freq + 1e-10)
        clipped = log10.clamp(min=DENSITY_LOG10_MIN, max=0.0)
        counts = torch.histc(clipped, bins=DENSITY_BINS, min=DENSITY_LOG10_MIN, max=0.0)
        edges = torch.linspace(DENSITY_LOG10_MIN, 0.0, DENSITY_BINS + 1)
        return {"tokens": self.density_tokens, "log10_frequency": log10,
                "histogram": {"counts": [int(c) for c in counts.tolist()],
                              "edges": [round(e, 4) for e in edges.tolist()]},
                "dead_latents": int(self.reported_dead_mask().sum().item()),
                "dead_window_tokens": self.dead_window}

    # ------------------------------------------------------------------ state

    def state_dict(self) -> dict:
        return {"sums": self.sums.cpu(), "tokens_since_fired": self.tokens_since_fired.cpu(),
                "window_fired": self.window_fired.cpu(),
                "density_fired": self.density_fired.cpu(), "density_tokens": self.density_tokens,
                "extra_sums": self.extra_sums.cpu()}

    def load_state_dict(self, state: dict) -> None:
        self.sums.copy_(state["sums"])
        self.tokens_since_fired.copy_(state["tokens_since_fired"])
        self.window_fired.copy_(state["window_fired"])
        self.density_fired.copy_(state["density_fired"])
        self.density_tokens = int(state["density_tokens"])
        if "extra_sums" in state and state["extra_sums"].numel() == self.extra_sums.numel():
            self.extra_sums.copy_(state["extra_sums"])


def lr_factor(step: int, total_steps: int, *, schedule: str, warmup_steps: int,
              decay_fraction: float, min_fraction: float) -> float:
    """Learning-rate multiplier at ``step``: linear warm-up, then constant/cosine/linear."""
    if warmup_steps and step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        span = max(1, total_steps - warmup_steps)
        t = min(1.0, (step - warmup_steps) / span)
        return min_fraction + (1 - min_fraction) * 0.5 * (1 + math.cos(math.pi * t))
    # linear: flat, then a linear decay over the last ``decay_fraction`` of the steps
    decay_steps = max(1, int(total_steps * decay_fraction))
    start = total_steps - decay_steps
    if step < start:
        return 1.0
    t = min(1.0, (step - start) / decay_steps)
    return 1.0 - (1 - min_fraction) * t


def sparsity_warmup(step: int, total_steps: int, warmup_fraction: float) -> float:
    """Sparsity coefficient multiplier: linear from 0 to 1 over the first fraction of steps."""
    steps = int(total_steps * warmup_fraction)
    if steps <= 0:
        return 1.0
    return min(1.0, (step + 1) / steps)
