"""``studio.autointerp``: explain SAE features with a registered instruct model and score
the explanations (mistudio/autointerp/). No torch is imported here.

Actions: :meth:`AutointerpService.start` (validated before anything is saved; queues
``autointerp.run``), :meth:`resume`. Queries for the Features tab and the CLI:
:meth:`explanation` and :meth:`score` of one feature, :meth:`explanations` (searchable),
:meth:`scores`, :meth:`runs`. Results already stored for the same analysis, model, prompt
version and seed are reused, never recomputed.
"""

from __future__ import annotations

import logging
from pathlib import Path

from mistudio.autointerp.job import read_results
from mistudio.autointerp.prompts import DEFAULT_PROMPT, get_version
from mistudio.autointerp.repository import AutointerpRepo, Explanation, RunRecord, ScoreRow
from mistudio.app.jobs import JobService
from mistudio.errors import UserError
from mistudio.store.db import new_id, now_iso

log = logging.getLogger(__name__)

KIND = "autointerp.run"
SCORERS = ("detection", "fuzz")
MAX_FEATURES = 100_000


def parse_features(spec: str, d_sae: int, alive: list[int] | None = None) -> list[int]:
    """'0-99', '3,17,250', 'top50' (the 50 most often firing alive features) or a mix of
    ranges and numbers."""
    spec = (spec or "").replace(" ", "")
    if not spec:
        raise UserError("Say which features to explain.",
                        hint="For example --features 0-99, --features 3,17 or --features top50.")
    if spec.lower().startswith("top"):
        try:
            n = int(spec[3:])
        except ValueError:
            n = -1
        if n <= 0:
            raise UserError(f"{spec!r} is not top followed by a number.", hint="e.g. top50")
        return list((alive or [])[:n])
    out: list[int] = []
    for part in spec.split(","):
        try:
            if "-" in part:
                a, b = (int(x) for x in part.split("-", 1))
                if b < a:
                    raise ValueError
                out.extend(range(a, b + 1))
            elif part:
                out.append(int(part))
        except ValueError:
            raise UserError(f"{part!r} is not a feature number or range.",
                            hint="Use numbers and ranges like 0-99,120,300-310.") from None
    bad = [f for f in out if not 0 <= f < d_sae]
    if bad:
        raise UserError(f"Feature {bad[0]} does not exist: the SAE has {d_sae:,} features.",
                        hint=f"Use numbers from 0 to {d_sae - 1}.")
    return list(dict.fromkeys(out))


