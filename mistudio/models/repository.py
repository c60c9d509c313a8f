"""Rows of the ``models`` table."""

from __future__ import annotations

from dataclasses import dataclass, field

from mistudio.store.db import Store, now_iso
from mistudio.store.rows import RowMapper


@dataclass
class ModelRecord:
    id: str
    name: str
    source: str
    status: str = "ready"
    source_ref: str = ""
    revision: str = ""
    commit_sha: str = ""
    folder: str = ""
    linked: bool = False
    error: str = ""
    family: str = ""
    architecture: str = ""
    n_layers: int | None = None
    d_model: int | None = None
    n_params: int | None = None
    dtype: str = ""
    size_bytes: int | None = None
    trust_remote_code: bool = False
    tokenizer_fingerprint: str = ""
    variants: dict = field(default_factory=dict)
    job_id: str = ""
    created_at: str = ""
    updated_at: str = ""

    @classmethod
    def from_row(cls, row: dict) -> "ModelRecord":
        return ROWS.from_row(row)

    def to_row(self) -> dict:
        return ROWS.to_row(self)

    @property
    def ready(self) -> bool:
        return self.status == "ready"


ROWS = RowMapper(ModelRecord)


class ModelsRepo:
    def __init__(self, store: Store):
        self.store = store

    @property
    def table(self):
        return self.store.db["models"]

    def insert(self, rec: ModelRecord) -> ModelRecord:
        rec.created_at = rec.created_at or now_iso()
        rec.updated_at = now_iso()
        with self.store.db.conn:
            self.table.insert(rec.to_row())
        return rec

    def get(self, model_id: str) -> ModelRecord | None:
        rows = list(self.table.rows_where("id = ?", [model_id]))
        return ModelRecord.from_row(rows[0]) if rows else None

    def find(self, text: str) -> list[ModelRecord]:
        """By id, id prefix or exact name."""
        rows = self.table.rows_where("id = ? or id like ? or name = ?",
                                     [text, f"{text}%", text])
        return [ModelRecord.from_row(r) for r in rows]

    def list(self) -> list[ModelRecord]:
        return [ModelRecord.from_row(r) for r in self.table.rows_where(order_by="created_at")]

    def update(self, model_id: str, **values) -> None:
        values["updated_at"] = now_iso()
        with self.store.db.conn:
            self.table.update(model_id, ROWS.encode(values))

    def delete(self, model_id: str) -> None:
        with self.store.db.conn:
            self.table.delete_where("id = ?", [model_id])
