"""The features application service (``studio.features``): analyses and their queries.

Actions: :meth:`FeatureService.start_analysis` (validated before anything is saved; queues
``features.analyze``), :meth:`resume_analysis`, :meth:`delete_analysis`, :meth:`estimate`.
Queries: :meth:`list_analyses`, :meth:`latest_analysis`, :meth:`get_analysis`,
:meth:`results` (an :class:`~mistudio.analysis.results.AnalysisResults`), :meth:`feature`
(a :class:`FeatureDetail`), :meth:`feature_rows` (SQL sort/filter), :meth:`search`,
:meth:`top_features` (features per token of a text; the model stays loaded),
:meth:`ablate` (one feature removed on its top examples; cached), exports.
Every query taking an SAE also takes ``analysis=`` (default: the SAE's latest completed one).
"""

from __future__ import annotations

import logging
import shutil
import threading
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mistudio.analysis.job import DEFAULT_MAX_TOKENS, KIND, AnalysisParams, estimate_memory
from mistudio.analysis.repository import AnalysisRecord, FeatureAnalysesRepo, FeatureRow
from mistudio.analysis.results import AnalysisResults, Example, IntervalGroup, LogitLens
from mistudio.app.jobs import JobService
from mistudio.errors import UserError
from mistudio.reliability import crash_point
from mistudio.store.db import new_id, now_iso

log = logging.getLogger(__name__)


@dataclass
class FeatureDetail:
    """Everything the Features tab shows for one feature."""

    analysis_id: str
    feature: int
    dead: bool
    firing_count: int
    density: float
    max_act: float
    mean_act: float
    histogram: tuple[np.ndarray, np.ndarray]
    top_examples: list[Example]
    intervals: list[IntervalGroup]  # sae_vis equal widths
    quantiles: list[IntervalGroup]  # delphi rank groups
    logit_lens: dict[str, LogitLens]  # "raw", "folded"
    correlated: list[tuple[int, float]]
    decoder_neighbours: list[tuple[int, float]]
    neurons: list[tuple[int, float, float]] = field(default_factory=list)


