"""Rows of the ``activation_sets`` table."""

from __future__ import annotations

from dataclasses import dataclass, field

from mistudio.store.db import Store, now_iso
from mistudio.store.rows import RowMapper


@dataclass
class ActivationSetRecord:
    id: str
    hook_name: str
    status: str
    extraction_id: str = ""
    name: str = ""
    model_id: str = ""
    hook_layer: int | None = None
    dtype: str = ""
    d_in: int | None = None
    num_rows: int | None = None
    seq_len: int | None = None
    tokenization: str = ""
    dataset_id: str = ""
    folder: str = ""
    size_bytes: int | None = None
    summary: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)
    job_id: str = ""
    pinned: bool = False  # kept by the cleanup rule "keep the last N sets"
    created_at: str = ""
    updated_at: str = ""

    @classmethod
    def from_row(cls, row: dict) -> "ActivationSetRecord":
        return SET_ROWS.from_row(row)

    def to_row(self) -> dict:
        return SET_ROWS.to_row(self)


SET_ROWS = RowMapper(ActivationSetRecord)


class ActivationSetsRepo:
    def __init__(self, store: Store):
        self.store = store

    @property
    def table(self):
        return self.store.db["activation_sets"]

    def insert_all(self, recs: list[ActivationSetRecord]) -> None:
        now = now_iso()
        for r in recs:
            r.created_at = r.created_at or now
            r.updated_at = now
        with self.store.db.conn:
            self.table.insert_all([r.to_row() for r in recs])

    def get(self, set_id: str) -> ActivationSetRecord | None:
        rows = list(self.table.rows_where("id = ?", [set_id]))
        return ActivationSetRecord.from_row(rows[0]) if rows else None

    def find(self, text: str) -> list[ActivationSetRecord]:
        rows = self.table.rows_where("id = ? or id like ? or name = ?", [text, f"{text}%", text])
        return [ActivationSetRecord.from_row(r) for r in rows]

    def list(self, *, model_id: str | None = None, extraction_id: str | None = None,
             status: str | None = None) -> list[ActivationSetRecord]:
        where, args = [], []
        for col, val in (("model_id", model_id), ("extraction_id", extraction_id),
                         ("status", status)):
            if val:
                where.append(f"{col} = ?")
                args.append(val)
        rows = self.table.rows_where(" and ".join(where) or None, args, order_by="created_at desc")
        return [ActivationSetRecord.from_row(r) for r in rows]

    def update(self, set_id: str, **values) -> None:
        values["updated_at"] = now_iso()
        with self.store.db.conn:
            self.table.update(set_id, SET_ROWS.encode(values))

    def delete(self, set_id: str) -> None:
        with self.store.db.conn:
            self.table.delete_where("id = ?", [set_id])
