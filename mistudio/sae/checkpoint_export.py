"""Export an intermediate checkpoint: job ``training.export_checkpoint`` rebuilds the SAEs of a
training checkpoint with the engine's own functions (``sae.checkpoints.load_checkpoint``,
``sae.architectures.build_sae``) and writes each as a SAELens folder
(``sae.formats.save_saelens``), with the input normalisation folded in as for a finished SAE.
"""

from __future__ import annotations

from pathlib import Path

from mistudio.errors import UserError


def export_destinations(destination: Path, members: list[str]) -> dict[str, Path]:
    """Where each SAE goes: the folder itself for one SAE (if empty), else one subfolder each."""
    destination = Path(destination)
    if (destination / "cfg.json").exists():
        raise UserError(f"{destination} already exists and holds an SAE.",
                        hint="Choose an empty folder; nothing was overwritten.")
    used = destination.exists() and any(destination.iterdir())
    if len(members) == 1 and not used:
        out = {members[0]: destination}
    else:
        out = {m: destination / m for m in members}
    taken = [str(p) for p in out.values() if p.exists() and any(p.iterdir())]
    if taken:
        raise UserError(f"{', '.join(taken)} already exists and is not empty.",
                        hint="Choose an empty folder; nothing was overwritten.")
    return out


def export_checkpoint_job(params: dict, ctx) -> dict:
    """Job ``training.export_checkpoint``: every SAE of a checkpoint as a SAELens folder."""
    from mistudio.paths import check_free_space
    from mistudio.sae.architectures import build_sae
    from mistudio.sae.checkpoints import load_checkpoint
    from mistudio.sae.config import TrainingConfig
    from mistudio.sae.formats import save_saelens

    ctx.progress(0, None, "Reading the checkpoint...")
    state = load_checkpoint(params["checkpoint"])
    cfg = TrainingConfig.from_dict(state["config"])
    member_cfgs = {m.member_name: m for m in cfg.members()}
    saved = state["members"]
    dests = export_destinations(Path(params["destination"]), [m["name"] for m in saved])
    d_in, d_out = int(state["d_in"]), int(state["d_out"])
    out = []
    for i, m in enumerate(saved):
        ctx.check_cancelled()
        m_cfg = member_cfgs.get(m["name"])
        if m_cfg is None:
            raise UserError(f"The checkpoint's settings have no SAE named {m['name']!r}.",
                            hint="The checkpoint may come from another version; resume it "
                            "and export the finished SAE instead.")
        sae = build_sae(m_cfg, d_in, d_out)
        sae.load_state_dict(m["sae"])
        size = sum(t.numel() * 4 for t in sae.state_dict().values())
        check_free_space(dests[m["name"]].parent, size, what="the exported SAE")
        save_saelens(dests[m["name"]], sae, scale_in=float(state["scale_in"]),
                     scale_out=float(state["scale_out"]), model_name=params.get("model_name", ""),
                     hook_name=params.get("hook_name", ""),
                     hook_name_out=params.get("hook_name_out", ""),
                     extra_metadata={"member": m["name"], "tokens": int(state["tokens"]),
                                     "step": int(state["step"]), "intermediate_checkpoint": True,
                                     "activation_id": params.get("activation_id", "")})
        ctx.log(f"Saved SAE {m['name']} at step {int(state['step']):,} to {dests[m['name']]}.")
        out.append({"member": m["name"], "path": str(dests[m["name"]])})
        ctx.progress(i + 1, len(saved), f"Exported {i + 1}/{len(saved)}")
    return {"step": int(state["step"]), "tokens": int(state["tokens"]), "saes": out}
