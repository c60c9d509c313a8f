"""One mapping between a record dataclass and its table row, for every repository.

The dataclass's annotations say how a field is stored: ``dict``/``list`` fields as JSON text
(NULL or '' reads back as the field's default), ``bool`` as 0/1, ``str`` never NULL (a NULL
reads as ''). Columns the dataclass does not know (a newer schema, a dropped field) are left
out, so old code reads new databases and the other way round.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Generic, TypeVar

T = TypeVar("T")


def where_equal(**conditions: Any) -> tuple[list[str], list[Any]]:
    """``column = ?`` clauses and their arguments for the conditions that are set: a filter
    left at None or '' is no filter (0 and False are values). Callers add their own clauses
    (ranges, LIKE) to the lists and join them with `` and ``."""
    where, args = [], []
    for column, value in conditions.items():
        if value is not None and value != "":
            where.append(f"{column} = ?")
            args.append(value)
    return where, args


def _kind(annotation: Any) -> str:
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__",
                                                                    str(annotation))
    base = text.split("|")[0].split("[")[0].strip()
    if base in ("dict", "list"):
        return "json"
    if text.strip() == "bool":
        return "bool"
    if text.strip() == "str":
        return "str"
    return ""


class RowMapper(Generic[T]):
    """``RowMapper(ModelRecord)``: ``from_row(row)``, ``to_row(rec)``, ``encode(values)`` for a
    partial update. ``sort_keys`` makes JSON text stable (rows compared or exported);
    ``json`` names fields stored as JSON whatever their annotation (``Any``); ``skip`` names
    fields that are not columns (derived on reading)."""

    def __init__(self, cls: type[T], *, sort_keys: bool = False, json: tuple[str, ...] = (),
                 skip: tuple[str, ...] = ()):
        self.cls = cls
        self.sort_keys = sort_keys
        self.fields = {f.name: f for f in dataclasses.fields(cls) if f.name not in skip}
        self.kinds = {name: "json" if name in json else _kind(f.type)
                      for name, f in self.fields.items()}

    def _default(self, name: str):
        f = self.fields[name]
        if f.default_factory is not dataclasses.MISSING:
            return f.default_factory()
        return None if f.default is dataclasses.MISSING else f.default

    def decode(self, row: dict) -> dict:
        """A row's known columns as field values."""
        out = {}
        for key, value in dict(row).items():
            kind = self.kinds.get(key)
            if kind is None:
                continue
            if kind == "json":
                value = json.loads(value) if value not in (None, "") and isinstance(value, str) \
                    else (value if value not in (None, "") else self._default(key))
            elif kind == "bool":
                value = bool(value)
            elif kind == "str" and value is None:
                value = ""
            out[key] = value
        return out

    def from_row(self, row: dict, **extra) -> T:
        return self.cls(**self.decode(row), **extra)

    def encode(self, values: dict) -> dict:
        """Field values (all or some) as column values."""
        out = {}
        for key, value in values.items():
            kind = self.kinds.get(key)
            if kind == "json" and value is not None and not isinstance(value, str):
                value = json.dumps(value, default=str, sort_keys=self.sort_keys)
            elif kind == "bool" and value is not None:
                value = int(bool(value))
            out[key] = value
        return out

    def to_row(self, rec: T) -> dict:
        return self.encode({name: getattr(rec, name) for name in self.fields})
