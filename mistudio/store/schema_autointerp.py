"""Tables of auto-interpretation (migrations 90 and 170; 90-99 and 170-179 are reserved for
this area).

- ``autointerp_runs``: one row per explain/score batch (an ``autointerp.run`` job); its
  per-feature results are appended to ``autointerp/<id>/results.jsonl`` as they are made
  and copied into the two tables below.
- ``autointerp_explanations``: one explanation per (analysis, feature, explainer model,
  prompt version, seed).
- ``autointerp_scores``: one score per (analysis, feature, scorer, scorer model, explainer
  model, prompt version, seed), with the shuffled-explanation baseline beside it (170:
  the AUROC of P(yes) of both, which still ranks where a scorer biased to "No" gets
  balanced accuracy 0.5 everywhere).
"""

from __future__ import annotations

from mistudio.store.migrations import migration


@migration(90, "auto-interpretation runs, explanations, scores")
def _v90(db):
    db["autointerp_runs"].create(
        {"id": str, "job_id": str, "status": str, "analysis_id": str, "sae_id": str,
         "model_id": str, "model_name": str, "prompt_version": str, "seed": int,
         "scorer": str,       # '' (explain only) | detection | fuzz
         "features": str,     # JSON list
         "params": str,       # JSON: the job's parameters
         "summary": str,      # JSON: counts, means, timing
         "folder": str, "error": str, "created_at": str, "finished_at": str},
        pk="id", not_null={"status", "created_at"}, defaults={"status": "queued"})
    db["autointerp_runs"].create_index(["job_id"])
    db["autointerp_explanations"].create(
        {"analysis_id": str, "feature": int, "model_id": str, "prompt_version": str,
         "seed": int, "model_name": str, "explanation": str, "raw": str, "run_id": str,
         "created_at": str},
        pk=("analysis_id", "feature", "model_id", "prompt_version", "seed"))
    db["autointerp_explanations"].create_index(["analysis_id", "feature"])
    db["autointerp_scores"].create(
        {"analysis_id": str, "feature": int, "scorer": str, "model_id": str,
         "prompt_version": str, "seed": int, "explainer_id": str, "score": float,
         "baseline_score": float, "baseline_feature": int, "tp": int, "tn": int, "fp": int,
         "fn": int, "answer_mass": float, "details": str, "run_id": str, "created_at": str},
        pk=("analysis_id", "feature", "scorer", "model_id", "explainer_id", "prompt_version",
            "seed"))
    db["autointerp_scores"].create_index(["analysis_id", "feature"])


@migration(170, "auto-interpretation scores: AUROC of the explanation and of the baseline")
def _v170(db):
    db["autointerp_scores"].add_column("auroc", float)
    db["autointerp_scores"].add_column("baseline_auroc", float)
