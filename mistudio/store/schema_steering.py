"""Tables of steering (migration 30): the generation history.

- ``steering_generations``: one row per steering comparison (a ``steering.generate`` job);
  the outputs, tokens and metrics are in the JSON file ``steering/generations/<id>.json``.
"""

from __future__ import annotations

from mistudio.store.migrations import migration


@migration(30, "steering generations")
def _v30(db):
    db["steering_generations"].create(
        {
            "id": str,           # gen_...
            "job_id": str,
            "status": str,       # queued | running | completed | failed | cancelled | interrupted
            "model_id": str,
            "model_name": str,
            "sae_id": str,
            "hook_name": str,
            "prompt": str,
            "request": str,      # JSON: the whole request (columns, sampling, scope, chat)
            "summary": str,      # JSON: per column label, start of text, kl_mean, perplexity
            "file": str,         # steering/generations/<id>.json
            "error": str,
            "created_at": str,
            "finished_at": str,
        },
        pk="id",
        not_null={"status", "created_at"},
        defaults={"status": "queued"},
    )
    db["steering_generations"].create_index(["created_at"])
    db["steering_generations"].create_index(["job_id"])
