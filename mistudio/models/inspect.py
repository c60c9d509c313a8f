"""What a model is, without loading its weights: architecture summary, module tree, memory.

The module tree and parameter count come from building the model on the ``meta`` device
(no memory, well under a second even for large models); sizes on disk come from the
safetensors headers.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

from mistudio.errors import UserError
from mistudio.paths import settled_dir
from mistudio.models import hooks

DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "int8": 1, "nf4": 0.5}
QUANTIZATIONS = ("none", "8bit", "4bit")
# bitsandbytes replaces the Linear (and GPT-2 Conv1D) layers; embeddings, the output
# embedding (lm_head), norms and biases stay in the load dtype.
_NOT_QUANTIZED = ("embed", "wte", "wpe", "lm_head", "shared")
# bytes per quantized weight: int8 + one float32 scale per output row (~1/64 for d >= 256);
# NF4 packs two weights a byte, + double-quantized absmax (1/64 byte) and small tables
QUANT_BYTES = {"8bit": 1.02, "4bit": 0.53}


def read_config(folder: str | Path, *, trust_remote_code: bool = False):
    from mistudio.hf import transformers_names

    AutoConfig = transformers_names("AutoConfig")

    folder = settled_dir(folder)  # a model folder re-saved (converted, quantized), killed mid-swap
    if not (folder / "config.json").exists():
        raise UserError(f"{folder} has no config.json, so it is not a Hugging Face model folder.",
                        hint="Pick the folder that holds config.json and the weights, or import "
                        "a GGUF file instead.")
    try:
        json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise UserError(f"{folder / 'config.json'} is not valid JSON ({exc}).",
                        hint="The file is damaged: download or copy the model again.") from None
    try:
        return AutoConfig.from_pretrained(folder, trust_remote_code=trust_remote_code)
    except ValueError as exc:
        if "trust_remote_code" in str(exc):
            raise UserError(
                "This model needs its own Python code from the repository (trust_remote_code).",
                hint="Only enable 'Trust remote code' for repositories you trust: it runs their "
                "code on your machine.") from exc
        raise UserError(f"Cannot read the model config in {folder}: {exc}",
                        hint="The folder may be incomplete; import or download it again."
                        ) from exc


class JsonConfig:
    """``config.json`` read as attributes, without importing transformers (~2-5 s on first
    use): the inspector's fast path for the standard fields every config.json carries."""

    def __init__(self, data: dict):
        self._data = data

    def __getattr__(self, name: str):
        try:
            return self.__dict__["_data"][name]
        except KeyError:
            raise AttributeError(name) from None

    def get_text_config(self):
        text = self._data.get("text_config")
        return JsonConfig(text) if isinstance(text, dict) else self


_CORE_KEYS = (("num_hidden_layers", "n_layer"), ("hidden_size", "n_embd", "d_model"))


def read_config_fast(folder: str | Path, *, trust_remote_code: bool = False):
    """The plain JSON when it names a known family and its core sizes; else ``read_config``."""
    folder = Path(folder)
    try:
        data = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        data = None
    if isinstance(data, dict) and not trust_remote_code and "auto_map" not in data:
        cfg = JsonConfig(data)
        text = cfg.get_text_config()
        model_type = getattr(text, "model_type", None) or ""
        known = hooks.FAMILY_ALIASES.get(model_type, model_type) in hooks.FAMILIES
        if known and all(any(k in text._data for k in keys) for keys in _CORE_KEYS):
            return cfg
    return read_config(folder, trust_remote_code=trust_remote_code)


def _text_config(cfg):
    get = getattr(cfg, "get_text_config", None)
    return get() if callable(get) else cfg


def _first(cfg, *names, default=None):
    for n in names:
        v = getattr(cfg, n, None)
        if v is not None:
            return v
    return default


