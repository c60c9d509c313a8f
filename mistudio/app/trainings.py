"""``studio.trainings``: every user action on SAE trainings and SAEs (UI, CLI and tests).

A *training* (``tr_...``) is one run of the ``sae.train`` job over one activation set; a sweep
is one training with several SAEs. Its folder ``trainings/<id>/`` holds ``config.json``,
``metrics.jsonl``, ``checkpoints/step_*/``, ``saes/<member>/`` (SAELens layout) and
``result.json``. Resuming submits a new job writing into the same folder; the training's
``job_id`` is the latest job. An *SAE* (``sae_...``) is a SAELens-layout folder, trained here
or imported (SAELens, sparsify, Gemma Scope, from a folder or the Hub).

Metric names are documented in :mod:`mistudio.sae.config`. The module imports no torch;
methods that need it import it inside.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from mistudio.app.activations import ActivationService
from mistudio.app.datasets import DatasetService
from mistudio.app.evaluation_sources import EvaluationSources
from mistudio.app.jobs import ACTIVE, JobRecord, JobService
from mistudio.app.models import ModelService
from mistudio.app.settings import SettingsService
from mistudio.app.training_records import (EVAL_KIND, IMPORT_KIND, TRAIN_KIND, TrainingRecorder,
                                           read_json)
from mistudio.errors import UserError
from mistudio.jobs.context import JobContext
from mistudio.paths import DataPaths, settled_dir
from mistudio.sae.config import TrainingConfig
from mistudio.sae.job import import_job
from mistudio.sae.repository import SAERecord, SAEsRepo, TrainingRecord, TrainingsRepo
from mistudio.store.db import Store, new_id

log = logging.getLogger(__name__)

DEFAULT_EVAL_TOKENS = 4096


class TrainingService:
    def __init__(self, *, store: Store, paths: DataPaths, jobs: JobService,
                 settings: SettingsService, models: ModelService, datasets: DatasetService,
                 activations: ActivationService):
        self.paths = paths
        self.jobs = jobs
        self.settings = settings
        self.models = models
        self.datasets = datasets
        self.activations = activations
        self.trainings_repo = TrainingsRepo(store)
        self.saes_repo = SAEsRepo(store)
        self.recorder = TrainingRecorder(trainings=self.trainings_repo, saes=self.saes_repo,
                                         jobs=jobs)
        self.sources = EvaluationSources(models=models, datasets=datasets)

    # ================================================================== starting

    def resolve_activation_path(self, activation_id: str = "", path: str = "") -> str:
        """The folder of an activation set given its id (or a folder, checked)."""
        if path:
            return str(Path(path).expanduser())
        if not activation_id:
            return ""
        try:
            rec = self.activations.get(activation_id)
            folder = getattr(rec, "folder", None)
            if folder:
                return str(folder)
        except (ModuleNotFoundError, AttributeError):
            pass
        return str(self.paths.entity_dir("activations", activation_id))

    def _check_config(self, cfg: TrainingConfig, path: str, target: str) -> tuple[int, int]:
        from mistudio.activations.format import ActivationSet

        source = ActivationSet(path)
        d_out = source.d_in
        if cfg.is_transcoder:
            out = ActivationSet(target)
            if out.num_rows != source.num_rows:
                raise UserError(
                    f"The transcoder's input and target sets have different numbers of rows "
                    f"({source.num_rows} vs {out.num_rows}).",
                    hint="Extract both hook points from the same run.")
            d_out = out.d_in
        cfg.validate(d_in=source.d_in, d_out=d_out, num_rows=source.num_rows)
        return source.d_in, d_out

    def start_training(self, config: TrainingConfig | dict, *, activation_path: str | None = None,
                       title: str = "", folder: str | Path | None = None) -> JobRecord:
        """Validate ``config`` against its activation set, record the training, queue the job.

        ``folder``: where the training's files go (default ``trainings/<id>/`` in the data
        folder). Returns the job record; the training id is ``job.target``.
        """
        return self.submit_training(*self.prepare_training(
            config, activation_path=activation_path, title=title, folder=folder))

    def prepare_training(self, config: TrainingConfig | dict, *,
                         activation_path: str | None = None, title: str = "",
                         folder: str | Path | None = None, world_size: int = 1
                         ) -> tuple[TrainingRecord, dict]:
        """Validate and record a training (status ``queued``); returns it and the job params
        for :meth:`submit_training`. ``world_size`` > 1: a ``torchrun`` run whose rank 0
        runs the job (the params say so; the other processes run the same params)."""
        cfg = config if isinstance(config, TrainingConfig) else TrainingConfig.from_dict(config)
        path = self.resolve_activation_path(cfg.activation_id, activation_path or cfg.activation_path)
        target = self.resolve_activation_path(cfg.target_activation_id, cfg.target_activation_path)
        onthefly = None
        if cfg.onthefly_model and not path:  # activations computed as training goes
            onthefly, d_in = self.sources.onthefly_spec(cfg)
            d_out = d_in
        elif not path:
            cfg.validate()  # raises "no activation set chosen"
        if onthefly is None:
            d_in, d_out = self._check_config(cfg, path, target)
        self._check_memory(cfg, d_in, d_out)
        if cfg.batch_size % world_size:
            raise UserError(f"The batch size {cfg.batch_size} does not split evenly over "
                            f"{world_size} processes.", hint="Pick a multiple of the process count.")
        training_id = new_id("tr")
        folder = (Path(folder).expanduser().resolve() if folder
                  else self.paths.entity_dir("trainings", training_id))
        name = title or cfg.name or _default_title(
            cfg, path or f"{cfg.onthefly_model} {cfg.hook_name} (on the fly)")
        if world_size > 1:
            name += f" · {world_size} processes"
        members = cfg.members()
        rec = TrainingRecord(
            id=training_id, name=name, status="queued", config=cfg.to_dict(), kind=cfg.kind,
            architecture=",".join(sorted({m.architecture for m in members})),
            num_saes=len(members), activation_id=cfg.activation_id, activation_path=path,
            target_activation_path=target, d_in=d_in, d_out=d_out,
            total_tokens=cfg.total_tokens, folder=str(folder))
        self.trainings_repo.insert(rec)
        params = {"config": cfg.to_dict(), "activation_path": path, "out_dir": str(folder),
                  "training_id": training_id,
                  "evaluation": self._training_evaluation(cfg, path, target, onthefly)}
        if onthefly is not None:
            params["onthefly"] = onthefly
        if target:
            params["target_activation_path"] = target
        if world_size > 1:
            params["distributed"] = {"world_size": int(world_size), "rank": 0}
        return rec, params

    def submit_training(self, rec: TrainingRecord, params: dict) -> JobRecord:
        """Queue the ``sae.train`` job of a training recorded by :meth:`prepare_training`."""
        job_id = new_id("job")  # named first: the recorder finds the training by it
        self.trainings_repo.update(rec.id, job_id=job_id)
        return self.jobs.submit(TRAIN_KIND, params, title=rec.name, target=rec.id,
                                artifact_dir=Path(rec.folder), job_id=job_id)

    def resume_training(self, training_id: str, *, checkpoint: str | int | None = None,
                        total_tokens: int | None = None) -> JobRecord:
        """Continue a stopped training from a checkpoint (path or step; default: the last).

        ``total_tokens`` extends (or shortens) the run; everything else stays as it was.
        """
        from mistudio.sae import checkpoints as ckpt

        tr = self.get_training(training_id)
        if tr.job_id and self.jobs.is_active(tr.job_id):
            raise UserError("That training is still running.", hint="Pause or cancel it first.")
        if tr.status == "completed" and not (total_tokens and int(total_tokens) > tr.tokens):
            raise UserError(
                f"The training {tr.id} is already complete ({tr.tokens:,} of "
                f"{tr.total_tokens:,} tokens); there is nothing to resume.",
                hint=f"To train it further, give a larger budget: `mistudio sae resume {tr.id} "
                     f"--total-tokens N` with N above {tr.tokens:,}.")
        if checkpoint is None or isinstance(checkpoint, int):
            info = ckpt.find_checkpoint(tr.folder, checkpoint)
            if info is None:
                raise UserError("This training has no checkpoint to resume from.",
                                hint="Start it again instead.")
            path = info.path
        else:
            path = str(checkpoint)
            if not (Path(path) / ckpt.STATE_FILE).exists():
                raise UserError(f"The checkpoint {path} no longer exists.",
                                hint="Pick another one from the checkpoint list.")
        cfg = TrainingConfig.from_dict(tr.config)
        if total_tokens:
            cfg = cfg.with_changes(total_tokens=int(total_tokens))
            self.trainings_repo.update(tr.id, config=cfg.to_dict(), total_tokens=cfg.total_tokens)
        onthefly = (self.sources.onthefly_spec(cfg)[0] if cfg.onthefly_model
                    and not tr.activation_path else None)
        params = {"config": cfg.to_dict(), "activation_path": tr.activation_path,
                  "out_dir": tr.folder, "training_id": tr.id, "resume_from": path,
                  "evaluation": self._training_evaluation(cfg, tr.activation_path,
                                                          tr.target_activation_path, onthefly)}
        if onthefly is not None:
            params["onthefly"] = onthefly
        if tr.target_activation_path:
            params["target_activation_path"] = tr.target_activation_path
        title = tr.name if tr.name.endswith("(resumed)") else f"{tr.name} (resumed)"
        # the row names the new job before it runs: a resume from the final checkpoint ends
        # at once, and the recorder ignores the events of a job the row does not name
        job_id = new_id("job")
        self._mark_superseded(tr.job_id, job_id)
        self.trainings_repo.update(tr.id, job_id=job_id, status="queued", error="",
                                   finished_at=None)
        return self.jobs.submit(TRAIN_KIND, params, title=title, target=tr.id,
                                artifact_dir=Path(tr.folder), job_id=job_id)


    def _mark_superseded(self, old_job_id: str, new_job_id: str) -> None:
        """The stopped job a resume continues is ``resumed`` (no longer "interrupted":
        nothing is left to do about it); a failed one keeps its error."""
        old = self.jobs.find(old_job_id) if old_job_id else None
        if old is None or old.id == new_job_id:
            return
        message = f"Continued by job {new_job_id}."
        if old.status in ("interrupted", "cancelled"):
            self.jobs.note(old.id, message, status="resumed")
        elif old.status == "failed":
            self.jobs.note(old.id, message)

    def can_resume(self, training_id: str) -> bool:
        """Whether "resume" may be offered: stopped (not completed) with a checkpoint."""
        from mistudio.sae.checkpoints import find_checkpoint

        tr = self.get_training(training_id)
        if tr.status not in ("interrupted", "cancelled", "failed"):
            return False
        if tr.job_id and self.jobs.is_active(tr.job_id):
            return False
        return find_checkpoint(tr.folder) is not None

    def pause_training(self, training_id: str) -> bool:
        return self.jobs.pause(self.get_training(training_id).job_id)

    def unpause_training(self, training_id: str) -> bool:
        return self.jobs.resume(self.get_training(training_id).job_id)

    def cancel_training(self, training_id: str) -> bool:
        """Stop the training; it writes a checkpoint where it stopped, so it can resume."""
        return self.jobs.cancel(self.get_training(training_id).job_id)

    # ================================================================== reading

    def list_trainings(self, status: list[str] | None = None) -> list[TrainingRecord]:
        recs = self.trainings_repo.list()
        for rec in recs:
            if rec.status in ACTIVE and rec.job_id:
                self.recorder.sync_from_job(rec.job_id)
        recs = self.trainings_repo.list(status)
        return recs

    def get_training(self, training_id: str) -> TrainingRecord:
        rec = self.trainings_repo.get(training_id)
        if rec is None:
            matches = [r for r in self.trainings_repo.list() if r.id.startswith(training_id)]
            if len(matches) != 1:
                raise UserError(f"No training with id {training_id!r}.",
                                hint="`mistudio sae trainings` lists them.")
            rec = matches[0]
        if rec.status in ACTIVE and rec.job_id:
            self.recorder.sync_from_job(rec.job_id)
            rec = self.trainings_repo.get(rec.id)
        return rec

    def training_dir(self, training_id: str) -> Path:
        return Path(self.get_training(training_id).folder)

    def list_checkpoints(self, training_id: str) -> list:
        """:class:`~mistudio.sae.checkpoints.CheckpointInfo` list, oldest first."""
        from mistudio.sae.checkpoints import list_checkpoints

        return list_checkpoints(self.training_dir(training_id))

    def delete_checkpoint(self, training_id: str, step: int) -> None:
        tr = self.get_training(training_id)
        if tr.job_id and self.jobs.is_active(tr.job_id):
            raise UserError("The training is running; it manages its checkpoints itself.",
                            hint="Pause or stop it first.")
        for c in self.list_checkpoints(tr.id):
            if c.step == step:
                shutil.rmtree(c.path)
                self.recorder.sync_checkpoints(tr)
                return
        raise UserError(f"No checkpoint at step {step}.")

    def metrics(self, training_id: str) -> list[dict]:
        """The training's metric history, one row per logged step, oldest first:
        ``{"step", "time", <metric>: value, ...}``.

        The database is the source of truth (``job_metrics``, written by the job queue for
        every job of the training: a resume is a new job, whose points replace the earlier
        job's from its first step on); ``metrics.jsonl`` in the training folder is the same
        history written beside the SAE for other tools."""
        tr = self.get_training(training_id)
        jobs = sorted(self.jobs.list(target=tr.id, kind=TRAIN_KIND),
                      key=lambda j: j.created_at)
        by_step: dict[float, dict] = {}
        cut = float("inf")
        for job in reversed(jobs):  # later jobs first: they own the steps from their start on
            points = [p for p in self.jobs.metrics(job.id) if p["step"] < cut]
            for p in points:
                row = by_step.setdefault(p["step"], {"step": int(p["step"]), "time": p["t"]})
                row[p["name"]] = p["value"]
            if points:
                cut = min(p["step"] for p in points)
        return [by_step[s] for s in sorted(by_step)]

    # ------------------------------------------------------------------ the Training tab's jobs

    def training_jobs(self) -> list[JobRecord]:
        """Every training job (a resume adds one to its training), oldest first."""
        return sorted(self.jobs.list(kind=TRAIN_KIND), key=lambda j: j.created_at)

    def records(self) -> list[TrainingRecord]:
        """The training rows as stored (no reconciling with running jobs: any thread)."""
        return self.trainings_repo.list()

    @staticmethod
    def job_dir(job: JobRecord) -> Path:
        """The folder a training job writes into."""
        return Path(job.params.get("out_dir") or job.artifact_dir)

    def job_checkpoints(self, job: JobRecord) -> list:
        """The complete checkpoints in ``job``'s training folder, oldest first (torch-free)."""
        from mistudio.sae.checkpoints import list_checkpoints

        return list_checkpoints(self.job_dir(job))

    def job_can_resume(self, job: JobRecord) -> bool:
        """Whether "resume" may be offered for this job: stopped with a checkpoint."""
        if job.status not in ("interrupted", "cancelled", "failed"):
            return False
        return not self.jobs.is_active(job.id) and bool(self.job_checkpoints(job))

    def job_result(self, job: JobRecord) -> dict | None:
        """What a finished job returned (from the table, else its folder's result.json)."""
        if isinstance(job.result, dict):
            return job.result
        try:
            return json.loads((self.job_dir(job) / "result.json").read_text("utf-8"))
        except (OSError, ValueError):
            return None

    @staticmethod
    def settings_to_duplicate(job: JobRecord) -> dict:
        """The job's settings, for a new training (the form is filled with them)."""
        config = dict(job.params.get("config") or {})
        config.pop("member_name", None)
        return config

    def delete_checkpoint_at(self, training_id: str, path: str | Path) -> None:
        """Delete the checkpoint in folder ``path`` of the training."""
        for c in self.list_checkpoints(training_id):
            if Path(c.path) == Path(path):
                return self.delete_checkpoint(training_id, c.step)
        raise UserError("That checkpoint no longer exists.")

    def list_saes(self, training_id: str | None = None) -> list[SAERecord]:
        return self.saes_repo.list(training_id)

    def get_sae(self, sae_id: str) -> SAERecord:
        rec = self.saes_repo.get(sae_id)
        if rec is None:
            matches = [r for r in self.saes_repo.list() if r.id.startswith(sae_id)]
            if len(matches) != 1:
                raise UserError(f"No SAE with id {sae_id!r}.", hint="`mistudio sae list` shows them.")
            rec = matches[0]
        settled_dir(rec.folder)  # its files re-saved (an export, a resume) and killed mid-swap
        return rec

    def load_sae(self, sae_id: str, device: str = "cpu"):
        """The SAE as a torch module (``encode``/``decode`` on raw activations)."""
        from mistudio.sae.formats import load_sae

        return load_sae(self.get_sae(sae_id).folder, device=device)[0]

    def estimate(self, config: TrainingConfig | dict, d_in: int, d_out: int | None = None) -> dict:
        """Rough memory needs in bytes: weights, Adam state, activations per step, total."""
        from mistudio.sae.memory import estimate_training_memory

        cfg = config if isinstance(config, TrainingConfig) else TrainingConfig.from_dict(config)
        return estimate_training_memory(cfg, d_in, d_out)

    def _check_memory(self, cfg: TrainingConfig, d_in: int, d_out: int) -> None:
        from mistudio.sae.memory import check_training_fits

        check_training_fits(cfg, d_in, d_out)

    # ================================================================== spliced evaluation

    def evaluation_spec(self, sae_id: str, *, model: str = "", tokenization: str = "",
                        hook_name: str = ""):
        """Where to splice an SAE in (:class:`~mistudio.sae.evaluation.EvalSpec`).

        A trained SAE uses its activation set's model, hook point and tokenization (the
        sequences after the extracted ones: held out). An imported SAE needs a registered
        ``model`` (default: the one named in its files) and takes a ``tokenization`` made
        with that model's tokenizer (default: the newest such one).
        """
        rec = self.get_sae(sae_id)
        if rec.training_id:
            tr = self.get_training(rec.training_id)
            return self.sources.spec_from_activations(tr.activation_path, tr.target_activation_path,
                                               model=model, tokenization=tokenization,
                                               hook_name=hook_name)
        from mistudio.sae.evaluation import EvalSpec

        model_rec = (self.sources.model(model, "", given=True) if model
                     else self.sources.model(rec.model_name, ""))
        cfg = read_json(Path(rec.folder) / "cfg.json")
        hook = hook_name or rec.hook_name
        if not hook:
            raise UserError("The SAE's files do not name its hook point.",
                            hint="Give it: --hook blocks.<layer>.hook_resid_post (or the "
                            "hook point it was trained on).")
        self.sources.check_hook(model_rec, hook)
        return EvalSpec(model_folder=model_rec.folder, model_name=model_rec.name,
                        trust_remote_code=model_rec.trust_remote_code,
                        tokenization=self.sources.tokenization(tokenization, model_rec),
                        hook_name=hook,
                        hook_name_out=(cfg.get("metadata") or {}).get("hook_name_out") or "",
                        start_seq=0, held_out=None)

    def start_evaluation(self, sae_id: str, *, tokens: int = DEFAULT_EVAL_TOKENS,
                         model: str = "", tokenization: str = "", hook_name: str = "",
                         device: str = "auto") -> JobRecord:
        """Queue ``sae.evaluate``: CE loss score and KL score with the SAE spliced into its
        model on ``tokens`` held-out tokens. The SAE's record gets the metrics when done."""
        if int(tokens) < 1:
            raise UserError(f"Evaluate on at least one token (got {tokens}).")
        rec = self.get_sae(sae_id)
        spec = self.evaluation_spec(rec.id, model=model, tokenization=tokenization,
                                    hook_name=hook_name)
        return self.jobs.submit(
            EVAL_KIND, {"sae_id": rec.id, "sae_folder": rec.folder, "spec": spec.to_dict(),
                        "tokens": int(tokens), "device": device},
            title=f"Evaluate {rec.name or rec.id} in {spec.model_name or 'its model'}",
            target=rec.id)


    def _training_evaluation(self, cfg: TrainingConfig, path: str, target: str = "",
                             onthefly: dict | None = None) -> dict:
        """The training job's ``evaluation`` param: a spec, or why there is none."""
        if not cfg.eval_tokens:
            return {}
        if onthefly is not None:  # the training saw every sequence: not held out
            from mistudio.sae.evaluation import EvalSpec

            return {"spec": EvalSpec(
                model_folder=onthefly["model_folder"], model_name=onthefly["model_name"],
                trust_remote_code=onthefly["trust_remote_code"],
                tokenization=onthefly["tokenization"], hook_name=onthefly["hook_name"],
                held_out=False).to_dict()}
        try:
            return {"spec": self.sources.spec_from_activations(path, target).to_dict()}
        except UserError as exc:
            return {"skip_reason": str(exc)}

    # ================================================================== SAE files

    def export_saelens(self, source_id: str, member: str | None = None,
                       destination: str | Path = "") -> Path:
        """Copy an SAE (by SAE id, or training id + member) to ``destination`` (SAELens layout).

        One rule: ``destination`` is the folder that will hold the SAE's files (``cfg.json``,
        ``sae_weights.safetensors``, ...); it is created if missing and must otherwise be an
        empty folder. A file or a folder that already holds something is refused (nothing is
        overwritten or nested). Returns the folder.
        """
        if source_id.startswith("tr_") or (member and not source_id.startswith("sae_")):
            tr = self.get_training(source_id)
            saes = self.list_saes(tr.id)
            pick = [s for s in saes if not member or s.member == member]
            if not pick:
                raise UserError(f"The training has no finished SAE{f' {member!r}' if member else ''}.",
                                hint="Only completed trainings have exportable SAEs.")
            rec = pick[0]
        else:
            rec = self.get_sae(source_id)
        if not destination:
            raise UserError("Choose a folder to export to.")
        dest = Path(destination).expanduser()
        suggestion = dest / (rec.member if rec.member and rec.member != "sae" else rec.id)
        if dest.exists() and not dest.is_dir():
            raise UserError(f"{dest} is a file; an SAE is exported as a folder of files.",
                            hint=f"Give a folder path (created if missing), e.g. {suggestion}.")
        if dest.is_dir() and any(dest.iterdir()):
            raise UserError(f"{dest} already holds files; an SAE is exported into a new or "
                            "empty folder, so nothing there is overwritten.",
                            hint=f"Choose a new folder, e.g. {suggestion}.")
        if any(p.exists() and not p.is_dir() for p in dest.parents):
            raise UserError(f"Cannot create the folder {dest}: a part of its path is a file.",
                            hint="Choose a folder path.")
        from mistudio.paths import atomic_dir

        with atomic_dir(dest) as tmp:
            for f in Path(rec.folder).iterdir():
                if f.is_file():
                    shutil.copy2(f, tmp / f.name)
        return dest

    def import_sae(self, source: str, *, subfolder: str = "", name: str = "",
                   revision: str | None = None) -> SAERecord:
        """Import an SAE from a local folder or a Hub repo id (+ ``subfolder``), synchronously.

        The SAE is re-saved in SAELens layout under ``trainings/<sae_id>/``; originals outside
        the data folder are never modified.
        """
        result = import_job({"source": source, "subfolder": subfolder, "revision": revision,
                             "sae_id": new_id("sae"), "name": name,
                             "data_dir": str(self.paths.root),
                             "token": self.settings.hf_token},
                            JobContext.standalone(None))
        return self.recorder.record_import(result)

    def start_import(self, source: str, *, subfolder: str = "", name: str = "") -> JobRecord:
        """:meth:`import_sae` as a background job (the record appears when it completes)."""
        folder = Path(source).expanduser() / subfolder
        if folder.is_dir():  # a local folder without an SAE is refused now, not by a job
            from mistudio.sae.formats import detect_format

            detect_format(folder)
        sae_id = new_id("sae")
        return self.jobs.submit(IMPORT_KIND, {
            "source": source, "subfolder": subfolder, "sae_id": sae_id, "name": name,
            "data_dir": str(self.paths.root)}, title=f"Import SAE {source}", target=sae_id)

    # ================================================================== deleting

    def delete_training(self, training_id: str) -> None:
        """Delete the training, its jobs, its SAEs' records and its folder."""
        tr = self.get_training(training_id)
        jobs = self.jobs.list(target=tr.id)
        if any(self.jobs.is_active(j.id) for j in jobs):
            raise UserError("That training is still running.", hint="Cancel it first.")
        self.saes_repo.delete_for_training(tr.id)
        self.trainings_repo.delete(tr.id)
        for j in jobs:
            self.jobs.delete(j.id)
        self._remove_folder(Path(tr.folder))


    def delete_sae(self, sae_id: str) -> None:
        rec = self.get_sae(sae_id)
        self.saes_repo.delete(rec.id)
        if rec.source == "imported":
            self._remove_folder(Path(rec.folder))

    def _remove_folder(self, folder: Path) -> None:
        root = self.paths.root.resolve()
        if folder.exists() and root in folder.resolve().parents:  # never outside the data dir
            shutil.rmtree(folder, ignore_errors=True)

def _default_title(cfg: TrainingConfig, path: str) -> str:
    width = f"{cfg.d_sae:,} latents" if cfg.d_sae else f"×{cfg.expansion_factor:g}"
    sweep = f" sweep {', '.join(cfg.sweep)}" if cfg.sweep else ""
    return f"{cfg.architecture} {width}{sweep} · {Path(path).name}"


