"""Training workflows that span several jobs (Qt-free, torch-free at import).

**Extract, then train.** A user who has a model, a tokenized dataset and a hook point but
no activation set yet starts one *chain*: :meth:`TrainingWorkflows.start_extract_then_train`
queues the extraction job (``ActivationService``) and records the chain; a job-queue
listener sees the extraction end and then starts the training (``TrainingService``) on the
new activation set. Cancelling the extraction cancels the chain (no training starts, even when the
extraction completes just as Cancel is clicked: the activations are then kept); a
failed extraction, or a training that cannot start on what was extracted, leaves the chain
``failed`` with a message that says which step failed and why. An extraction cut off by a
closed app leaves the chain ``interrupted``; :meth:`resume` continues the extraction from its
last shard (or, if the activations are complete, starts the training). Once the training
has started, the chain is done: the training is an ordinary training from then on.

Chains are kept in the SQLite store (table ``workflow_chains``), so they survive restarts;
when the service starts it settles chains whose extraction ended while no listener was
running. :meth:`TrainingWorkflows.start_checkpoint_export` queues the export of an
intermediate checkpoint (job ``training.export_checkpoint``,
:mod:`mistudio.sae.checkpoint_export`).
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable

from mistudio.app.activations import ActivationService
from mistudio.app.datasets import DatasetService
from mistudio.app.jobs import FINISHED, JobRecord, JobService
from mistudio.app.models import ModelService
from mistudio.app.trainings import TrainingService
from mistudio.errors import UserError
from mistudio.store.db import Store, new_id, now_iso


log = logging.getLogger(__name__)

EXPORT_KIND = "training.export_checkpoint"
CHAINS_TABLE = "workflow_chains"
#: chain states; "training_started" is the end of a chain (the training takes over)
EXTRACTING, STARTED, FAILED, CANCELLED, INTERRUPTED = (
    "extracting", "training_started", "failed", "cancelled", "interrupted")
OPEN_STATES = (EXTRACTING, FAILED, CANCELLED, INTERRUPTED)


@dataclass
class ExtractThenTrain:
    """One chain: extract ``hook_name`` of ``model_id`` over ``tokenization``, then train."""

    id: str
    title: str
    status: str
    model_id: str
    model_name: str
    tokenization: str
    hook_name: str
    extraction: dict = field(default_factory=dict)  # start_extraction keyword settings
    config: dict = field(default_factory=dict)  # TrainingConfig dict (no activation set)
    activation_set_id: str = ""
    extraction_job_id: str = ""
    training_id: str = ""
    training_job_id: str = ""
    error: str = ""
    #: Cancel was clicked while the chain extracted: the training must not start, even if
    #: the extraction completes anyway (the click came after its last cancel check)
    cancel_requested: bool = False
    created_at: str = ""
    updated_at: str = ""

    @classmethod
    def from_dict(cls, d: dict) -> "ExtractThenTrain":
        known = {f.name for f in fields(cls)}
        d = dict(d)
        if "hook_name" not in d and "hook_point" in d:  # chains saved before the rename
            d["hook_name"] = d["hook_point"]
        return cls(**{k: v for k, v in d.items() if k in known})

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def open(self) -> bool:
        """Still a chain of its own (its training has not started)."""
        return self.status in OPEN_STATES

    @property
    def can_resume(self) -> bool:
        return self.status in (FAILED, CANCELLED, INTERRUPTED) and bool(self.activation_set_id)


class ChainsRepo:
    """Chains as JSON values in the ``workflow_chains`` table."""

    def __init__(self, store):
        self.store = store

    @property
    def _table(self):
        return self.store.db[CHAINS_TABLE]

    def save(self, chain: ExtractThenTrain) -> None:
        chain.updated_at = now_iso()
        with self.store.db.conn:
            self._table.upsert({"id": chain.id,
                                "value": json.dumps(chain.to_dict(), sort_keys=True),
                                "updated_at": chain.updated_at}, pk="id")

    def get(self, chain_id: str) -> ExtractThenTrain | None:
        rows = list(self._table.rows_where("id = ?", [chain_id]))
        return self._decode(rows[0]) if rows else None

    def list(self) -> list[ExtractThenTrain]:
        chains = [c for c in (self._decode(r) for r in self._table.rows) if c is not None]
        chains.sort(key=lambda c: c.created_at)
        return chains

    def delete(self, chain_id: str) -> None:
        with self.store.db.conn:
            self._table.delete_where("id = ?", [chain_id])

    @staticmethod
    def _decode(row: dict) -> ExtractThenTrain | None:
        try:
            return ExtractThenTrain.from_dict(json.loads(row["value"]))
        except (TypeError, ValueError, KeyError):
            log.warning("unreadable workflow record %s", row.get("id"))
            return None


ChainListener = Callable[[ExtractThenTrain], None]


class TrainingWorkflows:
    """``studio.workflows``: chains of extraction then training."""

    def __init__(self, *, store: Store, jobs: JobService, models: ModelService,
                 datasets: DatasetService, activations: ActivationService,
                 trainings: TrainingService):
        # built after the activation and training services, so their job listeners (which
        # record outcomes) are told before ours reads them
        self.jobs = jobs
        self.models = models
        self.datasets = datasets
        self.activations = activations
        self.trainings = trainings
        self.repo = ChainsRepo(store)
        self._lock = threading.RLock()  # start() and the listener change chains
        self._listeners: list[ChainListener] = []
        jobs.add_listener(self._on_job_event, records=True)
        self._settle_all()

    # ------------------------------------------------------------------ listeners

    def add_listener(self, fn: ChainListener) -> None:
        """``fn(chain)`` after every change of a chain, on the thread that changed it."""
        self._listeners.append(fn)

    def remove_listener(self, fn: ChainListener) -> None:
        if fn in self._listeners:
            self._listeners.remove(fn)

    def _changed(self, chain: ExtractThenTrain) -> None:
        self.repo.save(chain)
        for fn in list(self._listeners):
            try:
                fn(chain)
            except Exception:  # a broken listener must not break the chain
                log.exception("workflow listener failed")

    # ------------------------------------------------------------------ reading

    def list(self, *, open_only: bool = False) -> list[ExtractThenTrain]:
        chains = self.repo.list()
        return [c for c in chains if c.open] if open_only else chains

    def find(self, chain_id: str) -> ExtractThenTrain | None:
        """The chain, or None once it is gone."""
        return self.repo.get(chain_id)

    def get(self, chain_id: str) -> ExtractThenTrain:
        chain = self.repo.get(chain_id)
        if chain is None:
            raise UserError(f"No extract-then-train workflow {chain_id!r}.")
        return chain

    def chain_of_job(self, job_id: str) -> ExtractThenTrain | None:
        """The open chain whose extraction job is ``job_id``."""
        for c in self.repo.list():
            if c.extraction_job_id == job_id:
                return c
        return None

    def chain_of_activation_set(self, set_id: str) -> ExtractThenTrain | None:
        for c in self.repo.list():
            if set_id and c.activation_set_id == set_id:
                return c
        return None

    # ------------------------------------------------------------------ starting

    def plan(self, model: str, tokenization: str, hook_name: str, *, max_tokens: int,
             config: dict) -> dict:
        """Check a chain before it starts: the model, the tokenization, the hook point and
        the training settings for the width and (at most) the number of tokens extracted.

        Returns ``{"d_in", "tokens", "hook_name", "model_id", "model_name"}``.
        """
        from mistudio.sae.config import TrainingConfig

        mrec = self.models.require_ready(model)
        summary = self.models.inspect(mrec.id)
        hooks = self.activations.resolve_hook_points(mrec.id, hook_points=[hook_name])
        tok = self.datasets.get_tokenization(tokenization)
        if tok.status != "ready":
            raise UserError("That tokenization is not finished yet.",
                            hint="Wait for the tokenize job to complete.")
        if int(max_tokens) < 0:
            raise UserError("Tokens to extract cannot be negative (0 means all).")
        available = int(tok.n_tokens or 0)
        tokens = min(int(max_tokens), available) if max_tokens else available
        d_in = int(summary.get("d_model") or mrec.d_model or 0)
        cfg = TrainingConfig.from_dict({**config, "activation_path": "(extracted first)",
                                        "activation_id": ""})
        # An upper bound on the rows the extraction yields: never refuses a plan that fits.
        cfg.validate(d_in=d_in or None, num_rows=tokens or None)
        return {"d_in": d_in, "tokens": tokens, "hook_name": hooks[0], "model_id": mrec.id,
                "model_name": mrec.name}

    def start_extract_then_train(self, model: str, tokenization: str, hook_name: str, *,
                                 config: dict, max_tokens: int = 1_000_000,
                                 batch_size: int = 16, device: str = "auto",
                                 model_dtype: str = "auto", store_dtype: str = "float32",
                                 title: str = "") -> ExtractThenTrain:
        """Queue the extraction now and the training when it completes."""
        config = {k: v for k, v in dict(config).items()
                  if k not in ("activation_id", "activation_path")}
        plan = self.plan(model, tokenization, hook_name, max_tokens=max_tokens, config=config)
        chain_id = new_id("wf")
        arch = config.get("architecture", "sae")
        title = (title or config.get("name") or
                 f"{arch} · {plan['model_name']} {plan['hook_name']}").strip()
        settings = {"max_tokens": int(max_tokens), "batch_size": int(batch_size),
                    "device": device, "model_dtype": model_dtype, "store_dtype": store_dtype}
        with self._lock:  # the listener waits until the chain is recorded
            sets, job = self.activations.start_extraction(
                plan["model_id"], tokenization, hook_points=[plan["hook_name"]],
                name=f"{plan['model_name']} {plan['hook_name']} (for {title})"[:200],
                **settings)
            chain = ExtractThenTrain(
                id=chain_id, title=title, status=EXTRACTING, model_id=plan["model_id"],
                model_name=plan["model_name"], tokenization=str(tokenization),
                hook_name=plan["hook_name"], extraction=settings, config=config,
                activation_set_id=sets[0].id, extraction_job_id=job.id, created_at=now_iso())
            self._changed(chain)
        return chain

    # ------------------------------------------------------------------ control

    def cancel(self, chain_id: str) -> bool:
        """Cancel whichever step runs: the extraction (the training then never starts) or
        the training it started. Returns whether a step was stopped or will not start.

        An extraction may end on its own just as Cancel arrives (past its last cancel
        check, or ended but not yet settled): the chain remembers the request, so it ends
        ``cancelled`` with the activations kept rather than starting the training."""
        with self._lock:  # the listener settles chains under it: it sees the request
            chain = self.get(chain_id)
            if chain.status == STARTED and chain.training_job_id:
                training_job_id = chain.training_job_id
            elif chain.status == EXTRACTING:
                chain.cancel_requested = True
                self.repo.save(chain)
                training_job_id = ""
            else:
                return False
        # the job queue is called outside the lock (cancelling a queued job tells its
        # listeners, ours included, at once)
        if training_job_id:
            return self.jobs.cancel(training_job_id)
        job_id = chain.extraction_job_id
        if self.jobs.cancel(job_id):
            return True  # the listener settles the chain when the job stops (or completes)
        with self._lock:
            chain = self.get(chain_id)
            if chain.status != EXTRACTING:  # the listener settled it meanwhile
                return chain.status == CANCELLED
            job = self.jobs.find(job_id)
            if job is not None and job.status in FINISHED:
                # it ended before the click reached it and no listener settled the chain
                # (it ended unheard, e.g. before a crash)
                self._settle(chain, job.status, job.error)
                return True
            return False  # running in another process: the request is kept for its end

    def resume(self, chain_id: str) -> ExtractThenTrain:
        """Continue a stopped chain: the rest of the extraction, or the training if the
        activations are complete."""
        with self._lock:
            chain = self.get(chain_id)
            if chain.status == EXTRACTING:
                raise UserError("This workflow is still extracting.")
            if chain.status == STARTED:
                raise UserError("This workflow's training has already started.",
                                hint="Resume the training from its own card.")
            try:
                rec = self.activations.get(chain.activation_set_id)
            except UserError:
                if self.activations.repo.get(chain.activation_set_id) is not None:
                    raise
                rec = None
            if rec is None:
                # stopped before any shard: no set was kept, so the extraction starts again
                sets, job = self.activations.start_extraction(
                    chain.model_id, chain.tokenization, hook_points=[chain.hook_name],
                    name=f"{chain.model_name} {chain.hook_name} (for {chain.title})"[:200],
                    **chain.extraction)
                chain.activation_set_id = sets[0].id
                chain.status, chain.error, chain.extraction_job_id = EXTRACTING, "", job.id
                self._changed(chain)
                return chain
            if rec.status == "ready":
                self._start_training(chain)
                return chain
            job = self.activations.resume_extraction(rec.id)
            chain.status, chain.error, chain.extraction_job_id = EXTRACTING, "", job.id
            self._changed(chain)
            return chain

    def delete(self, chain_id: str) -> None:
        """Forget a chain that is not running. Its activation set (complete or not) stays
        in the Models tab, where it can be resumed or deleted."""
        chain = self.get(chain_id)
        if chain.status == EXTRACTING and self.jobs.is_active(chain.extraction_job_id):
            raise UserError("This workflow is still extracting.", hint="Cancel it first.")
        self.repo.delete(chain.id)

    # ------------------------------------------------------------------ job events

    def _on_job_event(self, job_id: str, kind: str, payload: dict) -> None:
        if kind != "status" or payload.get("status") not in FINISHED:
            return
        try:
            with self._lock:
                chain = self.chain_of_job(job_id)
                if chain is not None and chain.status == EXTRACTING:
                    self._settle(chain, payload["status"], payload.get("error") or "")
        except Exception:  # a listener must never break the job queue
            log.exception("could not advance the workflow of job %s", job_id)

    def _settle_all(self) -> None:
        """Chains whose extraction ended while no listener ran (another process, a crash)."""
        with self._lock:
            for chain in self.repo.list():
                if chain.status != EXTRACTING:
                    continue
                if self.jobs.is_active(chain.extraction_job_id):
                    continue
                job = self.jobs.find(chain.extraction_job_id)
                if job is None:
                    self._settle(chain, INTERRUPTED, "The extraction job is gone.")
                elif job.status in FINISHED:
                    self._settle(chain, job.status, job.error)

    def _settle(self, chain: ExtractThenTrain, status: str, error: str) -> None:
        if status == "completed" and not chain.cancel_requested:
            self._start_training(chain)
            return
        chain.cancel_requested = False
        if status == "completed":  # Cancel arrived as the extraction finished
            chain.status = CANCELLED
            chain.error = ("Cancelled as the extraction finished: the activations are kept "
                           "and the training was not started. Resume starts it.")
            self._changed(chain)
            return
        chain.status = {"cancelled": CANCELLED, "interrupted": INTERRUPTED}.get(status, FAILED)
        chain.error = {
            CANCELLED: "Extraction cancelled; the training was not started.",
            INTERRUPTED: "Extraction interrupted (the app stopped); resume to continue it, "
                         "then the training starts.",
        }.get(chain.status, f"Extraction failed: {error or 'no reason given'}. The training "
                            "was not started.")
        self._changed(chain)

    def _start_training(self, chain: ExtractThenTrain) -> None:
        try:
            rec = self.activations.get(chain.activation_set_id)
            if rec.status != "ready":
                raise UserError(f"The activation set {rec.id} is {rec.status}.")
            job: JobRecord = self.trainings.start_training(
                {**chain.config, "activation_id": rec.id, "activation_path": ""},
                title=chain.title)
        except Exception as exc:  # noqa: BLE001 - said on the card, kept in the log
            from mistudio.errors import describe_exception

            log.exception("workflow %s: the training could not start", chain.id)
            chain.status = FAILED
            chain.error = (f"The activations were extracted, but the training could not "
                           f"start: {describe_exception(exc)}")
            self._changed(chain)
            return
        chain.status, chain.error = STARTED, ""
        chain.training_id, chain.training_job_id = job.target, job.id
        self._changed(chain)

    # ------------------------------------------------------------------ checkpoint export

    def start_checkpoint_export(self, training_id: str, checkpoint_path: str,
                                destination: str | Path) -> JobRecord:
        """Queue ``training.export_checkpoint``: the SAE(s) of one checkpoint as SAELens
        folders."""
        from mistudio.activations.format import ActivationSet
        from mistudio.sae import checkpoints as ckpt

        tr = self.trainings.get_training(training_id)
        path = Path(checkpoint_path)
        if Path(tr.folder).resolve() not in path.resolve().parents:
            raise UserError(f"{path} is not a checkpoint of this training.",
                            hint="Pick one from the training's checkpoint list.")
        if not (path / ckpt.STATE_FILE).exists():
            raise UserError(f"The checkpoint {path} no longer exists.",
                            hint="Pick another one from the checkpoint list.")
        dest = Path(destination).expanduser()
        if not str(destination).strip():
            raise UserError("Choose a folder to export to.")
        model = hook = hook_out = ""
        try:
            meta = ActivationSet(tr.activation_path).meta
            model = str(meta.get("model_name") or meta.get("model_id") or "")
            hook = str(meta.get("hook_name") or "")
            if tr.target_activation_path:
                hook_out = ActivationSet(tr.target_activation_path).hook_name
        except UserError:
            pass  # the activations were deleted: the SAE is still exportable, without names
        cfg = tr.config
        params = {"checkpoint": str(path), "destination": str(dest),
                  "model_name": cfg.get("model_name") or model,
                  "hook_name": cfg.get("hook_name") or hook,
                  "hook_name_out": cfg.get("hook_name_out") or hook_out,
                  "activation_id": cfg.get("activation_id") or tr.activation_id or ""}
        return self.jobs.submit(EXPORT_KIND, params, target=tr.id,
                                title=f"Export checkpoint {path.name} of {tr.name}")


def workflows_of(studio) -> TrainingWorkflows:
    """The studio's one :class:`TrainingWorkflows` (``studio.workflows``; kept for old callers)."""
    return studio.workflows