def has_chat_template(folder: str) -> bool:
    """Whether a model folder's tokenizer has a chat template (read from its files; no
    tokenizer is loaded)."""
    import json

    root = Path(folder)
    if (root / "chat_template.jinja").exists() or (root / "chat_template.json").exists():
        return True
    try:
        cfg = json.loads((root / "tokenizer_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return bool(cfg.get("chat_template"))


class AutointerpService:
    def __init__(self, *, store, jobs: JobService, paths, models, features):
        """``models``: the model service (records); ``features``: the feature analysis
        service (which analysis, its folder, its live features)."""
        self.repo = AutointerpRepo(store)
        self.jobs = jobs
        self.paths = paths
        self.models = models
        self.features = features
        jobs.add_listener(self._on_job_event, records=True)

    # ================================================================== actions

    def start(self, sae_id: str, *, features: str, model: str, analysis: str = "",
              scorer: str = "", prompt_version: str = DEFAULT_PROMPT, seed: int = 0,
              device: str = "auto", n_train: int = 10, n_test_per_group: int = 2,
              n_negative: int = 8, max_new_tokens: int = 48, batch_size: int = 8):
        """Queue an explain (``scorer=''``) or explain-and-score run; returns the job."""
        if scorer and scorer not in SCORERS:
            raise UserError(f"Unknown scorer {scorer!r}.", hint="Use detection or fuzz.")
        version = get_version(prompt_version)
        fa = self.features.resolve_analysis(sae_id, analysis)
        m = self.models.require_ready(model)
        if m.folder and not has_chat_template(m.folder):
            raise UserError(f"{m.name}'s tokenizer has no chat template, so it cannot be asked "
                            "to explain features.", hint="Pick an instruct (chat) model, e.g. "
                            "the SmolLM2-135M-Instruct demo model.")
        alive = [r.feature for r in self.features.repo.features(
            fa.id, include_dead=False, sort="firing_count", descending=True)]
        feats = parse_features(features, int(fa.d_sae), alive)
        if not feats:
            raise UserError("No features to explain: the analysis has no live features.",
                            hint="Analyse more tokens, or pick features by number.")
        if len(feats) > MAX_FEATURES:
            raise UserError(f"{len(feats):,} features is too many for one run.",
                            hint=f"At most {MAX_FEATURES:,}.")
        stored = {e.feature: e.explanation for e in self.repo.explanations(
            fa.id, model_id=m.id, prompt_version=version.name, seed=int(seed))}
        run_id = new_id("ai")
        folder = self.paths.root / "autointerp" / run_id
        params = {"run_id": run_id, "analysis_folder": fa.folder, "model_folder": m.folder,
                  "model_name": m.name, "model_id": m.id,
                  "trust_remote_code": bool(m.trust_remote_code), "device": device,
                  "dtype": "auto", "prompt_version": version.name, "seed": int(seed),
                  "features": feats, "scorer": scorer,
                  "explanations": {str(f): t for f, t in stored.items() if f in set(feats)},
                  "baseline_pool": {str(f): t for f, t in stored.items()},
                  "results_file": str(folder / "results.jsonl"), "n_train": int(n_train),
                  "n_test_per_group": int(n_test_per_group), "n_negative": int(n_negative),
                  "max_new_tokens": int(max_new_tokens), "batch_size": int(batch_size)}
        rec = RunRecord(id=run_id, analysis_id=fa.id, sae_id=fa.sae_id, model_id=m.id,
                        model_name=m.name, prompt_version=version.name, seed=int(seed),
                        scorer=scorer, features=feats, params=params, folder=str(folder))
        self.repo.insert_run(rec)
        return self._submit(rec)

    def _submit(self, rec: RunRecord):
        what = f"Score ({rec.scorer})" if rec.scorer else "Explain"
        job = self.jobs.submit(KIND, rec.params, title=f"{what} {len(rec.features)} features "
                                f"with {rec.model_name}", target=rec.id)
        self.repo.update_run(rec.id, job_id=job.id, status="queued", error="")
        return job

    def resume(self, run_id: str):
        """Run a stopped run again: the features already done are skipped."""
        rec = self.get_run(run_id)
        if rec.status in ("queued", "running", "completed"):
            raise UserError(f"The run {rec.id} is {rec.status}.",
                            hint="Only failed, cancelled or interrupted runs resume.")
        return self._submit(rec)

    def get_run(self, run_id: str) -> RunRecord:
        rec = self.repo.get_run(run_id)
        if rec is None:
            raise UserError(f"No auto-interpretation run {run_id!r}.",
                            hint="`mistudio jobs list` shows the runs' jobs.")
        return rec

    def chat_models(self) -> list:
        """The ready models that can explain features (their tokenizer has a chat template)."""
        return [m for m in self.models.list()
                if m.status == "ready" and m.folder and has_chat_template(m.folder)]

    def runs(self, sae_id: str = "", analysis: str = "") -> list[RunRecord]:
        fa = self.features.resolve_analysis(sae_id, analysis) if (sae_id or analysis) else None
        return self.repo.list_runs(fa.id if fa else "")

    # ================================================================== results

    def import_results(self, rec: RunRecord) -> int:
        """Copy the run's results file into the tables (idempotent: rows are replaced)."""
        n = 0
        for d in read_results(Path(rec.folder) / "results.jsonl"):
            if d.get("type") == "explanation":
                self.repo.save_explanation(Explanation(
                    rec.analysis_id, int(d["feature"]), rec.model_id, rec.prompt_version,
                    rec.seed, rec.model_name, d["explanation"], d.get("raw", ""), rec.id))
            elif d.get("type") == "score":
                self.repo.save_score(ScoreRow(
                    rec.analysis_id, int(d["feature"]), d["scorer"], rec.model_id,
                    rec.prompt_version, rec.seed, rec.model_id, float(d["balanced_accuracy"]),
                    d.get("baseline"), d.get("baseline_feature"), d["tp"], d["tn"], d["fp"],
                    d["fn"], float(d.get("mean_answer_mass") or 0.0), d.get("items", []),
                    rec.id))
            n += 1
        return n

    def run_results(self, run_id: str) -> tuple[dict, dict]:
        """({feature: Explanation}, {feature: ScoreRow}) of a run's features, for its model,
        prompt version and seed (those made earlier and reused included)."""
        run = self.get_run(run_id)
        self.import_results(run)  # idempotent: the job's listener may not have run yet
        feats = set(run.features)
        expl = {e.feature: e for e in self.repo.explanations(
            run.analysis_id, model_id=run.model_id, prompt_version=run.prompt_version,
            seed=run.seed) if e.feature in feats}
        scores = {s.feature: s for s in self.repo.scores(
            run.analysis_id, scorer=run.scorer, model_id=run.model_id,
            prompt_version=run.prompt_version, seed=run.seed) if s.feature in feats} \
            if run.scorer else {}
        return expl, scores

    def _on_job_event(self, job_id: str, kind: str, payload: dict) -> None:
        if kind != "status":
            return
        rec = self.repo.run_by_job(job_id)
        if rec is None:
            return
        status = payload.get("status")
        fields = {"status": status}
        if status in ("completed", "failed", "cancelled", "interrupted"):
            try:  # partial results of a stopped run are kept too
                self.import_results(rec)
            except Exception:  # never let a bad file break the queue's listeners
                log.exception("could not import the results of %s", rec.id)
            fields["finished_at"] = now_iso()
            fields["error"] = payload.get("error") or ""
            result = payload.get("result")
            if isinstance(result, dict):
                fields["summary"] = result
        self.repo.update_run(rec.id, **fields)

    def explanations(self, sae_id: str = "", analysis: str = "", *, text: str = "",
                     model: str = "", prompt_version: str = "") -> list[Explanation]:
        """Stored explanations of an analysis; ``text`` searches them (case-insensitive)."""
        fa = self.features.resolve_analysis(sae_id, analysis)
        model_id = self.models.get(model).id if model else ""
        return self.repo.explanations(fa.id, model_id=model_id, prompt_version=prompt_version,
                                      text=text)

    def explanation(self, sae_id: str, feature: int, analysis: str = "") -> Explanation | None:
        """The newest explanation of one feature (any model/prompt), or None."""
        fa = self.features.resolve_analysis(sae_id, analysis)
        rows = self.repo.explanations(fa.id, feature=int(feature))
        return max(rows, key=lambda e: e.created_at) if rows else None

    def scores(self, sae_id: str = "", analysis: str = "", *, scorer: str = "",
               feature: int | None = None) -> list[ScoreRow]:
        fa = self.features.resolve_analysis(sae_id, analysis)
        return self.repo.scores(fa.id, feature=feature, scorer=scorer)

    def score(self, sae_id: str, feature: int, analysis: str = "", scorer: str = "detection"
              ) -> ScoreRow | None:
        """The newest score of one feature by ``scorer`` (with its shuffled baseline)."""
        rows = self.scores(sae_id, analysis, scorer=scorer, feature=int(feature))
        return max(rows, key=lambda s: s.created_at) if rows else None
