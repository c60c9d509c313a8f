"""SAE files: save in the SAELens layout; load SAELens, sparsify and Gemma Scope layouts.

Saving writes ``cfg.json`` + ``sae_weights.safetensors`` with SAELens's field names
(``W_enc [d_in, d_sae]``, ``W_dec [d_sae, d_out]``, ``b_enc``, ``b_dec``, ``threshold``,
``W_skip``) and architecture names, so ``sae_lens.SAE.load_from_disk`` reads it. The input
normalisation used in training is folded into the weights (``normalize_activations:
"none"``), so the saved SAE works on raw activations. Architecture mapping:

==============  ===================================  ======================================
ours            SAELens ``architecture`` (sae)       transcoder / skip-transcoder
==============  ===================================  ======================================
relu            ``standard``                         ``transcoder`` / ``skip_transcoder``
topk            ``topk``                             ``topk_transcoder`` (ours; not SAELens)
batchtopk       ``jumprelu`` (global threshold)      ``jumprelu_transcoder`` / ``..._skip_..``
matryoshka_     ``jumprelu`` (global threshold)      ``jumprelu_transcoder`` / ``..._skip_..``
batchtopk
jumprelu        ``jumprelu``                         ``jumprelu_transcoder`` / ``..._skip_..``
==============  ===================================  ======================================

``cfg["metadata"]["mistudio"]`` records our architecture and training settings. BatchTopK and
Matryoshka BatchTopK also carry SAELens's ``metadata.training_architecture`` and
``training_architecture_details`` (what ``save_inference_model`` writes for them).

Loading (:func:`load_sae`) recognises a folder with SAELens files, a sparsify folder
(``cfg.json`` + ``sae.safetensors`` with ``encoder.weight``), or a Gemma Scope
``params.npz``; :func:`download_sae` fetches a folder from the Hugging Face Hub first.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from mistudio.errors import UserError
from mistudio.manifest import write_manifest
from mistudio.paths import atomic_dir, atomic_write_json, settled_dir
from mistudio.reliability import crash_point
from mistudio.sae.architectures import (BatchTopKSAE, JumpReLUSAE, MatryoshkaBatchTopKSAE,
                                        ReluSAE, SparseAutoencoder, TopKSAE)

CFG_FILE = "cfg.json"
WEIGHTS_FILE = "sae_weights.safetensors"
SPARSITY_FILE = "sparsity.safetensors"


def saelens_architecture(sae: SparseAutoencoder) -> str:
    skip = sae.W_skip is not None
    if isinstance(sae, (JumpReLUSAE, BatchTopKSAE)):
        base = "jumprelu"
    elif isinstance(sae, TopKSAE):
        base = "topk"
    else:
        base = "standard"
    if not sae.transcoder:
        return base
    if base == "standard":
        return "skip_transcoder" if skip else "transcoder"
    return f"{base}_skip_transcoder" if skip else f"{base}_transcoder"


def saelens_training_details(sae: BatchTopKSAE) -> dict:
    """SAELens's ``training_architecture`` metadata of an SAE saved for inference: the
    training config's fields the JumpReLU inference config lacks, with our values."""
    details = {"decoder_init_norm": 1.0, "k": sae.k, "use_sparse_activations": True,
               "aux_loss_coefficient": sae.aux_k_coefficient,
               "rescale_acts_by_decoder_norm": False,
               "topk_threshold_lr": round(1 - BatchTopKSAE.THRESHOLD_EMA, 10)}
    if isinstance(sae, MatryoshkaBatchTopKSAE):
        details.update(matryoshka_widths=list(sae.widths),
                       use_matryoshka_aux_loss=bool(sae.use_matryoshka_aux_loss))
    return {"training_architecture": sae.architecture,
            "training_architecture_details": details}


