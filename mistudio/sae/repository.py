"""Rows of the ``trainings`` and ``sae_checkpoints`` tables (SAE trainings) and of the
``saes`` table (trained and imported SAEs, each a SAELens-layout folder)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mistudio.store.db import Store, now_iso
from mistudio.store.rows import RowMapper


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
        rec = TRAINING_ROWS.from_row(row)
        for key in ("d_in", "d_out", "total_tokens", "tokens", "step"):
            setattr(rec, key, int(getattr(rec, key) or 0))
        return rec


TRAINING_ROWS = RowMapper(TrainingRecord, json=("result",))


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
        with self.store.db.conn:
            self.table.insert(TRAINING_ROWS.to_row(rec))
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
        fields["updated_at"] = now_iso()
        with self.store.db.conn:
            self.table.update(training_id, TRAINING_ROWS.encode(fields))

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


@dataclass
class SAERecord:
    id: str
    folder: str
    source: str = "trained"
    name: str = ""
    training_id: str | None = None
    member: str = ""
    source_ref: str = ""
    format: str = "saelens"
    architecture: str = ""
    kind: str = "sae"
    d_in: int = 0
    d_sae: int = 0
    d_out: int = 0
    k: int | None = None
    model_name: str = ""
    hook_name: str = ""
    metrics: dict = field(default_factory=dict)
    created_at: str = ""

    @classmethod
    def from_row(cls, row: dict) -> "SAERecord":
        return SAE_ROWS.from_row(row)


SAE_ROWS = RowMapper(SAERecord)


class SAEsRepo:
    def __init__(self, store: Store):
        self.store = store

    @property
    def table(self):
        return self.store.db["saes"]

    def insert(self, rec: SAERecord) -> SAERecord:
        rec.created_at = rec.created_at or now_iso()
        with self.store.db.conn:
            self.table.insert(SAE_ROWS.to_row(rec), replace=True)
        return rec

    def get(self, sae_id: str) -> SAERecord | None:
        rows = list(self.table.rows_where("id = ?", [sae_id]))
        return SAERecord.from_row(rows[0]) if rows else None

    def list(self, training_id: str | None = None) -> list[SAERecord]:
        if training_id:
            rows = self.table.rows_where("training_id = ?", [training_id], order_by="member")
        else:
            rows = self.table.rows_where(order_by="created_at desc")
        return [SAERecord.from_row(r) for r in rows]

    def update_metrics(self, sae_id: str, metrics: dict) -> None:
        with self.store.db.conn:
            self.table.update(sae_id, SAE_ROWS.encode({"metrics": metrics}))

    def delete(self, sae_id: str) -> None:
        with self.store.db.conn:
            self.table.delete_where("id = ?", [sae_id])

    def delete_for_training(self, training_id: str) -> None:
        with self.store.db.conn:
            self.table.delete_where("training_id = ?", [training_id])
