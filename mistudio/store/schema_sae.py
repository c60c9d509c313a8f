"""Tables of the SAE engine (migration 4): trainings, their SAEs, their checkpoints.

- ``trainings``: one per training run (a sweep is one training with several SAEs); its id is
  the ``target`` of every ``sae.train`` job that worked on it (a resume adds a job).
- ``saes``: every SAE the app knows, trained here (``training_id`` set) or imported from
  SAELens / sparsify / Gemma Scope files; ``folder`` holds it in SAELens layout.
- ``sae_checkpoints``: checkpoints written by a training (mirrors the folders on disk).
"""

from __future__ import annotations

from mistudio.store.migrations import migration


@migration(4, "SAE trainings, SAEs, checkpoints")
def _v4(db):
    db["trainings"].create(
        {
            "id": str,
            "name": str,
            "status": str,  # queued | running | paused | completed | failed | cancelled | interrupted
            "config": str,  # JSON: TrainingConfig.to_dict()
            "kind": str,  # sae | transcoder | skip_transcoder
            "architecture": str,
            "num_saes": int,
            "activation_id": str,
            "activation_path": str,
            "target_activation_path": str,
            "d_in": int,
            "d_out": int,
            "total_tokens": int,
            "tokens": int,  # trained so far (last checkpoint or end)
            "step": int,
            "job_id": str,  # the latest job
            "folder": str,
            "result": str,  # JSON: result.json of the last completed job
            "error": str,
            "created_at": str,
            "updated_at": str,
            "finished_at": str,
        },
        pk="id",
        not_null={"status", "created_at"},
        defaults={"status": "queued", "tokens": 0, "step": 0, "num_saes": 1},
    )
    db["trainings"].create_index(["status"])
    db["saes"].create(
        {
            "id": str,
            "name": str,
            "training_id": str,  # null for imported SAEs
            "member": str,  # sweep member name
            "source": str,  # trained | imported
            "source_ref": str,  # imported: the folder or hub repo/path it came from
            "format": str,  # saelens | sparsify | gemma_scope (of the original)
            "architecture": str,  # ours: relu | topk | batchtopk | jumprelu
            "kind": str,  # sae | transcoder | skip_transcoder
            "d_in": int,
            "d_sae": int,
            "d_out": int,
            "k": int,
            "model_name": str,
            "hook_name": str,
            "folder": str,  # SAELens layout: cfg.json + sae_weights.safetensors
            "metrics": str,  # JSON: final training metrics
            "created_at": str,
        },
        pk="id",
        not_null={"source", "folder", "created_at"},
    )
    db["saes"].create_index(["training_id"])
    db["sae_checkpoints"].create(
        {"training_id": str, "step": int, "tokens": int, "path": str, "created_at": str},
        pk=("training_id", "step"),
    )