def weight_files(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    files = sorted(folder.glob("*.safetensors"))
    return files or sorted(folder.glob("pytorch_model*.bin"))


def read_safetensors_header(path: Path) -> dict:
    """The JSON header of a safetensors file (8-byte little-endian length, then JSON); the
    tensors themselves are not read, and torch is not imported."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) != 8:
            raise ValueError("shorter than a header")
        (n,) = struct.unpack("<Q", head)
        if n > min(size - 8, 100 * 2**20):
            raise ValueError(f"header length {n} does not fit in a {size}-byte file")
        header = json.loads(fh.read(n))
    end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"),
              default=0)
    if 8 + n + end > size:
        raise ValueError(f"the tensors need {8 + n + end} bytes, the file has {size}")
    return header


def safetensors_summary(folder: str | Path) -> dict:
    """Parameter count, bytes and dtypes from the safetensors headers (weights not read)."""
    n_params, n_bytes, dtypes, quantizable = 0, 0, {}, 0
    for path in sorted(Path(folder).glob("*.safetensors")):
        try:
            header = read_safetensors_header(path)
            for key, info in header.items():
                if key == "__metadata__":
                    continue
                count = 1
                for dim in info["shape"]:
                    count *= int(dim)
                n_params += count
                if len(info["shape"]) == 2 and key.endswith(".weight") and not any(
                        part in key for part in _NOT_QUANTIZED):
                    quantizable += count
                dt = str(info["dtype"]).lower()
                dtypes[dt] = dtypes.get(dt, 0) + count
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise UserError(f"The weights file {path.name} is damaged or incomplete ({exc}).",
                            hint="Download or import the model again.") from exc
        n_bytes += path.stat().st_size
    return {"n_params": n_params, "bytes": n_bytes, "dtypes": dtypes,
            "quantizable_params": quantizable}


_ST_DTYPE = {"f32": "float32", "f16": "float16", "bf16": "bfloat16", "float32": "float32",
             "float16": "float16", "bfloat16": "bfloat16"}


def architecture_summary(folder: str | Path, *, trust_remote_code: bool = False) -> dict:
    cfg = read_config_fast(folder, trust_remote_code=trust_remote_code)
    t = _text_config(cfg)
    model_type = getattr(t, "model_type", "") or cfg.model_type
    n_layers = int(_first(t, "num_hidden_layers", "n_layer", default=0) or 0)
    d_model = int(_first(t, "hidden_size", "n_embd", "d_model", default=0) or 0)
    n_heads = _first(t, "num_attention_heads", "n_head")
    d_mlp = _first(t, "intermediate_size", "n_inner")
    if d_mlp is None and d_model:
        d_mlp = 4 * d_model  # GPT-2's default when n_inner is None
    try:
        family = hooks.family_of(model_type).name
        supported = True
    except UserError:
        family, supported = model_type, False
    st = safetensors_summary(folder)
    disk_dtype = max(st["dtypes"], key=st["dtypes"].get) if st["dtypes"] else ""
    cfg_dtype = str(_first(cfg, "dtype", "torch_dtype", default="") or "").replace("torch.", "")
    n_params = st["n_params"] or meta_param_count(folder, trust_remote_code=trust_remote_code)
    return {
        "model_type": model_type,
        "family": family,
        "family_label": hooks.FAMILY_LABELS.get(family, model_type),
        "hooks_supported": supported,
        "architecture": (cfg.architectures or [""])[0] if getattr(cfg, "architectures", None)
        else "",
        "n_layers": n_layers,
        "d_model": d_model,
        "n_heads": n_heads,
        "n_kv_heads": _first(t, "num_key_value_heads", default=n_heads),
        "d_mlp": d_mlp,
        "vocab_size": _first(t, "vocab_size"),
        "context_length": _first(t, "max_position_embeddings", "n_positions", "n_ctx"),
        "n_params": int(n_params),
        "quantizable_params": int(st["quantizable_params"]),
        "dtype": _ST_DTYPE.get(disk_dtype, disk_dtype) or cfg_dtype or "float32",
        "config_dtype": cfg_dtype,
        "weights_bytes": st["bytes"],
        "quantization_config": bool(getattr(cfg, "quantization_config", None)),
    }


def _meta_model(folder: str | Path, trust_remote_code: bool = False):
    import torch
    from mistudio.hf import transformers_names

    AutoModelForCausalLM = transformers_names("AutoModelForCausalLM")

    cfg = read_config(folder, trust_remote_code=trust_remote_code)
    if getattr(cfg, "quantization_config", None) is not None:
        cfg.quantization_config = None  # structure only; a saved quantized variant
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(cfg, trust_remote_code=trust_remote_code)


def meta_param_count(folder: str | Path, trust_remote_code: bool = False) -> int:
    model = _meta_model(folder, trust_remote_code)
    return sum(p.numel() for p in model.parameters())


def module_tree(folder_or_model, *, trust_remote_code: bool = False, max_nodes: int = 5000
                ) -> dict:
    """Nested {name, path, type, params, shape, children, repeat} with repeated blocks collapsed.

    A ModuleList whose children all share one structure shows its first child with
    ``repeat = N`` (the UI shows "x N"); ``max_nodes`` bounds the work for huge models.
    """
    model = (folder_or_model if hasattr(folder_or_model, "named_children")
             else _meta_model(folder_or_model, trust_remote_code))
    budget = [max_nodes]

    def node(module, name: str, path: str) -> dict:
        budget[0] -= 1
        own = sum(p.numel() for p in module.parameters(recurse=False))
        total = sum(p.numel() for p in module.parameters())
        item = {"name": name, "path": path, "type": type(module).__name__, "params": int(total),
                "own_params": int(own), "repeat": 1, "children": []}
        weight = getattr(module, "weight", None)
        if weight is not None and hasattr(weight, "shape"):
            item["shape"] = list(weight.shape)
        children = list(module.named_children())
        if type(module).__name__ == "ModuleList" and len(children) > 1 and len(
                {_signature(c) for _, c in children}) == 1:
            first_name, first = children[0]
            child = node(first, first_name, f"{path}.{first_name}" if path else first_name)
            child["repeat"] = len(children)
            child["name"] = f"0..{len(children) - 1}"
            item["children"].append(child)
            return item
        for cname, child in children:
            if budget[0] <= 0:
                item["truncated"] = True
                break
            item["children"].append(node(child, cname, f"{path}.{cname}" if path else cname))
        return item

    return node(model, type(model).__name__, "")


def _signature(module) -> tuple:
    return tuple((n, type(m).__name__, tuple(getattr(getattr(m, "weight", None), "shape", ())))
                 for n, m in module.named_modules())


def available_memory(device: str) -> tuple[int, str]:
    """Free bytes where the model would live, and what that figure is."""
    from mistudio import hardware

    if device.startswith("cuda"):
        info = hardware.probe()
        if info.gpus:
            g = info.gpus[0]
            if info.unified_memory:
                return info.ram_available_bytes, "available memory (shared with the GPU)"
            return int(g.free_bytes or g.total_bytes or 0), f"free memory on {g.name}"
    import psutil

    return int(psutil.virtual_memory().available), "available RAM"


def estimate_memory(summary: dict, *, dtype: str = "float32", quantization: str = "none",
                    device: str = "cpu", batch_tokens: int = 0, loaded_bytes: int = 0,
                    available: int | None = None) -> dict:
    """Weights + activations (for a batch of ``batch_tokens``) against what is free.

    ``loaded_bytes``: memory the app already holds there (a loaded model); subtracted from
    the free figure only if it was measured before loading, so callers pass 0 once loaded.
    """
    n = int(summary["n_params"])
    d = int(summary.get("d_model") or 0)
    keep = DTYPE_BYTES.get(dtype, 4)
    if quantization in QUANT_BYTES:
        quantized = int(summary.get("quantizable_params") or 0)
        if not quantized:  # no safetensors headers: all but the (tied) embeddings
            vocab = int(summary.get("vocab_size") or 0)
            quantized = max(0, n - vocab * d * (1 if summary.get("tied", True) else 2))
        weights = int(quantized * QUANT_BYTES[quantization] + (n - quantized) * keep)
    else:
        weights = int(n * keep)
    act_bytes = 2 if dtype in ("float16", "bfloat16") else 4
    d_mlp = int(summary.get("d_mlp") or 4 * d)
    # one block's working set: residual, attention intermediates, MLP hidden (x3 for gating)
    activations = int(batch_tokens * (6 * d + 3 * d_mlp) * act_bytes)
    overhead = int(0.05 * weights) + 200 * 2**20
    total = weights + activations + overhead
    where = "cuda" if device.startswith("cuda") else "cpu"
    if available is None:
        available, what = available_memory(where)
    else:
        what = "given"
    free = max(0, available - loaded_bytes)
    verdict = "fits" if total < 0.8 * free else ("tight" if total <= free else "won't fit")
    return {"weights": weights, "activations": activations, "overhead": overhead,
            "total": total, "available": free, "available_what": what, "verdict": verdict,
            "device": where, "dtype": dtype, "quantization": quantization}


def config_json(folder: str | Path) -> dict:
    return json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
