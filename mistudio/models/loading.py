"""Loading models into memory: dtype, device, bitsandbytes quantization (the process keeps
loaded models in :mod:`mistudio.models.pool`).

Weights load from safetensors; a folder with only pickle checkpoints (``*.bin``) loads with
``weights_only=True`` (transformers' loader), never arbitrary pickles. ``trust_remote_code``
is passed through only when the model record opted in. 8-/4-bit (NF4) quantization needs
bitsandbytes. CUDA is the normal path; on the CPU it needs the ``allow_cpu_quantization``
setting and a bitsandbytes with a working CPU backend (0.50+), otherwise it is refused with
the reason. Saved variants carry their quantization config and load without a new one.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from mistudio.errors import UserError
from mistudio.models.inspect import QUANTIZATIONS, weight_files
from mistudio.paths import settled_dir

log = logging.getLogger(__name__)

LOAD_DTYPES = ("float32", "float16", "bfloat16")


CPU_QUANT_SETTING = "Allow 8-/4-bit quantization on the CPU"
_cpu_backend_problem: str | None = None
_cpu_backend_lock = threading.Lock()


def bnb_cpu_problem() -> str:
    """'' when bitsandbytes imports and its CPU backend quantizes and dequantizes a small
    tensor (8-bit rows and 4-bit NF4), else why not. Probed once per process."""
    global _cpu_backend_problem
    if _cpu_backend_problem is None:
        # import before taking the lock: a lock held across an import can deadlock with
        # Python's per-module import locks (another thread importing bitsandbytes)
        try:
            import bitsandbytes.functional  # noqa: F401
        except Exception:  # noqa: BLE001 - the probe below reports it
            pass
    with _cpu_backend_lock:
        if _cpu_backend_problem is None:
            _cpu_backend_problem = _probe_bnb_cpu()
        return _cpu_backend_problem


def _probe_bnb_cpu() -> str:
    try:
        import bitsandbytes.functional as F
        import torch
    except Exception as exc:  # noqa: BLE001 - any import failure means "not usable"
        return (f"8-bit and 4-bit quantization need the bitsandbytes package, which does not "
                f"import here ({type(exc).__name__}: {exc}). Install it with "
                "pip install 'bitsandbytes>=0.50'.")
    try:
        w = torch.linspace(-1, 1, 64 * 64, dtype=torch.float32).reshape(64, 64)
        q, state = F.quantize_4bit(w, quant_type="nf4")
        err4 = (F.dequantize_4bit(q, state) - w).abs().max().item()
        q8, scales, _ = F.int8_vectorwise_quant(w)
        err8 = (q8.float() * scales[:, None] / 127 - w).abs().max().item()
    except Exception as exc:  # noqa: BLE001
        return (f"This bitsandbytes build has no working CPU backend ({type(exc).__name__}: "
                f"{exc}). bitsandbytes 0.50 or newer quantizes on the CPU.")
    if not (err4 < 0.2 and err8 < 0.02):
        return (f"bitsandbytes' CPU backend gives wrong results here (errors {err4:.3g}, "
                f"{err8:.3g}); 8-/4-bit is not offered on the CPU.")
    return ""


def quantization_unavailable_reason(device: str = "cuda", *, allow_cpu: bool = False) -> str:
    """'' when 8-/4-bit loading is possible on ``device``, else why not (for the UI/CLI).

    CUDA is the normal path. On the CPU it needs the ``allow_cpu_quantization`` setting
    (``allow_cpu``) and a bitsandbytes whose CPU backend works."""
    if not device.startswith("cuda"):
        if not allow_cpu:
            return ("8-bit and 4-bit quantization (bitsandbytes) are meant for a CUDA GPU, and "
                    "this runs on the CPU. To use them on the CPU anyway (less memory, slower "
                    f"than full precision), turn on '{CPU_QUANT_SETTING}' in File > Settings.")
        return bnb_cpu_problem()
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


def saved_quantization(folder: str | Path) -> str:
    """'8bit'/'4bit' when ``folder`` holds a model saved already quantized with bitsandbytes
    (its config.json carries the quantization_config), else ''."""
    import json

    try:
        cfg = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ""
    qc = cfg.get("quantization_config") if isinstance(cfg, dict) else None
    if not isinstance(qc, dict):
        return ""
    if qc.get("load_in_4bit"):
        return "4bit"
    if qc.get("load_in_8bit"):
        return "8bit"
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


class _OnceFilter(logging.Filter):
    """bitsandbytes logs 'MatMul8bitLt: inputs will be cast ... to float16' on every forward
    of every 8-bit layer fed float32/bfloat16: let it through once per process."""

    prefix = "MatMul8bitLt: inputs will be cast"

    def __init__(self):
        super().__init__()
        self.seen = False

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith(self.prefix):
            return True
        if self.seen:
            return False
        self.seen = True
        return True


def _quiet_bnb_cast_warning() -> None:
    logger = logging.getLogger("bitsandbytes.autograd._functions")
    if not any(isinstance(f, _OnceFilter) for f in logger.filters):
        logger.addFilter(_OnceFilter())


def _device_map(device: str) -> dict:
    """accelerate's device_map for a model that must be placed while loading (bitsandbytes
    quantizes as the weights land)."""
    if device.startswith("cuda"):
        index = device.split(":", 1)[1] if ":" in device else "0"
        return {"": int(index)}
    return {"": "cpu"}


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
                        quantization: str = "none", trust_remote_code: bool = False,
                        allow_cpu_quantization: bool = False):
    """(model, tokenizer), model in eval mode on ``device``.

    A folder saved already quantized (a variant: its config.json holds the bitsandbytes
    quantization_config) loads as saved: no new quantization config is passed, and
    ``quantization`` must be 'none' or the saved one."""
    import torch
    from mistudio.hf import transformers_names

    AutoModelForCausalLM = transformers_names("AutoModelForCausalLM")

    folder = settled_dir(folder)  # converted or quantized again, killed mid-swap
    if dtype not in LOAD_DTYPES:
        raise UserError(f"Unknown dtype {dtype!r}.", hint=f"Use one of {', '.join(LOAD_DTYPES)}.")
    if quantization not in QUANTIZATIONS:
        raise UserError(f"Unknown quantization {quantization!r}.",
                        hint=f"Use one of {', '.join(QUANTIZATIONS)}.")
    files = weight_files(folder)
    if not files:
        raise UserError(f"No weights (*.safetensors) in {folder}.",
                        hint="The download or import may be incomplete; add the model again.")
    saved = saved_quantization(folder)
    if saved and quantization not in ("none", saved):
        raise UserError(f"The model in {folder} is saved in {saved}; it cannot be loaded as "
                        f"{quantization}.", hint=f"Load it as saved ({saved}), or load the "
                        "original model to quantize it differently.")
    effective = saved or quantization
    kwargs: dict = {"trust_remote_code": trust_remote_code, "dtype": _torch_dtype(dtype)}
    if files[0].suffix == ".bin":
        kwargs["use_safetensors"] = False  # transformers reads these with weights_only=True
        log.warning("loading pickle checkpoint %s with weights_only=True", files[0].name)
    if effective != "none":
        reason = quantization_unavailable_reason(device, allow_cpu=allow_cpu_quantization)
        if reason:
            raise UserError(reason, hint="Choose 'none' (full precision)" + (
                "." if device.startswith("cuda") else
                f", run on a CUDA GPU, or turn on '{CPU_QUANT_SETTING}' in File > Settings."))
        if not saved:
            kwargs["quantization_config"] = quantization_config(quantization, dtype)
        kwargs["device_map"] = _device_map(device)
        _quiet_bnb_cast_warning()
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
    if effective == "none":
        model.to(device)
    model.eval()
    model.requires_grad_(False)
    return model, load_tokenizer(folder, trust_remote_code=trust_remote_code)




def save_quantized_variant(folder: str | Path, quantization: str, *,
                           dest: str | Path | None = None, dtype: str = "bfloat16",
                           device: str = "cuda", trust_remote_code: bool = False,
                           allow_cpu_quantization: bool = False) -> Path:
    """Quantize with bitsandbytes on ``device`` and save the result (config.json carries the
    quantization_config, so it reloads quantized without one). ``dest`` defaults to
    ``<folder>/variants/<q>``; the folder appears only once complete (atomic rename)."""
    from mistudio.paths import atomic_dir

    if quantization not in ("8bit", "4bit"):
        raise UserError(f"Unknown quantization {quantization!r}.", hint="Use 8bit or 4bit.")
    if saved_quantization(folder):
        raise UserError(f"The model in {folder} is already quantized.",
                        hint="Quantize the original full-precision model.")
    reason = quantization_unavailable_reason(device, allow_cpu=allow_cpu_quantization)
    if reason:
        raise UserError(reason, hint="Saving a quantized variant needs a CUDA GPU" + (
            "." if device.startswith("cuda") else
            f", or '{CPU_QUANT_SETTING}' turned on in File > Settings."))
    model, tok = load_model_uncached(folder, dtype=dtype, device=device,
                                     quantization=quantization,
                                     trust_remote_code=trust_remote_code,
                                     allow_cpu_quantization=allow_cpu_quantization)
    dest = Path(dest) if dest is not None else Path(folder) / "variants" / quantization
    try:
        with atomic_dir(dest) as tmp:
            model.save_pretrained(tmp, safe_serialization=True)
            tok.save_pretrained(tmp)
            if not saved_quantization(tmp) or not weight_files(tmp):
                raise RuntimeError(f"transformers saved {quantization} weights without their "
                                   "quantization config")
    finally:
        del model
    return dest
