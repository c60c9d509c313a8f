"""Width-scaled defaults and a rough memory/time estimate for the training form (Qt-free).

The learning rate follows Gao et al. 2024 (OpenAI TopK): ``2e-4 / sqrt(d_sae / 2**14)``,
i.e. proportional to 1/sqrt(width). The estimate counts the SAE's parameters, their
gradients and Adam's two moments (fp32, 16 bytes per parameter) plus the batch's
activations, for every SAE of a sweep; the time uses a throughput measured on this
project's machines (docs/PERFORMANCE.md) scaled by FLOPs, so it is a guide (x2 either way),
not a promise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# Effective training throughput, in FLOP/s of 6 * 2 * d_in * d_sae per token, measured:
# H200 bf16 dense step ~1.16M tok/s at 768x24576 -> ~2.6e14; fp32 about a third of that;
# 2-core CPU plain TopK ~20k tok/s at 256x4096 -> ~2.5e11, ReLU dense ~half.
_GPU_FLOPS = {"bfloat16": 2.0e14, "float16": 2.0e14, "float32": 7.0e13}
_CPU_FLOPS_PER_CORE = 6.0e10


def scaled_learning_rate(d_sae: int) -> float:
    """Gao et al. 2024: lr = 2e-4 / sqrt(d_sae / 2^14), kept within [1e-5, 3e-3]."""
    if d_sae <= 0:
        return 3e-4
    return float(min(3e-3, max(1e-5, 2e-4 / math.sqrt(d_sae / 2 ** 14))))


@dataclass
class TrainingEstimate:
    saes: int
    d_sae: int
    params: int
    weights_bytes: int
    optimizer_bytes: int
    activations_bytes: int
    total_bytes: int
    seconds: float | None
    tokens_per_s: float | None
    checkpoint_bytes: int

    def verdict(self, available_bytes: int | None) -> str:
        """'fits' / 'tight' / 'won't fit' against the memory there is (unknown: '')."""
        if not available_bytes:
            return ""
        if self.total_bytes <= 0.7 * available_bytes:
            return "fits"
        if self.total_bytes <= available_bytes:
            return "tight"
        return "won't fit"


def estimate_training(config: dict, d_in: int, *, device: str = "cpu", dtype: str = "float32",
                      cpu_cores: int = 1) -> TrainingEstimate:
    """Memory and time of a run of ``config`` (TrainingConfig field names) on ``d_in`` inputs."""
    sweep = config.get("sweep") or {}
    n_saes = 1
    for values in sweep.values():
        n_saes *= max(1, len(values))
    d_sae = int(config.get("d_sae") or 0) or int(round(float(config.get("expansion_factor", 8))
                                                      * d_in))
    widths = [d_sae]
    if "expansion_factor" in sweep:
        widths = [int(round(float(e) * d_in)) for e in sweep["expansion_factor"]]
    elif "d_sae" in sweep:
        widths = [int(w) for w in sweep["d_sae"]]
    per_width_saes = max(1, n_saes // len(widths))
    batch = int(config.get("batch_size", 4096))
    d_out = d_in
    params = sum((d_in * w + w * d_out + w + d_out + w) * per_width_saes for w in widths)
    weights = params * 4
    optimizer = params * 4 * 3  # gradient + Adam's two moments, fp32
    act_elem = 2 if dtype in ("bfloat16", "float16") and device != "cpu" else 4
    # Pre-activations, latents and their gradients per SAE, plus the input batch.
    activations = sum(batch * w * act_elem * 4 * per_width_saes for w in widths) \
        + batch * d_in * 4 * 3
    total = int((weights + optimizer + activations) * 1.15)  # allocator slack
    flops_per_token = sum(6 * 2 * d_in * w * per_width_saes for w in widths)
    if device.startswith("cuda"):
        flops = _GPU_FLOPS.get(dtype, _GPU_FLOPS["float32"])
    else:
        flops = _CPU_FLOPS_PER_CORE * max(1, cpu_cores)
    tps = flops / flops_per_token if flops_per_token else None
    total_tokens = int(config.get("total_tokens", 0))
    seconds = total_tokens / tps if tps and total_tokens else None
    return TrainingEstimate(saes=n_saes, d_sae=d_sae, params=int(params),
                            weights_bytes=int(weights), optimizer_bytes=int(optimizer),
                            activations_bytes=int(activations), total_bytes=total,
                            seconds=seconds, tokens_per_s=tps,
                            checkpoint_bytes=int(weights + optimizer * 2 // 3))
