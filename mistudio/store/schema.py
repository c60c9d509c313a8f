"""The tables. One migration per change, in version order."""

from __future__ import annotations

from mistudio.store.migrations import migration


@migration(1, "jobs and settings")
def _v1(db):
    db["jobs"].create(
        {
            "id": str,
            "kind": str,
            "title": str,
            "target": str,  # id of the entity the job works on (dataset, model, training...)
            "params": str,  # JSON
            "status": str,
            "progress": float,
            "total": float,
            "message": str,
            "error": str,
            "traceback": str,
            "result": str,  # JSON
            "artifact_dir": str,
            "checkpoint": str,  # JSON: the job's last complete checkpoint, for resume
            "eta_s": float,
            "log_path": str,
            "gpu": int,
            "created_at": str,
            "started_at": str,
            "finished_at": str,
            "updated_at": str,
        },
        pk="id",
        not_null={"kind", "status", "created_at"},
        defaults={"status": "queued", "progress": 0.0, "gpu": 0},
    )
    db["jobs"].create_index(["status"])
    db["jobs"].create_index(["kind"])
    db["settings"].create({"key": str, "value": str, "updated_at": str}, pk="key")
    db["job_metrics"].create(
        {"job_id": str, "step": int, "name": str, "value": float, "t": float},
        foreign_keys=[("job_id", "jobs", "id")],
    )
    db["job_metrics"].create_index(["job_id", "name", "step"])


@migration(6, "job owner process")
def _v6(db):
    # Which process runs a job, so a second process (the CLI beside the GUI) does not mark the
    # other's live jobs as interrupted at its start-up.
    db["jobs"].add_column("owner_pid", int)
    db["jobs"].add_column("owner_started", float)
