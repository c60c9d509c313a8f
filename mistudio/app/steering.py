"""``studio.steering``: steer a model's generation with SAE features, keep the history.

Every comparison is a ``steering.generate`` job (a row in ``jobs``) and a row in
``steering_generations``; its outputs and metrics are in ``steering/generations/<id>.json``.
Presets live in ``steering/presets/``. The typical residual norms ('norm' units) are measured
by a short pass and cached in ``steering/norms.json``. Max activations ('max' units) and
feature labels come from the feature analysis (``studio.features``) when it is available.
No torch is imported here.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

from mistudio.errors import UserError
from mistudio.steering.sampling import Sampling
from mistudio.steering.interventions import SCOPES, Column, Intervention
from mistudio.steering.presets import Preset, PresetStore, SAEIdentity, file_sha256
from mistudio.steering.repository import GenerationRecord, GenerationsRepo
from mistudio.store.db import new_id, now_iso

log = logging.getLogger(__name__)

GENERATE_KIND = "steering.generate"
MAX_PROMPT_CHARS = 100_000


class SteeringService:
    def __init__(self, *, store, jobs, paths, models, saes, features=None):
        """``jobs``: the JobService (submit, wait, cancel, listen); ``models``: the
        ModelService; ``saes``: the service owning SAE records
        (``get_sae``, ``get_training``, ``list_saes``); ``features``: the feature analysis
        service, or None (then 'max' units and labels are unavailable)."""
        self.repo = GenerationsRepo(store)
        self.jobs = jobs
        self.paths = paths
        self.models = models
        self.saes = saes
        self.features = features
        self.presets_store = PresetStore(self.folder / "presets")
        jobs.add_listener(self._on_job_event, records=True)

    @property
    def folder(self) -> Path:
        return self.paths.root / "steering"

    @property
    def norm_cache(self) -> Path:
        return self.folder / "norms.json"

    # ================================================================== what to steer

    def sae_identity(self, sae_id: str) -> SAEIdentity:
        from mistudio.sae.formats import WEIGHTS_FILE

        rec = self.saes.get_sae(sae_id)
        weights = Path(rec.folder) / WEIGHTS_FILE
        if not weights.exists():
            raise UserError(f"The files of the SAE {rec.name or rec.id} are gone ({weights}).",
                            hint="Import or train it again.")
        return SAEIdentity(rec.hook_name, int(rec.d_sae), file_sha256(weights), rec.id,
                           rec.name)

    def sae_model(self, sae_id: str) -> str:
        """The registered model the SAE was trained on ('' when not known)."""
        rec = self.saes.get_sae(sae_id)
        if rec.training_id:
            try:
                tr = self.saes.get_training(rec.training_id)
                meta = json.loads((Path(tr.activation_path) / "meta.json").read_text("utf-8"))
                if meta.get("model_id"):
                    return str(meta["model_id"])
            except (UserError, OSError, ValueError):
                pass
        if rec.model_name:
            try:
                return self.models.get(rec.model_name).id
            except UserError:
                return ""
        return ""

    def saes_for_model(self, model: str) -> list:
        """SAEs that fit the model (hook width and, when known, the model they came from)."""
        m = self.models.get(model)
        out = []
        for rec in self.saes.list_saes():
            if rec.kind != "sae" or (m.d_model and rec.d_in != m.d_model):
                continue
            own = self.sae_model(rec.id)
            if own and own != m.id:
                continue
            out.append(rec)
        return out

    def check_pair(self, model_rec, sae_rec) -> None:
        if sae_rec.kind != "sae":
            raise UserError(f"{sae_rec.name or sae_rec.id} is a {sae_rec.kind.replace('_', '-')};"
                            " steering works with SAEs that read and write the same hook point.",
                            hint="Pick an SAE (not a transcoder).")
        if not sae_rec.hook_name:
            raise UserError("The SAE's files do not name its hook point.",
                            hint="Import it again with its cfg.json naming hook_name.")
        from mistudio.models import hooks
        from mistudio.models.hooks import parse_hook_name

        parsed = parse_hook_name(sae_rec.hook_name)
        if model_rec.family and model_rec.n_layers and (parsed is None or
                                                        parsed[0] < model_rec.n_layers):
            try:  # an unknown hook point name, or one this family cannot resolve
                hooks.resolve(sae_rec.hook_name, model_rec.family, model_rec.n_layers)
            except UserError as exc:
                raise UserError(f"The SAE's hook point {sae_rec.hook_name!r} does not exist in "
                                f"{model_rec.name}: {exc.message}",
                                hint="Pick an SAE trained on this model's hook points.") \
                    from None
        if parsed and model_rec.n_layers and parsed[0] >= model_rec.n_layers:
            raise UserError(f"The SAE hooks {sae_rec.hook_name}, but {model_rec.name} has "
                            f"{model_rec.n_layers} layers: it belongs to another model.",
                            hint="Pick the model the SAE was trained on.")
        if model_rec.d_model and sae_rec.d_in != model_rec.d_model:
            raise UserError(f"The SAE reads vectors of width {sae_rec.d_in}, but "
                            f"{model_rec.name}'s residual stream has width "
                            f"{model_rec.d_model}: the SAE belongs to another model.",
                            hint="Pick the model the SAE was trained on.")
        own = self.sae_model(sae_rec.id)
        if own and own != model_rec.id:
            other = own
            try:
                other = self.models.get(own).name
            except UserError:
                pass
            raise UserError(f"The SAE {sae_rec.name or sae_rec.id} was trained on {other}'s "
                            f"activations, not {model_rec.name}'s.",
                            hint="Pick the model the SAE was trained on.")

    # ================================================================== features

    def feature_info(self, sae_id: str, query: str = "", limit: int = 50) -> list[dict]:
        """Features to pick from: ``{index, label, top_tokens, max_activation, density}``
        matching ``query`` (an index, or text found in the top tokens / logit-lens tokens of
        the SAE's latest analysis). Without an analysis only an index matches, with no
        top tokens."""
        rec = self.saes.get_sae(sae_id)
        query = (query or "").strip()
        analysis = self._analysis(rec.id)
        if analysis is None:
            if query.isdigit():
                return [_bare(int(query))] if int(query) < rec.d_sae else []
            if not query:
                return [_bare(i) for i in range(min(limit, rec.d_sae))]
            return []
        if query.isdigit():
            if int(query) >= rec.d_sae:
                return []
            rows = self.features.search(rec.id, query, analysis.id)
            return [_row(r) for r in rows] or [_bare(int(query))]
        if not query:
            rows = self.features.feature_rows(rec.id, analysis.id, sort="density",
                                              descending=True, include_dead=False,
                                              limit=limit)
        else:
            rows = self.features.search(rec.id, query, analysis.id, limit=limit)
        return [_row(r) for r in rows]

    def has_analysis(self, sae_id: str) -> bool:
        return self._analysis(sae_id) is not None

    def _analysis(self, sae_id: str):
        """The SAE's latest completed feature analysis, or None."""
        if self.features is None:
            return None
        try:
            return self.features.latest_analysis(sae_id)
        except UserError:
            return None

    def max_activations(self, sae_id: str, features: list[int]) -> dict[int, float]:
        """Each feature's max activation in the SAE's latest analysis ('max' units)."""
        analysis = self._analysis(sae_id)
        if analysis is None:
            raise UserError("'max' units need an analysis of this SAE (the max activation of "
                            "each feature comes from it).",
                            hint="Analyse the SAE in the Features tab (or `mistudio analyze`) "
                                 "first, or use raw or norm units.")
        column = self.features.results(sae_id, analysis.id).columns["max_act"]
        out = {}
        for f in features:
            v = float(column[f])
            if not math.isfinite(v) or v <= 0:
                raise UserError(f"Feature {f} never fired in the analysis {analysis.id}, so it "
                                "has no max activation.",
                                hint="Use raw or norm units for this feature.")
            out[f] = v
        return out

    def typical_norm(self, model: str, hook_name: str) -> dict | None:
        """The cached typical residual norm (and where it came from), if measured."""
        try:
            data = json.loads(self.norm_cache.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        folder = str(Path(self.models.require_ready(model).folder).resolve())
        for key, value in data.items():
            if key.startswith(f"{folder}|{hook_name}|"):
                return value
        return None

    # ================================================================== generating

    def prepare(self, model: str, sae: str, columns: list[Column | dict], prompt: str, *,
                sampling: Sampling | dict | None = None, scope: str = "all",
                chat: bool = False, device: str = "auto", use_cache: bool = True) -> dict:
        """Check everything that can be checked without loading the model; returns the job
        params. (The prompt's length in tokens is checked by the job, with the tokenizer.)"""
        model_rec = self.models.require_ready(model)
        sae_rec = self.saes.get_sae(sae)
        self.check_pair(model_rec, sae_rec)
        if not isinstance(prompt, str) or not prompt.strip():
            raise UserError("The prompt is empty.", hint="Type the text the model should "
                                                         "continue.")
        if len(prompt) > MAX_PROMPT_CHARS:
            raise UserError(f"The prompt has {len(prompt):,} characters; the limit is "
                            f"{MAX_PROMPT_CHARS:,}.", hint="Shorten it.")
        if scope not in SCOPES:
            raise UserError(f"Unknown scope {scope!r}.", hint=f"Use one of {', '.join(SCOPES)}.")
        cols = [c if isinstance(c, Column) else Column.from_dict(c) for c in columns]
        if not cols or not any(c.interventions for c in cols):
            raise UserError("Nothing to steer with.",
                            hint="Add a feature with a coefficient, a clamp or a vector.")
        for c in cols:
            for iv in c.interventions:
                iv.validate(sae_rec.d_sae, sae_rec.d_in)
        s = sampling if isinstance(sampling, Sampling) else Sampling.from_dict(sampling)
        s.validate()
        needs_max = sorted({iv.feature for c in cols for iv in c.interventions
                            if iv.units == "max" and iv.kind != "ablate"})
        max_acts = self.max_activations(sae_rec.id, needs_max) if needs_max else {}
        return {
            "model_id": model_rec.id, "model_name": model_rec.name,
            "model_folder": model_rec.folder, "trust_remote_code": model_rec.trust_remote_code,
            "sae_id": sae_rec.id, "sae_folder": sae_rec.folder, "hook_name": sae_rec.hook_name,
            "prompt": prompt, "chat": bool(chat), "scope": scope,
            "columns": [c.to_dict() for c in cols], "sampling": s.to_dict(),
            "max_acts": {str(k): v for k, v in max_acts.items()},
            "norm_cache": str(self.norm_cache), "device": device, "use_cache": use_cache}

    def start(self, model: str, sae: str, columns: list[Column | dict], prompt: str,
              **kw) -> tuple[GenerationRecord, object]:
        """Queue a comparison; returns (its history row, its job)."""
        params = self.prepare(model, sae, columns, prompt, **kw)
        return self.submit(params)

    def submit(self, params: dict) -> tuple[GenerationRecord, object]:
        gen_id = new_id("gen")
        params = {**params, "generation_id": gen_id,
                  "out_file": str(self.folder / "generations" / f"{gen_id}.json")}
        request = {k: params[k] for k in ("model_id", "sae_id", "prompt", "chat", "scope",
                                          "columns", "sampling", "device")}
        rec = GenerationRecord(gen_id, status="queued", model_id=params["model_id"],
                               model_name=params["model_name"], sae_id=params["sae_id"],
                               hook_name=params["hook_name"], prompt=params["prompt"],
                               request=request, file=params["out_file"])
        self.repo.insert(rec)
        labels = ", ".join(c["label"] for c in params["columns"])
        job = self.jobs.submit(GENERATE_KIND, params, title=f"Steer {params['model_name']}: "
                                f"{labels[:60]}", target=gen_id)
        self.repo.update(gen_id, job_id=job.id)
        rec.job_id = job.id
        return rec, job

    def run(self, model: str, sae: str, columns: list[Column | dict], prompt: str,
            **kw) -> dict:
        """Generate and wait (CLI, scripts); returns the result (outputs and metrics)."""
        rec, job = self.start(model, sae, columns, prompt, **kw)
        return self.wait(rec.id)

    def wait(self, gen_id: str, timeout: float | None = None) -> dict:
        rec = self.get(gen_id)
        final = self.jobs.wait(rec.job_id, timeout)
        if final is not None and final.status == "failed":
            last = (final.traceback or "").strip().splitlines()[-1:] or [""]
            if "UserError" in last[0]:  # bad input found by the job (e.g. prompt too long)
                raise UserError(final.error)
            raise RuntimeError(f"{final.error} (details in the job log: {final.log_path})")
        if final is not None and final.status != "completed":
            raise UserError(f"The generation was {final.status}.")
        return self.result(gen_id)

    def rerun(self, gen_id: str) -> tuple[GenerationRecord, object]:
        """The same request again (same prompt, seed and interventions) as a new record."""
        req = self.get(gen_id).request
        return self.start(req["model_id"], req["sae_id"], req["columns"], req["prompt"],
                          sampling=req["sampling"], scope=req["scope"], chat=req["chat"],
                          device=req.get("device", "auto"))

    def stop(self, gen_id_or_job: str) -> bool:
        rec = self.repo.get(gen_id_or_job) or self.repo.by_job(gen_id_or_job)
        return self.jobs.cancel(rec.job_id if rec else gen_id_or_job)

    def live(self, job_id: str) -> dict | None:
        """Tokens streamed so far by a running (or just finished) generation."""
        from mistudio.steering.stream import get_stream

        stream = get_stream(job_id)
        return stream.snapshot() if stream is not None else None

    # ================================================================== history

    def history(self, limit: int | None = 200) -> list[GenerationRecord]:
        return self.repo.list(limit)

    def get(self, gen_id: str) -> GenerationRecord:
        rec = self.repo.get(gen_id)
        if rec is None:
            matches = [r for r in self.repo.list() if r.id.startswith(gen_id)]
            if len(matches) != 1:
                raise UserError(f"No generation {gen_id!r}.",
                                hint="The Steering tab's history lists them.")
            rec = matches[0]
        return rec

    def result(self, gen_id: str) -> dict:
        rec = self.get(gen_id)
        try:
            return json.loads(Path(rec.file).read_text(encoding="utf-8"))
        except OSError:
            raise UserError(f"The outputs of generation {rec.id} are not there "
                            f"({rec.status}).", hint="Run it again.") from None

    def delete(self, gen_id: str) -> None:
        rec = self.get(gen_id)
        if rec.job_id and self.jobs.is_active(rec.job_id):
            raise UserError("That generation is still running.", hint="Stop it first.")
        Path(rec.file).unlink(missing_ok=True)
        self.repo.delete(rec.id)

    def _on_job_event(self, job_id: str, kind: str, payload: dict) -> None:
        if kind != "status":
            return
        status = payload.get("status")
        rec = self.repo.by_job(job_id)
        if rec is None:
            return
        fields = {"status": status}
        if status in ("completed", "failed", "cancelled", "interrupted"):
            fields["finished_at"] = now_iso()
            fields["error"] = payload.get("error") or ""
            result = payload.get("result") or {}
            if isinstance(result, dict) and result.get("summary"):
                fields["summary"] = result["summary"]
        self.repo.update(rec.id, **fields)

    # ================================================================== presets

    def save_preset(self, name: str, sae: str, interventions: list[Intervention | dict], *,
                    scope: str = "all", description: str = "", overwrite: bool = True) -> Preset:
        identity = self.sae_identity(sae)
        ivs = [i if isinstance(i, Intervention) else Intervention.from_dict(i)
               for i in interventions]
        if not ivs:
            raise UserError("A preset needs at least one intervention.")
        for iv in ivs:
            iv.validate(identity.d_sae)
        if scope not in SCOPES:
            raise UserError(f"Unknown scope {scope!r}.", hint=f"Use one of {', '.join(SCOPES)}.")
        preset = Preset(name.strip(), identity, ivs, scope, description, now_iso())
        self.presets_store.save(preset, overwrite=overwrite)
        return preset

    def presets(self) -> list[Preset]:
        return self.presets_store.list()

    def preset(self, name: str) -> Preset:
        return self.presets_store.get(name)

    def preset_for(self, name: str, sae: str) -> Preset:
        """The preset, checked to belong to ``sae`` (else a clear refusal)."""
        preset = self.presets_store.get(name)
        self.check_preset(preset, sae)
        return preset

    def check_preset(self, preset: Preset, sae: str) -> None:
        identity = self.sae_identity(sae)
        why = preset.sae.mismatch(identity)
        if why:
            raise UserError(f"The preset {preset.name!r} was made for another SAE "
                            f"({preset.sae.name or preset.sae.sae_id or 'unknown'}: {why}).",
                            hint="Feature numbers mean different things in another SAE; pick "
                                 "the SAE the preset was made with.")

    def export_preset(self, name: str, destination: str | Path) -> Path:
        from mistudio.paths import atomic_write_json

        preset = self.presets_store.get(name)
        dest = Path(destination).expanduser()
        if dest.is_dir():
            dest = dest / self.presets_store.path(name).name
        return atomic_write_json(dest, preset.to_dict())

    def import_preset(self, path: str | Path, *, overwrite: bool = False,
                      keep_both: bool = False) -> Preset:
        """``keep_both``: a preset of that name stays; the import gets a free name."""
        preset = self.presets_store.load_file(path)
        if keep_both and not overwrite and self.presets_store.path(preset.name).exists():
            preset.name = self.free_preset_name(preset.name)
        self.presets_store.save(preset, overwrite=overwrite)
        return preset

    def free_preset_name(self, name: str) -> str:
        """``name``, or ``name (2)``, ``(3)``... when a preset has it (any case)."""
        taken = {p.name.lower() for p in self.presets()}
        unique, n = name, 2
        while unique.lower() in taken or self.presets_store.path(unique).exists():
            unique, n = f"{name} ({n})", n + 1
        return unique

    def duplicate_preset(self, name: str, new_name: str | None = None) -> Preset:
        """A copy of the preset under ``new_name`` (default: "<name> copy", made unique)."""
        preset = self.presets_store.get(name)
        if new_name is None:
            preset.name = self.free_preset_name(f"{preset.name} copy")
        else:
            preset.name = self._new_preset_name(new_name)
        self.presets_store.save(preset, overwrite=False)
        return preset

    def rename_preset(self, name: str, new_name: str) -> Preset:
        """The preset under a new name (the file renamed; refused if the name is taken)."""
        preset = self.presets_store.get(name)
        new_name = self._new_preset_name(new_name, allow=preset.name)
        old_path = self.presets_store.path(preset.name)
        preset.name = new_name
        self.presets_store.save(preset, overwrite=old_path == self.presets_store.path(new_name))
        if old_path != self.presets_store.path(new_name):
            self.presets_store.delete(name)
        return preset

    def _new_preset_name(self, new_name: str, allow: str = "") -> str:
        new_name = " ".join(str(new_name).split())
        if not new_name:
            raise UserError("A preset needs a name.")
        own = self.presets_store.path(allow) if allow else None
        clash = self.presets_store.path(new_name)
        same_name = any(p.name.lower() == new_name.lower() and self.presets_store.path(p.name)
                        != own for p in self.presets())
        if same_name or (clash.exists() and clash != own):
            raise UserError(f"A preset named {new_name!r} exists already.",
                            hint="Choose another name.")
        return new_name

    def delete_preset(self, name: str) -> None:
        self.presets_store.get(name)
        self.presets_store.delete(name)


def _bare(index: int) -> dict:
    return {"index": index, "label": "", "top_tokens": [], "max_activation": None,
            "density": None}


def _row(r) -> dict:
    """A row of the analysis' feature table as the picker shows it."""
    tokens = [t for t in (getattr(r, "top_tokens", "") or "").split(" | ") if t]
    return {"index": int(r.feature), "label": getattr(r, "label", "") or "",
            "top_tokens": tokens, "max_activation": float(r.max_act),
            "density": float(r.density)}
