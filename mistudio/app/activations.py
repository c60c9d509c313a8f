"""``studio.activations``: extraction and activation sets (templates: ``studio.templates``).

Qt-free and torch-free at import time. One extraction job writes one activation set per
hook point (``activations/<set id>/``); the sets share an ``extraction_id`` and finish
together. A job listener records outcomes; unfinished sets are ``incomplete`` and can be
resumed from their last complete shard.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from mistudio.activations.choices import (DEFAULT_SETTINGS, check_batch_size, expand_layers,
                                          whole_number)
from mistudio.activations.format import (ActivationSet, STORE_DTYPES, is_complete,
                                         read_shard_index)
from mistudio.activations.repository import ActivationSetRecord, ActivationSetsRepo
from mistudio.app.datasets import DatasetService
from mistudio.app.jobs import FINISHED, JobRecord, JobService
from mistudio.app.models import ModelService
from mistudio.app.settings import SettingsService
from mistudio.app.templates import TemplateService
from mistudio.errors import UserError
from mistudio.paths import DataPaths, dir_size
from mistudio.store.db import Store, new_id

class ActivationService:
    def __init__(self, *, store: Store, paths: DataPaths, jobs: JobService,
                 settings: SettingsService, models: ModelService, datasets: DatasetService,
                 templates: TemplateService):
        self.paths = paths
        self.jobs = jobs
        self.settings = settings
        self.models = models
        self.datasets = datasets
        self.templates = templates  # extraction templates (kind "extraction")
        self.repo = ActivationSetsRepo(store)
        self._submitting: set[str] = set()
        jobs.add_listener(self._on_job_event, records=True)
        self._sweep()

    # ------------------------------------------------------------------ outcomes

    def _on_job_event(self, job_id: str, kind: str, payload: dict) -> None:
        if kind != "status" or payload.get("status") not in FINISHED:
            return
        recs = [ActivationSetRecord.from_row(r)
                for r in self.repo.table.rows_where("job_id = ?", [job_id])]
        for rec in recs:
            self._settle(rec, payload["status"], payload.get("error", ""))

    def _settle(self, rec: ActivationSetRecord, status: str, error: str) -> None:
        if is_complete(rec.folder):
            s = ActivationSet(rec.folder)
            st = s.stats
            summary = {k: st.get(k) for k in ("mean_norm", "std_norm", "median_norm",
                                              "max_norm", "mean_std", "total_variance")}
            summary["norm_hist"] = st.get("norm_hist")
            summary["elapsed_s"] = s.meta.get("elapsed_s")
            # the precision the job loaded the model in (params may say just 'auto')
            summary["model_dtype"] = s.meta.get("model_dtype")
            summary["model_device"] = s.meta.get("device")
            self.repo.update(rec.id, status="ready", num_rows=s.num_rows, d_in=s.d_in,
                             size_bytes=dir_size(rec.folder), summary=summary, job_id="")
        elif not read_shard_index(rec.folder):
            # nothing was saved: no half-made set to resume; the job keeps the error
            shutil.rmtree(rec.folder, ignore_errors=True)
            self.repo.delete(rec.id)
        else:
            summary = dict(rec.summary)
            summary["error"] = error or {"cancelled": "Cancelled.",
                                         "interrupted": "Interrupted."}.get(status, status)
            self.repo.update(rec.id, status="incomplete", summary=summary, job_id="",
                             size_bytes=dir_size(rec.folder) if Path(rec.folder).exists() else 0)

    def _sweep(self) -> None:
        for rec in self.repo.list(status="extracting"):
            if self._job_done(rec.job_id):
                job = self.jobs.find(rec.job_id) if rec.job_id else None
                self._settle(rec, job.status if job else "interrupted", job.error if job else "")

    # ------------------------------------------------------------------ reading

    def list(self, *, model_id: str | None = None, status: str | None = None
             ) -> list[ActivationSetRecord]:
        self._sweep()
        return self.repo.list(model_id=model_id, status=status)

    def get(self, set_id: str) -> ActivationSetRecord:
        rec = self.repo.get(set_id)
        if rec is None:
            matches = self.repo.find(set_id)
            if len(matches) != 1:
                raise UserError(f"No activation set {set_id!r}.",
                                hint="`mistudio extract list` shows them.")
            rec = matches[0]
        if rec.status == "extracting" and self._job_done(rec.job_id):
            job = self.jobs.find(rec.job_id) if rec.job_id else None
            self._settle(rec, job.status if job else "interrupted", job.error if job else "")
            rec = self.repo.get(rec.id)
            if rec is None:
                raise UserError(f"No activation set {set_id!r}: its extraction stopped before "
                                "any rows were saved" + (f" ({job.error})" if job is not None
                                                          and job.error else "") + ".",
                                hint="Start the extraction again.")
        return rec

    def _job_done(self, job_id: str) -> bool:
        if job_id in self._submitting or (job_id and self.jobs.is_active(job_id)):
            return False
        job = self.jobs.find(job_id) if job_id else None
        return job is None or job.status in FINISHED

    def open(self, set_id: str) -> ActivationSet:
        """The reader of a finished set (for training and analysis)."""
        rec = self.get(set_id)
        if rec.status != "ready":
            raise UserError(f"The activation set {rec.id} is {rec.status}.",
                            hint="Resume its extraction first." if rec.status == "incomplete"
                            else "Wait for its extraction to finish.")
        return ActivationSet(rec.folder)

    def folder(self, set_id: str) -> Path:
        return self.paths.entity_dir("activations", set_id)

    # ------------------------------------------------------------------ extraction

    def _tokenization_folder(self, tokenization: str) -> tuple[Path, str]:
        path = Path(str(tokenization)).expanduser()
        if path.is_dir():
            from mistudio.data.tokenized import TokenizedDataset

            tok = TokenizedDataset(path)
            return path.resolve(), str(tok.meta.get("dataset_id", ""))
        try:
            rec = self.datasets.get_tokenization(str(tokenization))
        except (ImportError, AttributeError):
            rec = None
        if rec is None:
            raise UserError(f"No tokenization {tokenization!r}.",
                            hint="Give a tokenization id from the Datasets tab or a folder.")
        if getattr(rec, "status", "ready") != "ready":
            raise UserError("That tokenization is not finished yet.",
                            hint="Wait for the tokenize job to complete.")
        return Path(rec.path), rec.dataset_id

    def resolve_hook_points(self, model: str, *, hook_points: list[str] | None = None,
                            layers=None, hook_types: list[str] | None = None) -> list[str]:
        from mistudio.models import hooks

        summary = self.models.inspect(model)
        names = list(hook_points or [])
        if layers:
            for layer in expand_layers(layers, summary["n_layers"]):
                for t in hook_types or ["resid_post"]:
                    names.append(hooks.hook_name(layer, t))
        if not names:
            raise UserError("Choose at least one hook point.",
                            hint="Pick layers and hook types, or type a hook name.")
        for n in names:
            target = hooks.resolve(n, summary["model_type"], summary["n_layers"])  # validates
            if target.hook_type == "module":  # a raw path: check it exists before any job
                self.models.check_module_path(model, target.module_path)
        return list(dict.fromkeys(names))

    def start_extraction(self, model: str, tokenization: str, *,
                         hook_points: list[str] | None = None, layers=None,
                         hook_types: list[str] | None = None, max_tokens: int = 1_000_000,
                         batch_size: int = 16, store_dtype: str = "float32",
                         skip_bos: bool = True, device: str = "auto", model_dtype: str = "auto",
                         quantization: str = "none", name: str = "", shard_rows: int = 0,
                         variant: str = "") -> tuple[list[ActivationSetRecord], JobRecord]:
        """``variant`` ('8bit'/'4bit') extracts from the model's saved quantized copy
        (loads faster than quantizing on the fly); ``model_dtype`` 'auto' then means the
        dtype the copy was saved with."""
        mrec = self.models.require_ready(model)
        model_folder = mrec.folder
        if variant:
            model_folder, saved_dtype = self._variant_folder(mrec, variant)
            quantization = variant
            if model_dtype == "auto" and saved_dtype:
                model_dtype = saved_dtype
        if store_dtype not in STORE_DTYPES:
            raise UserError(f"Unknown storage dtype {store_dtype!r}.",
                            hint=f"Use one of {', '.join(STORE_DTYPES)}.")
        batch_size = check_batch_size(batch_size)
        max_tokens = whole_number(max_tokens, "max tokens")
        if max_tokens < 0:
            raise UserError(f"max tokens is {max_tokens}: it must be 0 (all the tokens of the "
                            "tokenization) or a positive number of tokens.",
                            hint="e.g. --max-tokens 1000000, or 0 for all.")
        if quantization != "none":
            from mistudio.hardware import resolve_device

            self.models.check_quantization(quantization, resolve_device(
                device if device != "auto" else self.settings.current.default_device))
        tok_folder, dataset_id = self._tokenization_folder(tokenization)
        from mistudio.data.tokenized import TokenizedDataset

        tok = TokenizedDataset(tok_folder)
        if mrec.tokenizer_fingerprint and tok.fingerprint != mrec.tokenizer_fingerprint:
            raise UserError(
                f"The tokenization was made with {tok.meta.get('tokenizer', 'another tokenizer')}"
                f", not with the tokenizer of {mrec.name}.",
                hint="Tokenize the dataset with this model in the Datasets tab, then extract.")
        context = self.models.inspect(mrec.id).get("context_length")
        if context and tok.seq_len > int(context):
            raise UserError(
                f"The tokenization has sequences of {tok.seq_len} tokens, but {mrec.name} reads "
                f"at most {context} tokens at a time (its context length).",
                hint=f"Tokenize the dataset again with a context length of {context} or less.")
        names = self.resolve_hook_points(mrec.id, hook_points=hook_points, layers=layers,
                                         hook_types=hook_types)
        extraction_id = new_id("ext")
        job_id = new_id("job")
        recs, outputs = [], {}
        from mistudio.models.hooks import parse_hook_name

        settings = {"max_tokens": int(max_tokens), "batch_size": int(batch_size),
                    "store_dtype": store_dtype, "skip_bos": bool(skip_bos), "device": device,
                    "model_dtype": model_dtype, "quantization": quantization,
                    "variant": variant or ""}
        for n in names:
            sid = new_id("act")
            parsed = parse_hook_name(n)
            folder = self.folder(sid)
            outputs[n] = {"set_id": sid, "folder": str(folder)}
            recs.append(ActivationSetRecord(
                id=sid, hook_name=n, status="extracting", extraction_id=extraction_id,
                name=name or f"{mrec.name} {n}", model_id=mrec.id,
                hook_layer=parsed[0] if parsed else None, dtype=store_dtype, d_in=mrec.d_model,
                seq_len=tok.seq_len, tokenization=str(tok_folder), dataset_id=dataset_id,
                folder=str(folder), params=settings, job_id=job_id))
        params = {"model_folder": model_folder, "model_id": mrec.id, "model_name": mrec.name,
                  "trust_remote_code": mrec.trust_remote_code, "tokenization": str(tok_folder),
                  "dataset_id": dataset_id, "hook_points": names, "outputs": outputs,
                  "extraction_id": extraction_id, "shard_rows": int(shard_rows),
                  "allow_cpu_quantization": self.settings.current.allow_cpu_quantization,
                  **settings}
        self._submitting.add(job_id)
        try:
            self.repo.insert_all(recs)
            job = self.jobs.submit("activations.extract", params, target=mrec.id,
                                         title=f"Extract {mrec.name}: {', '.join(names)}"[:120],
                                         job_id=job_id)
        except BaseException:
            for r in recs:
                self.repo.delete(r.id)
            raise
        finally:
            self._submitting.discard(job_id)
        return [self.repo.get(r.id) for r in recs], job

    @staticmethod
    def _variant_folder(mrec, variant: str) -> tuple[str, str]:
        """(folder, dtype) of a saved quantized copy of the model, checked."""
        v = mrec.variants.get(variant)
        if v is None:
            raise UserError(f"{mrec.name!r} has no saved {variant} copy.",
                            hint="Save one first (Architecture > Save quantized copy), or "
                            "quantize on the fly instead.")
        if not Path(v["folder"]).is_dir():
            raise UserError(f"The saved {variant} copy of {mrec.name!r} is gone "
                            f"({v['folder']}).", hint="Save it again, or quantize on the fly.")
        return v["folder"], v.get("dtype") or ""

    def resume_extraction(self, set_id: str, *, batch_size: int | None = None) -> JobRecord:
        """Continue an incomplete extraction (all its hook points) after its last shard."""
        rec = self.get(set_id)
        group = self.repo.list(extraction_id=rec.extraction_id) if rec.extraction_id else [rec]
        active = [r.job_id for r in group if r.job_id and self.jobs.is_active(r.job_id)]
        if active:
            return self.jobs.get(active[0])
        if all(r.status == "ready" for r in group):
            raise UserError("This extraction is already complete.")
        mrec = self.models.require_ready(rec.model_id)
        settings = dict(rec.params)
        if batch_size is not None:
            settings["batch_size"] = check_batch_size(batch_size)
        names = [r.hook_name for r in group]
        outputs = {r.hook_name: {"set_id": r.id, "folder": r.folder} for r in group}
        model_folder = mrec.folder
        if settings.get("variant"):  # the same saved copy as the first part
            model_folder = self._variant_folder(mrec, settings["variant"])[0]
        job_id = new_id("job")
        params = {"model_folder": model_folder, "model_id": mrec.id, "model_name": mrec.name,
                  "trust_remote_code": mrec.trust_remote_code, "tokenization": rec.tokenization,
                  "dataset_id": rec.dataset_id, "hook_points": names, "outputs": outputs,
                  "extraction_id": rec.extraction_id,
                  "allow_cpu_quantization": self.settings.current.allow_cpu_quantization,
                  **settings}
        self._submitting.add(job_id)
        try:
            for r in group:
                self.repo.update(r.id, status="extracting", job_id=job_id, params=settings)
            return self.jobs.submit("activations.extract", params, target=mrec.id,
                                          title=f"Resume extraction {rec.extraction_id}",
                                          job_id=job_id)
        finally:
            self._submitting.discard(job_id)

    def delete(self, set_id: str) -> None:
        rec = self.get(set_id)
        if rec.job_id and self.jobs.is_active(rec.job_id):
            raise UserError("This activation set is being extracted.", hint="Cancel it first.")
        shutil.rmtree(rec.folder, ignore_errors=True)
        self.repo.delete(rec.id)

    def set_pinned(self, set_id: str, pinned: bool = True) -> ActivationSetRecord:
        """A pinned set is never deleted by the cleanup rule that keeps the last N sets."""
        rec = self.get(set_id)
        self.repo.update(rec.id, pinned=bool(pinned))
        return self.repo.get(rec.id)

    def rename(self, set_id: str, name: str) -> ActivationSetRecord:
        rec = self.get(set_id)
        self.repo.update(rec.id, name=name.strip() or rec.name)
        return self.repo.get(rec.id)

    # ------------------------------------------------------------------ templates

    def apply_template(self, name: str, model: str | None = None) -> dict:
        """The form values an extraction template gives (layers expanded when a model is
        given); counts as a use of the template."""
        template = self.templates.record_use(name, kind="extraction")
        settings = {**DEFAULT_SETTINGS, **template.settings}
        if model is not None and settings.get("layers"):
            n_layers = self.models.inspect(model)["n_layers"]
            settings["layers"] = expand_layers(settings["layers"], n_layers)
        return settings
