"""Rows of ``training_templates``, ``template_favourites`` and ``template_state``."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from mistudio.store.db import Store, now_iso
from mistudio.store.rows import RowMapper


@dataclass
class TrainingTemplate:
    id: str
    name: str
    config: dict
    description: str = ""
    builtin: bool = False
    favourite: bool = False
    created_at: str = ""
    updated_at: str = ""
    tags: list[str] = field(default_factory=list)

    def to_export(self) -> dict:
        return {"name": self.name, "description": self.description, "config": self.config}


# the columns of training_templates; favourite comes from template_favourites
ROWS = RowMapper(TrainingTemplate, sort_keys=True, skip=("builtin", "favourite", "tags"))


class TemplatesRepo:
    def __init__(self, store: Store):
        self.store = store

    @property
    def _db(self):
        return self.store.db

    # ------------------------------------------------------------------ templates

    @staticmethod
    def _from_row(row: dict, favourites: set[str]) -> TrainingTemplate:
        return ROWS.from_row(row, favourite=row["id"] in favourites)

    def list(self) -> list[TrainingTemplate]:
        favs = self.favourites()
        return [self._from_row(r, favs)
                for r in self._db["training_templates"].rows_where(order_by="name collate nocase")]

    def get(self, template_id: str) -> TrainingTemplate | None:
        rows = list(self._db["training_templates"].rows_where("id = ?", [template_id]))
        return self._from_row(rows[0], self.favourites()) if rows else None

    def find_by_name(self, name: str) -> TrainingTemplate | None:
        rows = list(self._db["training_templates"].rows_where("name = ? collate nocase", [name]))
        return self._from_row(rows[0], self.favourites()) if rows else None

    def insert(self, template_id: str, name: str, description: str, config: dict) -> None:
        now = now_iso()
        with self._db.conn:
            self._db["training_templates"].insert(ROWS.encode({
                "id": template_id, "name": name, "description": description,
                "config": config, "created_at": now, "updated_at": now}))

    def update(self, template_id: str, **fields) -> None:
        fields["updated_at"] = now_iso()
        with self._db.conn:
            self._db["training_templates"].update(template_id, ROWS.encode(fields))

    def delete(self, template_id: str) -> None:
        with self._db.conn:
            self._db["training_templates"].delete_where("id = ?", [template_id])
            self._db["template_favourites"].delete_where("template_id = ?", [template_id])

    # ------------------------------------------------------------------ favourites

    def favourites(self) -> set[str]:
        return {r["template_id"] for r in self._db["template_favourites"].rows}

    def set_favourite(self, template_id: str, favourite: bool) -> None:
        with self._db.conn:
            if favourite:
                self._db["template_favourites"].upsert(
                    {"template_id": template_id, "created_at": now_iso()}, pk="template_id")
            else:
                self._db["template_favourites"].delete_where("template_id = ?", [template_id])

    # ------------------------------------------------------------------ state

    def get_state(self, key: str):
        rows = list(self._db["template_state"].rows_where("key = ?", [key]))
        if not rows:
            return None
        try:
            return json.loads(rows[0]["value"])
        except (TypeError, ValueError):
            return None

    def set_state(self, key: str, value) -> None:
        with self._db.conn:
            self._db["template_state"].upsert(
                {"key": key, "value": json.dumps(value, sort_keys=True), "updated_at": now_iso()},
                pk="key")
