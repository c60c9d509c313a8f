"""Loading models into memory: dtype, device, bitsandbytes quantization, a process cache.

Weights load from safetensors; a folder with only pickle checkpoints (``*.bin``) loads with
``weights_only=True`` (transformers' loader), never arbitrary pickles. ``trust_remote_code``
is passed through only when the model record opted in. 8-/4-bit (NF4) quantization needs
bitsandbytes and a CUDA GPU; on CPU it is refused with the reason.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

from mistudio.errors import UserError
from mistudio.models.inspect import QUANTIZATIONS, weight_files

log = logging.getLogger(__name__)

LOAD_DTYPES = ("float32", "float16", "bfloat16")


def quantization_unavailable_reason(device: str = "cuda") -> str:
    """'' when 8-/4-bit loading is possible on ``device``, else why not (for the UI/CLI)."""
    if not device.startswith("cuda"):
        return ("8-bit and 4-bit quantization use bitsandbytes, which needs a CUDA GPU; "
                "this job runs on the CPU.")
    try:
        import torch

        if not torch.cuda.is_available():
            return ("8-bit and 4-bit quantization need a CUDA GPU (bitsandbytes); no CUDA GPU "
                    "is available to this PyTorch build.")
    except Exception as exc:  # pragma: no cover - torch broken
        return f"PyTorch is not usable ({exc})."
    try:
        import bitsandbytes  # noqa: F401
    except Exception:
        return "8-bit and 4-bit quantization need the bitsandbytes package (pip install bitsandbytes)."
    return ""


def quantization_config(quantization: str, compute_dtype: str):
    import torch
    from mistudio.hf import transformers_names

    BitsAndBytesConfig = transformers_names("BitsAndBytesConfig")

    if quantization == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    if quantization == "4bit":
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                  bnb_4bit_use_double_quant=True,
                                  bnb_4bit_compute_dtype=getattr(torch, compute_dtype))
    raise ValueError(quantization)


@dataclass
class LoadedModel:
    key: tuple
    model: object
    tokenizer: object
    folder: str
    device: str
    dtype: str
    quantization: str
    memory_bytes: int = 0
    users: int = 0
    extra: dict = field(default_factory=dict)


def _torch_dtype(name: str):
    import torch

    return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[name]


def load_tokenizer(folder: str | Path, *, trust_remote_code: bool = False):
    from mistudio.hf import transformers_names

    AutoTokenizer = transformers_names("AutoTokenizer")

    from mistudio.data.tokenize import TOKENIZER_FILES

    if not any((Path(folder) / f).exists() for f in TOKENIZER_FILES):
        # transformers would build an empty tokenizer from config.json alone
        raise UserError(f"The model in {folder} has no tokenizer files "
                        f"({', '.join(TOKENIZER_FILES)}).",
                        hint="Copy the tokenizer files of the model into the folder (as saved "
                        "by save_pretrained), or download the model again.")
    try:
        return AutoTokenizer.from_pretrained(folder, trust_remote_code=trust_remote_code)
    except Exception as exc:
        raise UserError(f"Cannot load the tokenizer of the model in {folder} ({exc}).",
                        hint="The folder needs tokenizer.json or the tokenizer's vocabulary "
                        "files; import or download it again.") from exc


def load_model_uncached(folder: str | Path, *, dtype: str = "float32", device: str = "cpu",
                        quantization: str = "none", trust_remote_code: bool = False):
    """(model, tokenizer), model in eval mode on ``device``."""
    import torch
    from mistudio.hf import transformers_names

    AutoModelForCausalLM = transformers_names("AutoModelForCausalLM")

    folder = Path(folder)
    if dtype not in LOAD_DTYPES:
        raise UserError(f"Unknown dtype {dtype!r}.", hint=f"Use one of {', '.join(LOAD_DTYPES)}.")
    if quantization not in QUANTIZATIONS:
        raise UserError(f"Unknown quantization {quantization!r}.",
                        hint=f"Use one of {', '.join(QUANTIZATIONS)}.")
    files = weight_files(folder)
    if not files:
        raise UserError(f"No weights (*.safetensors) in {folder}.",
                        hint="The download or import may be incomplete; add the model again.")
    kwargs: dict = {"trust_remote_code": trust_remote_code, "dtype": _torch_dtype(dtype)}
    if files[0].suffix == ".bin":
        kwargs["use_safetensors"] = False  # transformers reads these with weights_only=True
        log.warning("loading pickle checkpoint %s with weights_only=True", files[0].name)
    if quantization != "none":
        reason = quantization_unavailable_reason(device)
        if reason:
            raise UserError(reason, hint="Choose 'none' (full precision) or run on a CUDA GPU.")
        kwargs["quantization_config"] = quantization_config(quantization, dtype)
        kwargs["device_map"] = {"": 0 if device == "cuda" else device}
    try:
        model = AutoModelForCausalLM.from_pretrained(folder, **kwargs)
    except torch.cuda.OutOfMemoryError as exc:
        raise UserError("The GPU ran out of memory while loading the model.",
                        hint="Pick a smaller dtype or 4-bit quantization, or release other "
                        "loaded models.") from exc
    except (OSError, ValueError) as exc:
        if "trust_remote_code" in str(exc):
            raise UserError("This model needs its own code from the repository.",
                            hint="Enable 'Trust remote code' on the model only if you trust "
                            "its authors.") from exc
        raise UserError(f"Cannot load the model in {folder}: {exc}",
                        hint="The weights may be damaged or incomplete; add the model again."
                        ) from exc
    if quantization == "none":
        model.to(device)
    model.eval()
    model.requires_grad_(False)
    return model, load_tokenizer(folder, trust_remote_code=trust_remote_code)


def model_memory_bytes(model) -> int:
    try:
        return int(model.get_memory_footprint())
    except Exception:
        return sum(p.numel() * p.element_size() for p in model.parameters())


class ModelCache:
    """Loaded models kept in the process, keyed by (folder, dtype, device, quantization)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._loaded: dict[tuple, LoadedModel] = {}
        self._loading: dict[tuple, threading.Lock] = {}

    def get(self, folder: str | Path, *, dtype: str = "float32", device: str = "cpu",
            quantization: str = "none", trust_remote_code: bool = False) -> LoadedModel:
        key = (str(Path(folder).resolve()), dtype, device, quantization)
        with self._lock:
            hit = self._loaded.get(key)
            if hit is not None:
                return hit
            key_lock = self._loading.setdefault(key, threading.Lock())
        with key_lock:  # two jobs asking for the same model load it once
            with self._lock:
                hit = self._loaded.get(key)
            if hit is not None:
                return hit
            model, tok = load_model_uncached(folder, dtype=dtype, device=device,
                                             quantization=quantization,
                                             trust_remote_code=trust_remote_code)
            entry = LoadedModel(key, model, tok, key[0], device, dtype, quantization,
                                memory_bytes=model_memory_bytes(model))
            with self._lock:
                self._loaded[key] = entry
            return entry

    def loaded(self) -> list[LoadedModel]:
        with self._lock:
            return list(self._loaded.values())

    def held_bytes(self, device: str) -> int:
        return sum(e.memory_bytes for e in self.loaded() if e.device.split(":")[0] == device)

    def release(self, folder: str | Path | None = None) -> int:
        """Drop loaded models (all, or those of one folder). Returns how many."""
        target = str(Path(folder).resolve()) if folder is not None else None
        with self._lock:
            keys = [k for k in self._loaded if target is None or k[0] == target]
            for k in keys:
                del self._loaded[k]
        if keys:
            import gc

            gc.collect()
            try:
                import torch

                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
            except Exception:
                pass
        return len(keys)


MODEL_CACHE = ModelCache()


def save_quantized_variant(folder: str | Path, quantization: str, *, dtype: str = "bfloat16",
                           trust_remote_code: bool = False) -> Path:
    """Quantize with bitsandbytes and save beside the original: ``<folder>/variants/<q>``."""
    from mistudio.paths import atomic_dir

    reason = quantization_unavailable_reason("cuda")
    if reason:
        raise UserError(reason, hint="Saving a quantized variant needs a CUDA GPU.")
    model, tok = load_model_uncached(folder, dtype=dtype, device="cuda",
                                     quantization=quantization,
                                     trust_remote_code=trust_remote_code)
    dest = Path(folder) / "variants" / quantization
    with atomic_dir(dest) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
    del model
    return dest
