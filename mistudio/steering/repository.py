"""Rows of ``steering_generations`` (the generation history), one mapper."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from mistudio.store.db import Store, now_iso


@dataclass
class GenerationRecord:
    id: str
    job_id: str = ""
    status: str = "queued"
    model_id: str = ""
    model_name: str = ""
    sae_id: str = ""
    hook_name: str = ""
    prompt: str = ""
    request: dict = field(default_factory=dict)
    summary: list = field(default_factory=list)
    file: str = ""
    error: str = ""
    created_at: str = ""
    finished_at: str = ""

    @classmethod
    def from_row(cls, row: dict) -> "GenerationRecord":
        row = {k: ("" if v is None else v) for k, v in dict(row).items()}
        row["request"] = json.loads(row.get("request") or "{}")
        row["summary"] = json.loads(row.get("summary") or "[]")
        return cls(**row)

    @property
    def title(self) -> str:
        labels = [c.get("label", "") for c in self.request.get("columns", [])]
        prompt = self.prompt if len(self.prompt) <= 40 else self.prompt[:39] + "…"
        return f"{prompt!r} · {', '.join(labels) or 'baseline'}"


class GenerationsRepo:
    def __init__(self, store: Store):
        self.store = store

    @property
    def table(self):
        return self.store.db["steering_generations"]

    def insert(self, rec: GenerationRecord) -> GenerationRecord:
        rec.created_at = rec.created_at or now_iso()
        row = dict(rec.__dict__)
        row["request"] = json.dumps(rec.request)
        row["summary"] = json.dumps(rec.summary, default=str)
        with self.store.db.conn:
            self.table.insert(row, replace=True)
        return rec

    def update(self, gen_id: str, **fields) -> None:
        if "summary" in fields:
            fields["summary"] = json.dumps(fields["summary"], default=str)
        with self.store.db.conn:
            self.table.update(gen_id, fields)

    def get(self, gen_id: str) -> GenerationRecord | None:
        rows = list(self.table.rows_where("id = ?", [gen_id]))
        return GenerationRecord.from_row(rows[0]) if rows else None

    def by_job(self, job_id: str) -> GenerationRecord | None:
        rows = list(self.table.rows_where("job_id = ?", [job_id]))
        return GenerationRecord.from_row(rows[0]) if rows else None

    def list(self, limit: int | None = None, status: tuple[str, ...] | None = None
             ) -> list[GenerationRecord]:
        where, args = None, []
        if status:
            where = f"status in ({', '.join('?' * len(status))})"
            args = list(status)
        rows = self.table.rows_where(where, args, order_by="created_at desc", limit=limit)
        return [GenerationRecord.from_row(r) for r in rows]

    def delete(self, gen_id: str) -> None:
        with self.store.db.conn:
            self.table.delete_where("id = ?", [gen_id])
