"""Rows of ``templates`` (the user's saved templates, every kind), ``template_usage``
(favourite, use count and last use of any template, built-in or saved) and ``template_state``
(the last-used training form settings)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from mistudio.store.db import Store, now_iso
from mistudio.store.rows import RowMapper

KINDS = ("training", "extraction")


@dataclass
class Template:
    """A named set of settings: a training recipe (TrainingConfig fields) or an extraction
    recipe (layers, hook types, max tokens, batch size, storage dtype, skip BOS)."""

    id: str
    name: str
    settings: dict
    kind: str = "training"
    description: str = ""
    builtin: bool = False
    favourite: bool = False
    use_count: int = 0
    last_used_at: str = ""
    created_at: str = ""
    updated_at: str = ""
    tags: list[str] = field(default_factory=list)

    def to_export(self) -> dict:
        # the shared file format names a training template's settings "config"
        return {"name": self.name, "description": self.description, "config": self.settings}


# the columns of ``templates``; favourite/use_count/last_used_at come from ``template_usage``
ROWS = RowMapper(Template, sort_keys=True,
                 skip=("builtin", "favourite", "use_count", "last_used_at", "tags"))


class TemplateUsage:
    def __init__(self, favourite: bool = False, use_count: int = 0, last_used_at: str = ""):
        self.favourite, self.use_count, self.last_used_at = favourite, use_count, last_used_at


class TemplatesRepo:
    """The saved templates of one ``kind``, and the usage of any template."""

    def __init__(self, store: Store, kind: str = "training"):
        self.store = store
        self.kind = kind

    @property
    def _db(self):
        return self.store.db

    # ------------------------------------------------------------------ templates

    def _from_row(self, row: dict, usage: dict[str, TemplateUsage]) -> Template:
        u = usage.get(row["id"]) or TemplateUsage()
        return ROWS.from_row(row, favourite=u.favourite, use_count=u.use_count,
                             last_used_at=u.last_used_at)

    def _where(self, where: str, args: list) -> list[Template]:
        usage = self.usage()
        rows = self._db["templates"].rows_where(f"kind = ? and ({where})", [self.kind, *args],
                                                order_by="name collate nocase")
        return [self._from_row(r, usage) for r in rows]

    def list(self) -> list[Template]:
        return self._where("1", [])

    def get(self, template_id: str) -> Template | None:
        found = self._where("id = ?", [template_id])
        return found[0] if found else None

    def find_by_name(self, name: str) -> Template | None:
        found = self._where("name = ? collate nocase", [name])
        return found[0] if found else None

    def insert(self, template_id: str, name: str, description: str, settings: dict) -> None:
        now = now_iso()
        with self._db.conn:
            self._db["templates"].insert(ROWS.encode({
                "id": template_id, "kind": self.kind, "name": name, "description": description,
                "settings": settings, "created_at": now, "updated_at": now}))

    def update(self, template_id: str, **fields) -> None:
        fields["updated_at"] = now_iso()
        with self._db.conn:
            self._db["templates"].update(template_id, ROWS.encode(fields))

    def delete(self, template_id: str) -> None:
        with self._db.conn:
            self._db["templates"].delete_where("id = ?", [template_id])
            self._db["template_usage"].delete_where("template_id = ?", [template_id])

    # ------------------------------------------------------------------ usage

    def usage(self) -> dict[str, TemplateUsage]:
        return {r["template_id"]: TemplateUsage(bool(r["favourite"]), int(r["use_count"] or 0),
                                                r["last_used_at"] or "")
                for r in self._db["template_usage"].rows}

    def favourites(self) -> set[str]:
        return {k for k, u in self.usage().items() if u.favourite}

    def set_favourite(self, template_id: str, favourite: bool) -> None:
        with self._db.conn:
            self._db.execute("INSERT INTO template_usage (template_id, favourite) VALUES (?, ?) "
                             "ON CONFLICT(template_id) DO UPDATE SET favourite = excluded.favourite",
                             [template_id, int(favourite)])

    def record_use(self, template_id: str) -> None:
        with self._db.conn:
            self._db.execute("INSERT INTO template_usage (template_id, use_count, last_used_at) "
                             "VALUES (?, 1, ?) ON CONFLICT(template_id) DO UPDATE SET "
                             "use_count = use_count + 1, last_used_at = excluded.last_used_at",
                             [template_id, now_iso()])

    def move_usage(self, old_id: str, new_id: str) -> None:
        with self._db.conn:
            self._db.execute("DELETE FROM template_usage WHERE template_id = ?", [new_id])
            self._db.execute("UPDATE template_usage SET template_id = ? WHERE template_id = ?",
                             [new_id, old_id])

    def forget_usage(self, usage_id: str) -> None:
        with self._db.conn:
            self._db["template_usage"].delete_where("template_id = ?", [usage_id])

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
