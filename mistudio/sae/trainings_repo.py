"""Rows of the ``trainings`` and ``sae_checkpoints`` tables."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from mistudio.store.db import Store, now_iso


@dataclass
class TrainingRecord:
    id: str
    name: str = ""
    status: str = "queued"
    config: dict = field(default_factory=dict)
    kind: str = "sae"
    architecture: str = ""
    num_saes: int = 1
    activation_id: str = ""
    activation_path: str = ""
    target_activation_path: str = ""
    d_in: int = 0
    d_out: int = 0
    total_tokens: int = 0
    tokens: int = 0
    step: int = 0
    job_id: str = ""
    folder: str = ""
    result: Any = None
    error: str = ""
    created_at: str = ""
    updated_at: str = ""
    finished_at: str | None = None

    @property
    def fraction(self) -> float:
        return min(1.0, self.tokens / self.total_tokens) if self.total_tokens else 0.0

    @classmethod
    def from_row(cls, row: dict) -> "TrainingRecord":
        row = dict(row)
        row["config"] = json.loads(row.get("config") or "{}")
        row["result"] = json.loads(row["result"]) if row.get("result") else None
        for key in ("name", "kind", "architecture", "activation_id", "activation_path",
                    "target_activation_path", "job_id", "folder", "error", "updated_at"):
            row[key] = row.get(key) or ""
        for key in ("d_in", "d_out", "total_tokens", "tokens", "step"):
            row[key] = int(row.get(key) or 0)
        return cls(**row)


class TrainingsRepo:
    def __init__(self, store: Store):
        self.store = store

    @property
    def table(self):
        return self.store.db["trainings"]

    def insert(self, rec: TrainingRecord) -> TrainingRecord:
        now = now_iso()
        rec.created_at = rec.created_at or now
        rec.updated_at = now
        row = dict(rec.__dict__)
        row["config"] = json.dumps(rec.config)
        row["result"] = json.dumps(rec.result) if rec.result is not None else None
        with self.store.db.conn:
            self.table.insert(row)
        return rec

    def get(self, training_id: str) -> TrainingRecord | None:
        rows = list(self.table.rows_where("id = ?", [training_id]))
        return TrainingRecord.from_row(rows[0]) if rows else None

    def list(self, status: list[str] | None = None) -> list[TrainingRecord]:
        where, args = None, []
        if status:
            where = f"status in ({','.join('?' * len(status))})"
            args = list(status)
        return [TrainingRecord.from_row(r)
                for r in self.table.rows_where(where, args, order_by="created_at desc")]

    def update(self, training_id: str, **fields: Any) -> None:
        for key in ("config", "result"):
            if key in fields and not isinstance(fields[key], str) and fields[key] is not None:
                fields[key] = json.dumps(fields[key], default=str)
        fields["updated_at"] = now_iso()
        with self.store.db.conn:
            self.table.update(training_id, fields)

    def delete(self, training_id: str) -> None:
        with self.store.db.conn:
            self.store.db["sae_checkpoints"].delete_where("training_id = ?", [training_id])
            self.table.delete_where("id = ?", [training_id])

    # checkpoints (mirror of the folders on disk)
    def set_checkpoints(self, training_id: str, checkpoints: list[dict]) -> None:
        with self.store.db.conn:
            self.store.db["sae_checkpoints"].delete_where("training_id = ?", [training_id])
            if checkpoints:
                self.store.db["sae_checkpoints"].insert_all(
                    [{"training_id": training_id, **c} for c in checkpoints])