@torch.no_grad()
def folded_state(sae: SparseAutoencoder, scale_in: float = 1.0,
                 scale_out: float | None = None) -> dict[str, torch.Tensor]:
    """SAELens tensors with the input/output scaling folded in (raw-activation units).

    Trained on ``x' = s_in x`` (and ``y' = s_out y``): ``W_enc <- s_in W_enc``,
    ``W_dec <- W_dec / s_out``, ``b_dec <- b_dec / s_out`` (for an SAE ``s_out = s_in``, so
    ``x - b_dec`` keeps working), ``W_skip <- W_skip s_in / s_out``. Latent activations,
    hence thresholds, are unchanged.
    """
    s_in = float(scale_in)
    s_out = float(scale_in if scale_out is None else scale_out)
    out = {
        "W_enc": (sae.W_enc_t.detach().float().t() * s_in).contiguous().cpu(),
        "b_enc": sae.b_enc.detach().float().cpu().clone(),
        "W_dec": (sae.W_dec.detach().float() / s_out).contiguous().cpu(),
        "b_dec": (sae.b_dec.detach().float() / s_out).cpu(),
    }
    if isinstance(sae, BatchTopKSAE):
        out["threshold"] = sae.threshold.detach().float().expand(sae.d_sae).contiguous().cpu()
    elif isinstance(sae, JumpReLUSAE):
        out["threshold"] = sae.threshold.detach().float().cpu().clone()
    if sae.W_skip is not None:
        out["W_skip"] = (sae.W_skip.detach().float() * (s_in / s_out)).contiguous().cpu()
    return out


def save_saelens(folder: str | Path, sae: SparseAutoencoder, *, scale_in: float = 1.0,
                 scale_out: float | None = None, model_name: str = "", hook_name: str = "",
                 hook_name_out: str = "", extra_metadata: dict | None = None,
                 log_feature_sparsity: torch.Tensor | None = None) -> Path:
    """Write the SAE into ``folder`` atomically (the folder appears complete or not at all)."""
    from safetensors.torch import save_file

    tensors = folded_state(sae, scale_in, scale_out)
    cfg = {
        "architecture": saelens_architecture(sae),
        "d_in": sae.d_in, "d_sae": sae.d_sae, "dtype": "float32", "device": "cpu",
        "apply_b_dec_to_input": bool(sae.apply_b_dec_to_input),
        "normalize_activations": "none", "reshape_activations": "none",
        "metadata": {
            "model_name": model_name or None, "hook_name": hook_name or None,
            "hook_name_out": hook_name_out or None,
            "mistudio": {"architecture": sae.architecture, "transcoder": sae.transcoder,
                         "skip": sae.W_skip is not None, **sae.hyperparameters(),
                         **(extra_metadata or {})},
        },
    }
    if isinstance(sae, BatchTopKSAE):
        cfg["metadata"].update(saelens_training_details(sae))
    if isinstance(sae, TopKSAE) and not isinstance(sae, BatchTopKSAE):
        cfg["k"] = sae.k
        cfg["rescale_acts_by_decoder_norm"] = False
    if sae.transcoder:
        cfg["d_out"] = sae.d_out
    folder = Path(folder)
    with atomic_dir(folder) as tmp:
        save_file(tensors, str(tmp / WEIGHTS_FILE))
        if log_feature_sparsity is not None:
            save_file({"sparsity": log_feature_sparsity.float().contiguous().cpu()},
                      str(tmp / SPARSITY_FILE))
        atomic_write_json(tmp / CFG_FILE, cfg)
        write_manifest(tmp)  # other tools ignore it; the kill harness verifies it
        crash_point("train.sae.rename")
    return folder


# ---------------------------------------------------------------------- loading


def detect_format(folder: str | Path) -> str:
    folder = settled_dir(folder)  # a re-save (resumed training, export) killed mid-swap
    if (folder / WEIGHTS_FILE).exists() and (folder / CFG_FILE).exists():
        return "saelens"
    if (folder / "sae.safetensors").exists() and (folder / CFG_FILE).exists():
        return "sparsify"
    if (folder / "params.npz").exists():
        return "gemma_scope"
    raise UserError(
        f"No SAE found in {folder}.",
        hint="Expected SAELens files (cfg.json + sae_weights.safetensors), a sparsify folder "
             "(cfg.json + sae.safetensors) or a Gemma Scope params.npz.")