class FeatureService:
    def __init__(self, *, store, jobs: JobService, paths, trainings, models):
        """``jobs``: the job service (submits, listens); ``trainings``: the SAE service (SAE
        records, where to splice them in); ``models``: the model service (records, hook
        widths)."""
        self.repo = FeatureAnalysesRepo(store)
        self.jobs = jobs
        self.paths = paths
        self.trainings = trainings
        self.models = models
        self._lock = threading.Lock()
        self._results: OrderedDict[str, AnalysisResults] = OrderedDict()
        self._ablations: dict[tuple, object] = {}
        self._prompt = None  # mistudio.analysis.prompt.PromptAnalyzer, built on first use
        jobs.add_listener(self._on_job_event, records=True)
        self._settle_stopped()

    def _settle_stopped(self) -> None:
        """Analyses whose job ended without this service hearing it (the process was killed:
        the job row turned ``interrupted`` at start-up, or ``completed`` just before the
        kill) take their job's outcome, so none stays "running" and each can resume."""
        for rec in self.repo.list():
            if rec.status not in ("queued", "running") or not rec.job_id:
                continue
            if self.jobs.is_active(rec.job_id):
                continue
            job = self.jobs.find(rec.job_id)
            if job is None:
                # named but never queued: killed in between, unless another live process
                # (the window beside a CLI command) is between the two right now
                if not self.jobs.repo.live_foreign_jobs():
                    self._on_job_event(rec.job_id, "status", {"status": "interrupted"})
            elif job.status not in ("queued", "running", "paused"):  # another live process
                self._on_job_event(job.id, "status", {"status": job.status,
                                                      "error": job.error})

    # ================================================================== analyses

    def _params(self, sae_id: str, *, tokenization: str = "", model: str = "",
                hook_name: str = "", activation_set: str = "", **options) -> AnalysisParams:
        """The job's parameters, validated against the records (nothing is saved)."""
        sae = self.trainings.get_sae(sae_id)
        spec = self.trainings.evaluation_spec(sae.id, model=model, tokenization=tokenization,
                                              hook_name=hook_name)
        from mistudio.data.tokenized import TokenizedDataset

        tok = TokenizedDataset(Path(spec.tokenization))
        model_rec = self.models.require_ready(spec.model_folder if not model else model) \
            if model else self._model_for_folder(spec.model_folder)
        if model_rec.tokenizer_fingerprint and tok.fingerprint != model_rec.tokenizer_fingerprint:
            raise UserError(f"The tokenization {Path(spec.tokenization).name} was made with "
                            f"another tokenizer ({tok.meta.get('tokenizer', '?')}) than "
                            f"{model_rec.name}'s.",
                            hint="Pick a tokenization made with the model's tokenizer.")
        from mistudio.models import hooks

        info = self.models.inspect(model_rec.id)
        if info.get("hooks_supported"):  # raises for a layer or hook name the model lacks
            hooks.resolve(spec.hook_name, info["model_type"], int(info["n_layers"]))
        width = next((h["d"] for h in self.models.hook_points(model_rec.id)
                      if h["name"] == spec.hook_name), None)
        if width is not None and int(width) != int(sae.d_in):
            raise UserError(f"The SAE reads vectors of width {sae.d_in}, but {spec.hook_name} "
                            f"of {model_rec.name} has width {width}.",
                            hint="Analyse the SAE with the model and hook point it was "
                            "trained on.")
        fa_id = new_id("fa")
        return AnalysisParams(
            analysis_id=fa_id, folder=str(self.paths.entity_dir("features", fa_id)),
            sae_folder=sae.folder, sae_id=sae.id, model_folder=spec.model_folder,
            model_id=model_rec.id, model_name=model_rec.name,
            trust_remote_code=spec.trust_remote_code, model_dtype=spec.model_dtype,
            tokenization=spec.tokenization, hook_name=spec.hook_name,
            activation_path=activation_set, **options)

    def _model_for_folder(self, folder: str):
        for rec in self.models.list():
            if rec.folder and Path(rec.folder).resolve() == Path(folder).resolve():
                return rec
        raise UserError(f"No registered model lives in {folder}.",
                        hint="Add the model in the Models tab.")

    def estimate(self, sae_id: str, *, max_tokens: int = DEFAULT_MAX_TOKENS,
                 tokenization: str = "", model: str = "") -> dict:
        """Bytes: ``host`` memory, temporary ``spill`` on disk, ``results`` folder."""
        p = self._params(sae_id, tokenization=tokenization, model=model)
        sae = self.trainings.get_sae(sae_id)
        from mistudio.data.tokenized import TokenizedDataset

        tok = TokenizedDataset(Path(p.tokenization))
        n = min(int(tok.meta.get("n_tokens") or tok.n_seq * tok.seq_len),
                max_tokens or 1 << 62)
        return estimate_memory(sae.d_in, sae.d_sae, n, p, mean_l0=float(sae.k or 64))

    def start_analysis(self, sae_id: str, *, tokenization: str = "", model: str = "",
                       max_tokens: int = DEFAULT_MAX_TOKENS, seed: int = 0,
                       activation_set: str = "", device: str = "auto", **options):
        """Queue ``features.analyze``; returns the job. Bad input raises before any record
        or folder exists. ``options``: other :class:`AnalysisParams` fields."""
        if int(max_tokens) < 0:
            raise UserError("Max tokens cannot be negative.", hint="Use 0 for all tokens.")
        p = self._params(sae_id, tokenization=tokenization, model=model,
                         activation_set=activation_set, max_tokens=int(max_tokens),
                         seed=int(seed), device=device, **options)
        sae = self.trainings.get_sae(sae_id)
        rec = AnalysisRecord(id=p.analysis_id, sae_id=sae.id, model_id=p.model_id,
                             model_name=p.model_name, hook_name=p.hook_name,
                             tokenization=p.tokenization, activation_path=activation_set,
                             max_tokens=p.max_tokens, seed=p.seed, d_sae=sae.d_sae,
                             folder=p.folder, params=p.to_dict())
        self.repo.insert(rec)
        return self._submit(rec)

    def _submit(self, rec: AnalysisRecord):
        # the row names its job before the job exists: a job that ends at once (a re-run of
        # a complete analysis) is recorded by the listener, which finds the row by job id
        job_id = new_id("job")
        self.repo.update(rec.id, job_id=job_id, status="queued", error="")
        return self.jobs.submit(KIND, rec.params, title=f"Analyse features of "
                                f"{self.trainings.get_sae(rec.sae_id).name or rec.sae_id}",
                                target=rec.id, job_id=job_id)

    def resume_analysis(self, analysis_id: str):
        """Run a stopped analysis again; it continues from its last checkpoint."""
        rec = self.get_analysis(analysis_id)
        if rec.status in ("queued", "running", "completed"):
            raise UserError(f"The analysis {rec.id} is {rec.status}.",
                            hint="Only failed, cancelled or interrupted analyses resume.")
        return self._submit(rec)

    def list_analyses(self, sae_id: str | None = None) -> list[AnalysisRecord]:
        if sae_id:
            sae_id = self.trainings.get_sae(sae_id).id
        return self.repo.list(sae_id)

    def get_analysis(self, analysis_id: str) -> AnalysisRecord:
        rec = self.repo.get(analysis_id)
        if rec is None:
            matches = [r for r in self.repo.list() if r.id.startswith(analysis_id)]
            if len(matches) != 1:
                raise UserError(f"No feature analysis {analysis_id!r}.",
                                hint="`mistudio features list SAE_ID` shows them.")
            rec = matches[0]
        return rec

    def latest_analysis(self, sae_id: str) -> AnalysisRecord | None:
        done = self.repo.list(self.trainings.get_sae(sae_id).id, status="completed")
        return done[0] if done else None

    def resolve_analysis(self, sae_id: str = "", analysis: str = "") -> AnalysisRecord:
        """The given analysis, else the SAE's latest completed one."""
        if analysis:
            rec = self.get_analysis(analysis)
            if sae_id and rec.sae_id != self.trainings.get_sae(sae_id).id:
                raise UserError(f"The analysis {rec.id} is of another SAE ({rec.sae_id}).",
                                hint="Leave out --analysis to use this SAE's latest.")
        else:
            rec = self.latest_analysis(sae_id)
            if rec is None:
                raise UserError(f"The SAE {sae_id} has no completed feature analysis.",
                                hint=f"Run one: mistudio analyze {sae_id} --tokens TOK_ID.")
        if rec.status != "completed":
            raise UserError(f"The analysis {rec.id} is {rec.status}, not completed.",
                            hint="Wait for it, or resume it.")
        return rec

    def delete_analysis(self, analysis_id: str) -> None:
        rec = self.get_analysis(analysis_id)
        if rec.job_id and self.jobs.is_active(rec.job_id):
            raise UserError("That analysis is still running.", hint="Cancel it first.")
        self.repo.delete(rec.id)
        with self._lock:
            self._results.pop(rec.id, None)
        folder = Path(rec.folder)
        root = self.paths.root.resolve()
        if folder.exists() and root in folder.resolve().parents:
            shutil.rmtree(folder, ignore_errors=True)

    # ================================================================== results

    def results(self, sae_id: str = "", analysis: str = "") -> AnalysisResults:
        """The reader of an analysis (the SAE's latest when ``analysis`` is empty)."""
        rec = self.resolve_analysis(sae_id, analysis)
        with self._lock:
            res = self._results.get(rec.id)
            if res is None:
                res = AnalysisResults(rec.folder)
                self._results[rec.id] = res
                while len(self._results) > 4:
                    self._results.popitem(last=False)
            return res

    def feature(self, sae_id: str, index: int, analysis: str = "") -> FeatureDetail:
        res = self.results(sae_id, analysis)
        f = res.check_feature(index)
        c = res.columns
        return FeatureDetail(
            analysis_id=res.analysis_id, feature=f, dead=bool(c["dead"][f]),
            firing_count=int(c["firing_count"][f]), density=float(c["density"][f]),
            max_act=float(c["max_act"][f]), mean_act=float(c["mean_act"][f]),
            histogram=res.histogram(f), top_examples=res.examples(f, "top"),
            intervals=res.intervals(f, "interval"), quantiles=res.intervals(f, "quantile"),
            logit_lens={conv: res.logit_lens(f, conv) for conv in ("raw", "folded")},
            correlated=res.correlated(f), decoder_neighbours=res.decoder_neighbours(f),
            neurons=res.neurons(f))

    def feature_rows(self, sae_id: str = "", analysis: str = "", **filters) -> list[FeatureRow]:
        """Rows of ``analysis_features`` (see FeatureAnalysesRepo.features for filters)."""
        rec = self.resolve_analysis(sae_id, analysis)
        return self.repo.features(rec.id, **filters)

    def feature_texts(self, sae_id: str = "", analysis: str = "") -> tuple[list, list, list]:
        """(feature, top_tokens, logit_top) lists of every feature row, in feature order (the
        Features table's text columns; cheaper than ``feature_rows``)."""
        rec = self.resolve_analysis(sae_id, analysis)
        return self.repo.feature_texts(rec.id)

    def search(self, sae_id: str, query: str, analysis: str = "", limit: int = 50
               ) -> list[FeatureRow]:
        """Features whose index is ``query``, or whose top tokens or logit-lens tokens
        contain it (case-insensitive), densest first."""
        rec = self.resolve_analysis(sae_id, analysis)
        q = query.strip()
        if not q:
            raise UserError("Give something to search for.", hint="A word or a feature index.")
        if q.isdigit():
            return [r for r in self.repo.features(rec.id) if r.feature == int(q)]
        return self.repo.features(rec.id, text=q, sort="density", descending=True,
                                  include_dead=False, limit=limit)

    # ================================================================== on demand

    def _prompt_analyzer(self):
        from mistudio.analysis.prompt import PromptAnalyzer

        with self._lock:
            if self._prompt is None:
                self._prompt = PromptAnalyzer()
            return self._prompt

    def _spec_for(self, sae_id: str, model: str = ""):
        sae = self.trainings.get_sae(sae_id)
        done = self.repo.list(sae.id, status="completed")
        if done and not model:
            p = AnalysisParams.from_dict(done[0].params)
            return sae, p.model_folder, p.hook_name, p.trust_remote_code, p.model_dtype
        spec = self.trainings.evaluation_spec(sae.id, model=model)
        return sae, spec.model_folder, spec.hook_name, spec.trust_remote_code, spec.model_dtype

    def top_features(self, sae_id: str, text: str, *, k: int = 5, model: str = "",
                     device: str = "cpu"):
        """For each token of ``text``: the ``k`` strongest features with their values
        (:class:`~mistudio.analysis.prompt.PromptFeatures`). The model and the SAE stay
        loaded between calls."""
        if not text.strip():
            raise UserError("Give a text to analyse.", hint="Type or paste a prompt.")
        sae, folder, hook, trust, dtype = self._spec_for(sae_id, model)
        return self._prompt_analyzer().top_features(sae.folder, folder, hook, text, k=k,
                                                    device=device, trust_remote_code=trust,
                                                    dtype=dtype)

    def ablate(self, sae_id: str, feature: int, analysis: str = "", *, n_examples: int = 8,
               device: str = "cpu"):
        """Remove ``feature`` from the SAE output spliced into the model (the error term
        kept) on its top examples: per-token loss change and top +/- logit changes
        (:class:`~mistudio.analysis.prompt.AblationResult` per example). Cached."""
        res = self.results(sae_id, analysis)
        f = res.check_feature(feature)
        key = (res.analysis_id, f, int(n_examples))
        cached = self._ablations.get(key)
        if cached is not None:
            return cached
        p = AnalysisParams.from_dict(self.get_analysis(res.analysis_id).params)
        examples = res.examples(f, "top")[:n_examples]
        out = self._prompt_analyzer().ablate(
            p.sae_folder, p.model_folder, p.hook_name, f, examples, res, device=device,
            trust_remote_code=p.trust_remote_code, dtype=p.model_dtype,
            hook_name_out=_hook_name_out(p.sae_folder))
        self._ablations[key] = out
        return out

    # ================================================================== export

    def export_neuronpedia(self, sae_id: str, destination: str | Path, *, analysis: str = "",
                           features: list[int] | None = None) -> Path:
        from mistudio.analysis.export import write_neuronpedia

        res = self.results(sae_id, analysis)
        return write_neuronpedia(res, destination, features=features)

    def export_vectors(self, sae_id: str, destination: str | Path, *, fmt: str = "npy",
                       features: list[int] | None = None) -> Path:
        from mistudio.analysis.export import write_vectors

        sae = self.trainings.get_sae(sae_id)
        return write_vectors(sae.folder, destination, fmt=fmt, features=features)

    # ================================================================== job events

    def _on_job_event(self, job_id: str, kind: str, payload: dict) -> None:
        if kind != "status":
            return
        try:
            rec = self.repo.by_job(job_id)
            if rec is None:
                return
            status = payload.get("status") or ""
            fields: dict = {"status": status}
            if status in ("completed", "failed", "cancelled", "interrupted"):
                fields["finished_at"] = now_iso()
            if status == "failed":
                fields["error"] = str(payload.get("error") or payload.get("message") or "")
            if status == "completed":
                res = AnalysisResults(rec.folder)
                crash_point("analyze.rows")
                self.repo.replace_features(rec.id, _feature_rows(res))
                fields.update(n_tokens=res.n_tokens, summary={
                    k: res.meta.get(k) for k in ("dead", "mean_l0", "elapsed_s", "stream_s",
                                                 "tokens_per_s", "versions")})
            self.repo.update(rec.id, **fields)
        except Exception:  # a listener must never break the job
            log.exception("could not record a feature-analysis event")


