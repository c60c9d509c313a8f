"""Synthetic activations with known sparse ground truth (tests, benchmarks, demos).

``x = sum_i c_i d_i + noise`` with ``n_features`` random unit directions ``d_i``; each
feature fires independently with a probability drawn log-uniformly (a few common, many
rare, like real features), with exponential magnitudes. A good SAE recovers the ``d_i``
as decoder rows.
"""

from __future__ import annotations

import numpy as np
import torch

DATA_SEED_SALT = 0x5EED_DA7A


def sparse_features(n_rows: int, d_in: int, n_features: int, *, seed: int = 0,
                    p_min: float = 0.002, p_max: float = 0.05, noise: float = 0.01,
                    mean_shift: float = 0.0, chunk: int = 65_536
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(activations [n_rows, d_in] float32, directions [n_features, d_in])``."""
    # Salted: SAEs initialise their decoder rows with torch.randn from a generator seeded
    # with their small init seed; unsalted, seed 0 here would hand them the true directions.
    gen = torch.Generator().manual_seed(DATA_SEED_SALT + seed)
    dirs = torch.randn(n_features, d_in, generator=gen)
    dirs /= dirs.norm(dim=1, keepdim=True)
    rng = np.random.default_rng([DATA_SEED_SALT, seed])
    probs = torch.from_numpy(np.exp(rng.uniform(np.log(p_min), np.log(p_max), n_features))).float()
    shift = torch.randn(d_in, generator=gen) * mean_shift
    out = torch.empty(n_rows, d_in)
    for start in range(0, n_rows, chunk):
        n = min(chunk, n_rows - start)
        fire = torch.rand(n, n_features, generator=gen) < probs
        mags = -torch.log(torch.rand(n, n_features, generator=gen).clamp_min(1e-12)) + 0.5
        coeffs = fire * mags
        out[start:start + n] = coeffs @ dirs + noise * torch.randn(n, d_in, generator=gen) + shift
    return out, dirs


def recovered_fraction(decoder_rows: torch.Tensor, directions: torch.Tensor,
                       threshold: float = 0.9) -> tuple[float, torch.Tensor]:
    """Fraction of true directions whose best-matching decoder row has cosine > threshold."""
    dec = decoder_rows / decoder_rows.norm(dim=1, keepdim=True).clamp_min(1e-12)
    best = (directions @ dec.t()).max(dim=1).values
    return float((best > threshold).float().mean()), best