def load_sae(folder: str | Path, device="cpu") -> tuple[SparseAutoencoder, dict]:
    """Load any supported layout. Returns ``(sae, info)`` where info has ``format``,
    ``model_name``, ``hook_name`` and the original config."""
    folder = Path(folder)
    fmt = detect_format(folder)
    loader = {"saelens": _load_saelens, "sparsify": _load_sparsify,
              "gemma_scope": _load_gemma_scope}[fmt]
    import zipfile

    from safetensors import SafetensorError

    try:
        sae, info = loader(folder)
    except UserError:
        raise
    except (KeyError, ValueError, RuntimeError, OSError, TypeError, SafetensorError,
            zipfile.BadZipFile) as exc:  # truncated, damaged or foreign files
        raise UserError(f"The SAE in {folder} ({fmt} layout) cannot be read: {exc}.",
                        hint="The files may be damaged or incompletely copied (download or "
                             "copy them again), or from an unsupported version.") from exc
    info["format"] = fmt
    sae.eval()
    return sae.to(device), info


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise UserError(f"{path} is not UTF-8 text, so it is not an SAE's settings file.",
                        hint="Copy the SAE's files again.") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"{path} is not valid JSON (line {exc.lineno}: {exc.msg}).",
                        hint="Copy the SAE's files again.") from None
    if not isinstance(data, dict):
        raise UserError(f"{path} must hold a JSON object of the SAE's settings, not a "
                        f"{type(data).__name__}.", hint="Copy the SAE's files again.")
    return data


def _cfg_int(cfg: dict, key: str, path: Path, default=None) -> int:
    """A positive whole number from cfg.json, or an error naming the key and the file."""
    value = cfg.get(key, default)
    try:
        number = int(value)
        ok = not isinstance(value, bool) and number == float(value) and number >= 1
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise UserError(f"{path}: {key!r} must be a whole number of at least 1, not {value!r}.",
                        hint="Fix that value, or copy the SAE's files again.")
    return number


#: Tensors SAELens writes besides the four every SAE has (skip transcoders, JumpReLU,
#: older versions' input scaling); anything else means the file is not what cfg.json says.
SAELENS_EXTRA_TENSORS = {"W_skip", "threshold", "log_threshold", "scaling_factor"}


def _check_saelens_tensors(tensors: dict, path: Path, d_in: int, d_sae: int, d_out: int) -> None:
    shapes = {"W_enc": (d_in, d_sae), "b_enc": (d_sae,), "W_dec": (d_sae, d_out),
              "b_dec": (d_out,)}
    missing = [n for n in shapes if n not in tensors]
    if missing:
        raise UserError(f"{path} has no tensor {missing[0]!r} (an SAE needs "
                        f"{', '.join(shapes)}).",
                        hint="The file is incomplete or not an SAE's weights; copy it again.")
    unknown = sorted(set(tensors) - set(shapes) - SAELENS_EXTRA_TENSORS)
    if unknown:
        raise UserError(f"{path} holds tensor(s) an SAE of this kind does not have: "
                        f"{', '.join(map(repr, unknown))}.",
                        hint="The weights do not match cfg.json's architecture; copy both "
                             "files of the same SAE again.")
    for name, want in shapes.items():
        got = tuple(tensors[name].shape)
        if got != want:
            raise UserError(f"{path}: {name!r} has shape {list(got)}, but cfg.json (d_in "
                            f"{d_in}, d_sae {d_sae}) means {list(want)}.",
                            hint="The weights and cfg.json belong to different SAEs; copy "
                                 "both files of the same SAE again.")


def _check_finite(tensors: dict, where: str) -> None:
    for name, t in tensors.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise UserError(f"{where}: tensor {name!r} holds NaN or infinite values.",
                            hint="The SAE is broken (a diverged training or a damaged file); "
                                 "use another checkpoint or copy it again.")


