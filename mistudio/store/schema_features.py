"""Tables of feature analysis (migration 20; 20-29 are reserved for this area).

- ``feature_analyses``: one row per analysis (``fa_...``) of one SAE over one tokenization:
  what it read (SAE, model, hook, tokenization, tokens, seed), its status, its folder
  (``features/<fa_id>/`` in the data folder, see :mod:`mistudio.analysis.results`) and a
  JSON summary (dead features, mean L0, timings, versions).
- ``analysis_features``: one row per feature of a completed analysis, the numbers the
  Features tab sorts and filters by. Arrays (histograms, examples, neighbours, logit lens)
  live in the analysis folder's files.
"""

from __future__ import annotations

from mistudio.store.migrations import migration


@migration(20, "feature analyses and their per-feature rows")
def _v20(db):
    db["feature_analyses"].create(
        {
            "id": str,
            "sae_id": str,
            "status": str,  # queued | running | completed | failed | cancelled | interrupted
            "job_id": str,
            "model_id": str,
            "model_name": str,
            "hook_name": str,
            "tokenization": str,  # folder of the tokenization read
            "activation_path": str,  # an activation set used instead of the forward pass
            "max_tokens": int,  # asked for (0: all)
            "n_tokens": int,  # analysed (BOS and padding excluded)
            "seed": int,
            "d_sae": int,
            "folder": str,
            "params": str,  # JSON: the job's parameters
            "summary": str,  # JSON: dead, mean_l0, elapsed_s, tokens_per_s, versions
            "error": str,
            "created_at": str,
            "finished_at": str,
        },
        pk="id",
        not_null={"sae_id", "status", "created_at"},
        defaults={"status": "queued", "n_tokens": 0, "max_tokens": 0, "seed": 0},
    )
    db["feature_analyses"].create_index(["sae_id", "created_at"])
    db["analysis_features"].create(
        {
            "analysis_id": str,
            "feature": int,
            "firing_count": int,
            "density": float,  # firing_count / n_tokens
            "log10_density": float,  # -inf stored as NULL for dead features
            "max_act": float,
            "mean_act": float,  # mean of the non-zero activations
            "dead": int,  # 1: never fired on the analysed tokens
            "top_tokens": str,  # most frequent tokens at the top examples (search)
            "logit_top": str,  # logit lens: top tokens, raw W_U (search)
            "logit_bottom": str,
        },
        pk=("analysis_id", "feature"),
    )
    db["analysis_features"].create_index(["analysis_id", "density"])
    db["analysis_features"].create_index(["analysis_id", "max_act"])
