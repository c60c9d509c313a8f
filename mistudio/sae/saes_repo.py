"""Rows of the ``saes`` table: trained and imported SAEs (each a SAELens-layout folder)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from mistudio.store.db import Store, now_iso


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
        row = dict(row)
        row["metrics"] = json.loads(row.get("metrics") or "{}")
        for key in ("name", "member", "source_ref", "format", "architecture", "kind",
                    "model_name", "hook_name"):
            row[key] = row.get(key) or ""
        return cls(**row)


class SAEsRepo:
    def __init__(self, store: Store):
        self.store = store

    @property
    def table(self):
        return self.store.db["saes"]

    def insert(self, rec: SAERecord) -> SAERecord:
        rec.created_at = rec.created_at or now_iso()
        row: dict[str, Any] = dict(rec.__dict__)
        row["metrics"] = json.dumps(rec.metrics, default=str)
        with self.store.db.conn:
            self.table.insert(row, replace=True)
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
            self.table.update(sae_id, {"metrics": json.dumps(metrics, default=str)})

    def delete(self, sae_id: str) -> None:
        with self.store.db.conn:
            self.table.delete_where("id = ?", [sae_id])

    def delete_for_training(self, training_id: str) -> None:
        with self.store.db.conn:
            self.table.delete_where("training_id = ?", [training_id])