def _new(cls, d_in, d_sae, *, d_out=None, skip=False, transcoder=False, **kw) -> SparseAutoencoder:
    return cls(d_in, d_sae, d_out=d_out, skip=skip, transcoder=transcoder, **kw)


@torch.no_grad()
def _assign(sae: SparseAutoencoder, tensors: dict[str, torch.Tensor]) -> None:
    sae.W_enc_t.copy_(tensors["W_enc"].float().t())
    sae.b_enc.copy_(tensors["b_enc"].float())
    sae.W_dec.copy_(tensors["W_dec"].float())
    sae.b_dec.copy_(tensors["b_dec"].float())
    if sae.W_skip is not None:
        sae.W_skip.copy_(tensors["W_skip"].float())
    if isinstance(sae, BatchTopKSAE):
        sae.threshold.fill_(float(tensors["threshold"].float().mean()))
        sae.threshold_seen.fill_(1)
    elif isinstance(sae, JumpReLUSAE):
        sae.threshold.copy_(tensors["threshold"].float())


def _load_saelens(folder: Path):
    from safetensors.torch import load_file

    cfg = _read_json(folder / CFG_FILE)
    tensors = load_file(str(folder / WEIGHTS_FILE))
    arch = cfg.get("architecture", "standard")
    meta = cfg.get("metadata") or {}
    ours = meta.get("mistudio") or {}
    cfg_path = folder / CFG_FILE
    d_in, d_sae = _cfg_int(cfg, "d_in", cfg_path), _cfg_int(cfg, "d_sae", cfg_path)
    d_out = _cfg_int(cfg, "d_out", cfg_path) if cfg.get("d_out") else d_in
    if not isinstance(arch, str):
        raise UserError(f"{cfg_path}: 'architecture' must be a name such as 'topk', not "
                        f"{arch!r}.", hint="Fix that value, or copy the SAE's files again.")
    base = arch.replace("_skip_transcoder", "").replace("_transcoder", "")
    transcoder = "transcoder" in arch
    skip = "skip_transcoder" in arch
    if base in ("transcoder", "skip"):
        base = "standard"
    if ours.get("architecture") == "batchtopk":
        cls, kw = BatchTopKSAE, {"k": _cfg_int(ours, "k", cfg_path, 32)}
    elif ours.get("architecture") == "matryoshka_batchtopk":
        cls, kw = MatryoshkaBatchTopKSAE, {"k": int(ours.get("k", 32)),
                                           "widths": ours.get("matryoshka_widths") or (),
                                           "use_matryoshka_aux_loss": bool(
                                               ours.get("use_matryoshka_aux_loss", False))}
    elif base == "standard":
        cls, kw = ReluSAE, {"l1_coefficient": float(ours.get("l1_coefficient", 5.0))}
    elif base == "topk":
        cls, kw = TopKSAE, {"k": _cfg_int(cfg if "k" in cfg else ours, "k", cfg_path)}
    elif base == "jumprelu":
        cls, kw = JumpReLUSAE, {}
    else:
        raise UserError(f"SAE architecture {arch!r} is not supported yet.",
                        hint="Supported: standard, topk, jumprelu and their transcoder forms.")
    norm = cfg.get("normalize_activations", "none")
    if norm not in ("none", None):
        raise UserError(f"This SAE expects its inputs normalised with {norm!r}, which is not "
                        "folded into its weights.",
                        hint="Fold the scaling into the weights with SAELens and save it again.")
    # the weights, once the architecture is known to be one we read (a gated SAE's extra
    # tensors are "not supported", not "unknown")
    _check_saelens_tensors(tensors, folder / WEIGHTS_FILE, d_in, d_sae, d_out)
    _check_finite(tensors, str(folder / WEIGHTS_FILE))
    if cls is TopKSAE and cfg.get("rescale_acts_by_decoder_norm"):
        tensors = _fold_decoder_norm(tensors)
    sae = _new(cls, d_in, d_sae, d_out=d_out if transcoder else None, skip=skip,
               transcoder=transcoder, **kw)
    sae.apply_b_dec_to_input = bool(cfg.get("apply_b_dec_to_input", not transcoder))
    _assign(sae, tensors)
    return sae, {"model_name": meta.get("model_name") or cfg.get("model_name") or "",
                 "hook_name": meta.get("hook_name") or cfg.get("hook_name") or "",
                 "config": cfg}


