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
import threading
from pathlib import Path

from mistudio.errors import UserError
from mistudio.jobs.context import JobContext
from mistudio.sae.config import TOPK_FAMILY, TrainingConfig
from mistudio.sae.job import import_job  # noqa: F401 - the sae.import job kind names it here
from mistudio.sae.repository import SAERecord, SAEsRepo, TrainingRecord, TrainingsRepo
from mistudio.store.db import new_id, now_iso
from mistudio.jobs.repository import ACTIVE, JobRecord

log = logging.getLogger(__name__)

TRAIN_KIND = "sae.train"
IMPORT_KIND = "sae.import"
CATALOGUE_KIND = "sae.catalogue_download"  # (mistudio.app.sae_catalogue) recorded as imports
EVAL_KIND = "sae.evaluate"
DEFAULT_EVAL_TOKENS = 4096


class TrainingService:
    def __init__(self, studio):
        self.studio = studio
        self.trainings_repo = TrainingsRepo(studio.store)
        self.saes_repo = SAEsRepo(studio.store)
        self._sync_lock = threading.RLock()  # the listener and readers both reconcile
        studio.add_job_listener(self._on_job_event, records=True)

    # ================================================================== starting

    def resolve_activation_path(self, activation_id: str = "", path: str = "") -> str:
        """The folder of an activation set given its id (or a folder, checked)."""
        if path:
            return str(Path(path).expanduser())
        if not activation_id:
            return ""
        try:
            rec = self.studio.activations.get(activation_id)
            folder = getattr(rec, "folder", None)
            if folder:
                return str(folder)
        except (ModuleNotFoundError, AttributeError):
            pass
        return str(self.studio.paths.entity_dir("activations", activation_id))

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
            onthefly, d_in = self._onthefly_spec(cfg)
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
                  else self.studio.paths.entity_dir("trainings", training_id))
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
        job = self.studio.submit_job(TRAIN_KIND, params, title=rec.name, target=rec.id,
                                     artifact_dir=Path(rec.folder))
        self.trainings_repo.update(rec.id, job_id=job.id)
        return job

    def resume_training(self, training_id: str, *, checkpoint: str | int | None = None,
                        total_tokens: int | None = None) -> JobRecord:
        """Continue a stopped training from a checkpoint (path or step; default: the last).

        ``total_tokens`` extends (or shortens) the run; everything else stays as it was.
        """
        from mistudio.sae import checkpoints as ckpt

        tr = self.get_training(training_id)
        if tr.job_id and self.studio.queue.is_active(tr.job_id):
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
        onthefly = (self._onthefly_spec(cfg)[0] if cfg.onthefly_model
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
        job = self.studio.submit_job(TRAIN_KIND, params, title=title, target=tr.id,
                                     artifact_dir=Path(tr.folder))
        self._mark_superseded(tr.job_id, job.id)
        self.trainings_repo.update(tr.id, job_id=job.id, status="queued", error="",
                                   finished_at=None)
        return job


    def _mark_superseded(self, old_job_id: str, new_job_id: str) -> None:
        """The stopped job a resume continues is ``resumed`` (no longer "interrupted":
        nothing is left to do about it); a failed one keeps its error."""
        old = self.studio.jobs_repo.get(old_job_id) if old_job_id else None
        if old is None or old.id == new_job_id:
            return
        message = f"Continued by job {new_job_id}."
        if old.status in ("interrupted", "cancelled"):
            self.studio.jobs_repo.update(old.id, status="resumed", message=message)
        elif old.status == "failed":
            self.studio.jobs_repo.update(old.id, message=message)

    def can_resume(self, training_id: str) -> bool:
        """Whether "resume" may be offered: stopped (not completed) with a checkpoint."""
        from mistudio.sae.checkpoints import find_checkpoint

        tr = self.get_training(training_id)
        if tr.status not in ("interrupted", "cancelled", "failed"):
            return False
        if tr.job_id and self.studio.queue.is_active(tr.job_id):
            return False
        return find_checkpoint(tr.folder) is not None

    def pause_training(self, training_id: str) -> bool:
        return self.studio.pause_job(self.get_training(training_id).job_id)

    def unpause_training(self, training_id: str) -> bool:
        return self.studio.resume_job(self.get_training(training_id).job_id)

    def cancel_training(self, training_id: str) -> bool:
        """Stop the training; it writes a checkpoint where it stopped, so it can resume."""
        return self.studio.cancel_job(self.get_training(training_id).job_id)

    # ================================================================== reading

    def list_trainings(self, status: list[str] | None = None) -> list[TrainingRecord]:
        recs = self.trainings_repo.list()
        for rec in recs:
            if rec.status in ACTIVE and rec.job_id:
                self._sync_from_job(rec.job_id)
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
            self._sync_from_job(rec.job_id)
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
        if tr.job_id and self.studio.queue.is_active(tr.job_id):
            raise UserError("The training is running; it manages its checkpoints itself.",
                            hint="Pause or stop it first.")
        for c in self.list_checkpoints(tr.id):
            if c.step == step:
                shutil.rmtree(c.path)
                self._sync_checkpoints(tr)
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
        jobs = sorted(self.studio.jobs.list(target=tr.id, kind=TRAIN_KIND),
                      key=lambda j: j.created_at)
        by_step: dict[float, dict] = {}
        cut = float("inf")
        for job in reversed(jobs):  # later jobs first: they own the steps from their start on
            points = [p for p in self.studio.jobs.metrics(job.id) if p["step"] < cut]
            for p in points:
                row = by_step.setdefault(p["step"], {"step": int(p["step"]), "time": p["t"]})
                row[p["name"]] = p["value"]
            if points:
                cut = min(p["step"] for p in points)
        return [by_step[s] for s in sorted(by_step)]

    # ------------------------------------------------------------------ the Training tab's jobs

    def training_jobs(self) -> list[JobRecord]:
        """Every training job (a resume adds one to its training), oldest first."""
        return sorted(self.studio.jobs.list(kind=TRAIN_KIND), key=lambda j: j.created_at)

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
        return not self.studio.jobs.is_active(job.id) and bool(self.job_checkpoints(job))

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
            return self._spec_from_activations(tr.activation_path, tr.target_activation_path,
                                               model=model, tokenization=tokenization,
                                               hook_name=hook_name)
        from mistudio.sae.evaluation import EvalSpec

        model_rec = self._eval_model(model or rec.model_name, "")
        cfg = _read_json(Path(rec.folder) / "cfg.json")
        hook = hook_name or rec.hook_name
        if not hook:
            raise UserError("The SAE's files do not name its hook point.",
                            hint="Give it: --hook blocks.<layer>.hook_resid_post (or the "
                            "hook point it was trained on).")
        return EvalSpec(model_folder=model_rec.folder, model_name=model_rec.name,
                        trust_remote_code=model_rec.trust_remote_code,
                        tokenization=self._eval_tokenization(tokenization, model_rec),
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
        return self.studio.submit_job(
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
            return {"spec": self._spec_from_activations(path, target).to_dict()}
        except UserError as exc:
            return {"skip_reason": str(exc)}

    def _spec_from_activations(self, path: str, target: str = "", *, model: str = "",
                               tokenization: str = "", hook_name: str = ""):
        from mistudio.activations.format import ActivationSet
        from mistudio.sae.evaluation import EvalSpec, held_out_start

        try:
            meta = ActivationSet(path).meta
        except (OSError, UserError) as exc:
            raise UserError(f"The activation set {path} cannot be read ({exc}).",
                            hint="Evaluate with a model and tokenization given explicitly.") \
                from exc
        model_rec = self._eval_model(model or meta.get("model_id") or "",
                                     meta.get("model_name") or "")
        own_tokens = str(meta.get("tokenization") or "")
        tok_folder = self._eval_tokenization(tokenization or own_tokens, model_rec)
        same = bool(own_tokens) and Path(tok_folder).resolve() == Path(own_tokens).resolve()
        hook_out = ""
        if target:
            try:
                hook_out = ActivationSet(target).hook_name
            except (OSError, UserError):
                hook_out = ""
        hook = hook_name or str(meta.get("hook_name") or "")
        if not hook:
            raise UserError("The activation set does not name its hook point.",
                            hint="Give the hook point to evaluate at.")
        return EvalSpec(model_folder=model_rec.folder, model_name=model_rec.name,
                        trust_remote_code=model_rec.trust_remote_code,
                        model_dtype=str(meta.get("model_dtype") or "auto"),
                        tokenization=tok_folder, hook_name=hook, hook_name_out=hook_out,
                        start_seq=held_out_start(path) if same else 0,
                        held_out=True if same else None)

    def _onthefly_spec(self, cfg: TrainingConfig) -> tuple[dict, int]:
        """The job's ``onthefly`` source spec (model and tokenization resolved to folders)
        and the input width; the settings are validated against the tokenization."""
        from mistudio.activations.extract import count_valid_tokens
        from mistudio.data.tokenized import TokenizedDataset

        model = self.studio.models.require_ready(cfg.onthefly_model)
        tok_folder = self._eval_tokenization(cfg.onthefly_tokenization, model)
        tok = TokenizedDataset(Path(tok_folder))
        if model.tokenizer_fingerprint and tok.fingerprint != model.tokenizer_fingerprint:
            raise UserError(f"The tokenization was made with another tokenizer than "
                            f"{model.name}'s.", hint="Pick one made with this model.")
        num_rows = count_valid_tokens(tok, True, tok.meta.get("bos_token_id"))
        d_in = int(model.d_model or 0)
        cfg.validate(d_in=d_in or None, num_rows=num_rows)
        spec = {"model_folder": model.folder, "model_name": model.name, "model_id": model.id,
                "trust_remote_code": model.trust_remote_code, "tokenization": tok_folder,
                "hook_name": cfg.hook_name, "batch_sequences": cfg.onthefly_batch_sequences,
                "buffer_rows": cfg.shuffle_buffer_tokens, "model_dtype": "auto"}
        return spec, d_in

    def _eval_model(self, ref: str, name: str):
        label = name or ref
        if not ref:
            raise UserError(
                f"The activations were not extracted from a model registered in the app"
                f"{f' (they name {name!r})' if name else ''}, so the SAE cannot be spliced in.",
                hint="Add the model in the Models tab, then evaluate the SAE with it "
                     "(`mistudio sae evaluate ID --model NAME --tokenization ID`).")
        try:
            return self.studio.models.require_ready(ref)
        except UserError as exc:
            raise UserError(f"The model {label!r} is not available in the app: {exc}",
                            hint="Add (or finish adding) it in the Models tab, then evaluate "
                                 "with `mistudio sae evaluate`.") from exc

    def _eval_tokenization(self, tokenization: str, model_rec) -> str:
        if tokenization:
            path = Path(tokenization).expanduser()
            if path.is_dir():
                return str(path)
            try:
                return str(self.studio.datasets.get_tokenization(tokenization).path)
            except UserError:
                raise UserError(f"No tokenization {tokenization!r}.",
                                hint="Give a tokenization id (Datasets tab) or folder.") from None
        fitting = [t for t in self.studio.datasets.tokenizations()
                   if t.status == "ready" and model_rec.tokenizer_fingerprint
                   and t.tokenizer_fingerprint == model_rec.tokenizer_fingerprint]
        if not fitting:
            raise UserError(f"No tokenization was made with {model_rec.name}'s tokenizer.",
                            hint="Tokenize a dataset with this model in the Datasets tab, or "
                                 "give a tokenization.")
        return str(fitting[0].path)

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
                             "data_dir": str(self.studio.paths.root),
                             "token": self.studio.hf_token},
                            JobContext.standalone(None))
        return self._record_import(result)

    def start_import(self, source: str, *, subfolder: str = "", name: str = "") -> JobRecord:
        """:meth:`import_sae` as a background job (the record appears when it completes)."""
        sae_id = new_id("sae")
        return self.studio.submit_job(IMPORT_KIND, {
            "source": source, "subfolder": subfolder, "sae_id": sae_id, "name": name,
            "data_dir": str(self.studio.paths.root)}, title=f"Import SAE {source}", target=sae_id)

    def _record_import(self, result: dict) -> SAERecord:
        rec = SAERecord(**{k: result[k] for k in (
            "id", "folder", "name", "source_ref", "format", "architecture", "kind", "d_in",
            "d_sae", "d_out", "k", "model_name", "hook_name")}, source="imported")
        return self.saes_repo.insert(rec)

    # ================================================================== deleting

    def delete_training(self, training_id: str) -> None:
        """Delete the training, its jobs, its SAEs' records and its folder."""
        tr = self.get_training(training_id)
        jobs = self.studio.jobs_repo.list(target=tr.id)
        if any(self.studio.queue.is_active(j.id) for j in jobs):
            raise UserError("That training is still running.", hint="Cancel it first.")
        self.saes_repo.delete_for_training(tr.id)
        self.trainings_repo.delete(tr.id)
        for j in jobs:
            self.studio.delete_job(j.id)
        self._remove_folder(Path(tr.folder))


    def delete_sae(self, sae_id: str) -> None:
        rec = self.get_sae(sae_id)
        self.saes_repo.delete(rec.id)
        if rec.source == "imported":
            self._remove_folder(Path(rec.folder))

    def _remove_folder(self, folder: Path) -> None:
        root = self.studio.paths.root.resolve()
        if folder.exists() and root in folder.resolve().parents:  # never outside the data dir
            shutil.rmtree(folder, ignore_errors=True)

    # ================================================================== job events

    def _on_job_event(self, job_id: str, kind: str, payload: dict) -> None:
        if kind not in ("status", "checkpoint"):
            return
        try:
            if kind == "checkpoint":
                job = self.studio.jobs_repo.get(job_id)
                if job and job.kind == TRAIN_KIND and job.target:
                    self.trainings_repo.update(job.target, step=int(payload.get("step", 0)),
                                               tokens=int(payload.get("tokens", 0)))
                    tr = self.trainings_repo.get(job.target)
                    if tr:
                        self._sync_checkpoints(tr)
            else:
                self._sync_from_job(job_id, payload.get("status"), payload)
        except Exception:  # a listener must never break the job
            log.exception("could not record a training event")

    def _sync_from_job(self, job_id: str, status: str | None = None,
                       payload: dict | None = None) -> None:
        with self._sync_lock:
            self._sync_from_job_locked(job_id, status, payload)

    def _sync_from_job_locked(self, job_id: str, status: str | None,
                              payload: dict | None) -> None:
        job = self.studio.jobs_repo.get(job_id)
        if job is None or not job.target:
            return
        if job.kind == EVAL_KIND:
            result = (payload or {}).get("result") or job.result
            if (status or job.status) == "completed" and result:
                rec = self.saes_repo.get(job.target)
                if rec is not None:
                    self.saes_repo.update_metrics(rec.id, {
                        **rec.metrics, **result.get("metrics", {}),
                        "eval_held_out": result.get("held_out")})
            return
        if job.kind in (IMPORT_KIND, CATALOGUE_KIND):
            if (status or job.status) == "completed" and (payload or {}).get("result"):
                if self.saes_repo.get(job.target) is None:
                    self._record_import(payload["result"])
            return
        if job.kind != TRAIN_KIND:
            return
        tr = self.trainings_repo.get(job.target)
        if tr is None or tr.job_id not in ("", job.id):
            return
        status = status or job.status
        if status == "running" and self.studio.queue.is_active(job.id) is False:
            status = job.status
        fields = {"status": status}
        if status in ("completed", "failed", "cancelled", "interrupted"):
            fields["finished_at"] = job.finished_at or now_iso()
            fields["error"] = job.error if status == "failed" else ""
        if status == "completed":
            result = (payload or {}).get("result") or job.result or _read_result(tr.folder)
            if result:
                fields.update(result=result, tokens=int(result.get("tokens", 0)),
                              step=int(result.get("step", 0)))
                self._register_saes(tr, result)
        self.trainings_repo.update(tr.id, **fields)
        if status not in ACTIVE:
            self._sync_checkpoints(tr)

    def _register_saes(self, tr: TrainingRecord, result: dict) -> None:
        existing = {s.member: s for s in self.saes_repo.list(tr.id)}
        cfg = TrainingConfig.from_dict(tr.config)
        members = {m.member_name: m for m in cfg.members()}
        for item in result.get("saes", []):
            old = existing.get(item["member"])
            m = members.get(item["member"], cfg)
            cfg_json = _read_json(Path(item["path"]) / "cfg.json")
            meta = cfg_json.get("metadata") or {}
            self.saes_repo.insert(SAERecord(
                id=old.id if old else new_id("sae"), folder=item["path"], source="trained",
                name=f"{tr.name} · {item['member']}" if len(result["saes"]) > 1 else tr.name,
                training_id=tr.id, member=item["member"], architecture=item["architecture"],
                kind=m.kind, d_in=item["d_in"], d_sae=item["d_sae"], d_out=tr.d_out or item["d_in"],
                k=item.get("k") if item["architecture"] in TOPK_FAMILY else None,
                model_name=meta.get("model_name") or "", hook_name=meta.get("hook_name") or "",
                metrics={**(item.get("metrics") or {}),
                         **({"eval_held_out": item.get("eval_held_out")}
                            if "ce_loss_score" in (item.get("metrics") or {}) else {})}))

    def _sync_checkpoints(self, tr: TrainingRecord) -> None:
        from mistudio.sae.checkpoints import list_checkpoints  # torch-free listing

        rows = [{"step": c.step, "tokens": c.tokens, "path": c.path,
                 "created_at": str(c.created_at)} for c in list_checkpoints(tr.folder)]
        self.trainings_repo.set_checkpoints(tr.id, rows)


def _default_title(cfg: TrainingConfig, path: str) -> str:
    width = f"{cfg.d_sae:,} latents" if cfg.d_sae else f"×{cfg.expansion_factor:g}"
    sweep = f" sweep {', '.join(cfg.sweep)}" if cfg.sweep else ""
    return f"{cfg.architecture} {width}{sweep} · {Path(path).name}"


def _read_json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _read_result(folder: str) -> dict | None:
    return _read_json(Path(folder) / "result.json") or None
