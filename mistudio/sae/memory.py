"""How much memory a training needs, and the check that refuses one that cannot fit.

Torch-free (the Training form asks for estimates while the user types).
"""

from __future__ import annotations

from mistudio.errors import UserError
from mistudio.sae.config import TrainingConfig


def estimate_training_memory(cfg: TrainingConfig, d_in: int, d_out: int | None = None) -> dict:
    """Rough memory needs in bytes: weights, Adam state, activations per step, total."""
    d_out = d_out or d_in
    weights = opt = acts = 0
    for m in cfg.members():
        d_sae = m.resolved_d_sae(d_in)
        n = d_sae * (d_in + d_out + 1) + d_out + (d_out * d_in if m.kind == "skip_transcoder" else 0)
        weights += 4 * n
        opt += 8 * n + 4 * n  # Adam moments + gradients
        acts = max(acts, 4 * cfg.batch_size * d_sae * (1 if m.architecture == "topk" else 3))
    batch = 4 * cfg.batch_size * (d_in + d_out) * 3  # batch + shuffle prefetch
    buffer = 2 * 262_144 * 4 * (d_in + (d_out if cfg.is_transcoder else 0))
    return {"weights": weights, "optimizer": opt, "activations": acts + batch,
            "reader_buffer": buffer, "total": weights + opt + acts + batch + buffer}


def check_training_fits(cfg: TrainingConfig, d_in: int, d_out: int | None = None) -> None:
    """Refuse (before anything is recorded) a training whose estimate exceeds the memory of
    the device it would run on: it could only fail later, while allocating."""
    from mistudio.hardware import probe_fast
    from mistudio.paths import human_bytes

    need = estimate_training_memory(cfg, d_in, d_out)["total"]
    hw = probe_fast()
    if cfg.device != "cpu" and hw.gpus and hw.gpus[0].total_bytes and not hw.jetson:
        have, where = hw.gpus[0].total_bytes, f"the GPU ({hw.gpus[0].name})"
    else:
        have, where = hw.ram_total_bytes, "this machine's memory"
    if have and need > have:
        widths = ", ".join(sorted({f"{m.resolved_d_sae(d_in):,}" for m in cfg.members()}))
        raise UserError(
            f"This training needs about {human_bytes(need)} (SAE width d_sae = {widths} on "
            f"d_in = {d_in:,}: weights, optimizer state, batches), more than {where} holds "
            f"({human_bytes(have)}).",
            hint="Use a smaller d_sae or expansion_factor (or a smaller batch_size).")