def _fold_decoder_norm(t: dict) -> dict:
    norms = t["W_dec"].norm(dim=1)
    return {**t, "W_dec": t["W_dec"] / norms[:, None], "W_enc": t["W_enc"] * norms[None, :],
            "b_enc": t["b_enc"] * norms}


def _load_sparsify(folder: Path):
    """EleutherAI sparsify: ``encoder.weight [d_sae, d_in]``, ``W_dec``, ``b_dec``; TopK of
    ``relu(encoder(x - b_dec))`` (ReLU first, the same result for positive selections)."""
    from safetensors.torch import load_file

    cfg = _read_json(folder / CFG_FILE)
    t = load_file(str(folder / "sae.safetensors"))
    w = t["encoder.weight"]
    d_sae, d_in = w.shape
    w_dec = t["W_dec"]
    k = int(cfg.get("k", 32))
    skip = "W_skip" in t
    transcoder = bool(cfg.get("transcode")) or skip
    sae = TopKSAE(int(d_in), int(d_sae), d_out=int(w_dec.shape[1]), skip=skip,
                  transcoder=transcoder, k=k)
    # sparsify subtracts b_dec from the input only for plain SAEs
    sae.apply_b_dec_to_input = not transcoder
    tensors = {"W_enc": w.t(), "b_enc": t["encoder.bias"], "W_dec": w_dec, "b_dec": t["b_dec"]}
    if skip:
        tensors["W_skip"] = t["W_skip"]
    _check_finite(tensors, str(folder / "sae.safetensors"))
    _assign(sae, tensors)
    return sae, {"model_name": cfg.get("model", "") or "", "hook_name": folder.name,
                 "config": cfg}


def _load_gemma_scope(folder: Path):
    """Gemma Scope ``params.npz``: JumpReLU, no ``b_dec`` subtraction from the input."""
    with np.load(folder / "params.npz") as z:
        t = {k: torch.from_numpy(np.asarray(z[k], dtype=np.float32)) for k in z.files}
    d_in, d_sae = t["W_enc"].shape
    d_out = int(t["W_dec"].shape[1])
    sae = JumpReLUSAE(int(d_in), int(d_sae), d_out=d_out if d_out != d_in else None)
    sae.apply_b_dec_to_input = False
    _check_finite(t, str(folder / "params.npz"))
    _assign(sae, t)
    return sae, {"model_name": "", "hook_name": "", "config": {}}


def download_sae(repo_id: str, subfolder: str = "", *, cache_dir: str | Path,
                 token: str | None = None, revision: str | None = None,
                 endpoint: str | None = None, tqdm_class=None) -> Path:
    """Fetch an SAE folder (or its ``subfolder``) from the Hugging Face Hub; returns it.

    Files land in the Hub cache layout under ``cache_dir``: a broken download leaves its
    ``.incomplete`` blob there and the next call resumes it with a range request."""
    from huggingface_hub import snapshot_download

    patterns = [f"{subfolder.strip('/')}/*"] if subfolder else None
    root = snapshot_download(repo_id, allow_patterns=patterns, cache_dir=str(cache_dir),
                             token=token, revision=revision, endpoint=endpoint,
                             tqdm_class=tqdm_class)
    folder = Path(root) / subfolder if subfolder else Path(root)
    if not folder.is_dir():
        raise UserError(f"{repo_id} has no folder {subfolder!r}.",
                        hint="Check the SAE's path inside the repository.")
    return folder