def _hook_name_out(sae_folder: str) -> str:
    """A transcoder's output hook point (from its cfg.json), '' for SAEs."""
    import json

    try:
        cfg = json.loads((Path(sae_folder) / "cfg.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ""
    return str((cfg.get("metadata") or {}).get("hook_name_out") or "")


def _feature_rows(res: AnalysisResults):
    """Per-feature rows for SQLite (search text: top-example tokens, logit-lens tokens)."""
    c = res.columns
    tokens = res.array("tokens")
    seq, pos = np.asarray(res.array("top_seq")), np.asarray(res.array("top_pos"))
    centre = np.where(seq >= 0, tokens[np.maximum(seq, 0), np.maximum(pos, 0)], -1)
    top_ids = np.asarray(res.array("logit_top_ids_raw"))[:, :5]
    bottom_ids = np.asarray(res.array("logit_bottom_ids_raw"))[:, :5]
    for f in range(res.d_sae):
        common = Counter(int(t) for t in centre[f] if t >= 0).most_common(5)
        yield {"feature": f, "firing_count": c["firing_count"][f], "density": c["density"][f],
               "log10_density": c["log10_density"][f], "max_act": c["max_act"][f],
               "mean_act": c["mean_act"][f], "dead": c["dead"][f],
               "top_tokens": " | ".join(res.token_string(t) for t, _ in common),
               "logit_top": " | ".join(res.token_string(int(t)) for t in top_ids[f]),
               "logit_bottom": " | ".join(res.token_string(int(t)) for t in bottom_ids[f])}
