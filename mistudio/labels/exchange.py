"""Labels to and from JSON / CSV files, so they can be shared, versioned and edited elsewhere.

JSON: ``{"format": "mistudio.feature_labels", "version": 1, "sae_id": ..., "d_sae": ...,
"features": [{"index": 12, "label": "...", "notes": "...", "favourite": true, "lists": [...]}]}``.
Reading also accepts a bare list of such objects, and ``feature_index``/``feature`` for
``index`` and ``description``/``explanation`` for ``label`` (the names Neuronpedia and
delphi write), so explanations from those tools import as labels.
CSV: a header row with ``index`` (or ``feature_index``) and any of ``label``, ``notes``,
``favourite``; ``lists`` as names joined by ``;``.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

from mistudio.errors import UserError

FORMAT = "mistudio.feature_labels"
INDEX_KEYS = ("index", "feature_index", "feature")
LABEL_KEYS = ("label", "description", "explanation")
TRUE = {"1", "true", "yes", "y", "x", "★"}


@dataclass
class LabelRow:
    index: int
    label: str | None = None  # None: not in the file (keep what is stored)
    notes: str | None = None
    favourite: bool | None = None
    lists: list[str] = field(default_factory=list)


def to_json(sae_id: str, d_sae: int, rows: list[LabelRow]) -> str:
    return json.dumps({"format": FORMAT, "version": 1, "sae_id": sae_id, "d_sae": d_sae,
                       "features": [{"index": r.index, "label": r.label or "",
                                     "notes": r.notes or "", "favourite": bool(r.favourite),
                                     "lists": r.lists} for r in rows]},
                      indent=1, ensure_ascii=False)


def to_csv(rows: list[LabelRow]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["index", "label", "notes", "favourite", "lists"])
    for r in rows:
        w.writerow([r.index, r.label or "", r.notes or "", int(bool(r.favourite)),
                    ";".join(r.lists)])
    return buf.getvalue()


def read_file(path: str | Path, d_sae: int) -> list[LabelRow]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise UserError(f"Cannot read {path}: {exc.strerror or exc}.",
                        hint="Check the path and that the file is readable.") from exc
    if path.suffix.lower() == ".csv":
        return parse_csv(text, d_sae, name=path.name)
    if path.suffix.lower() == ".json":
        return parse_json(text, d_sae, name=path.name)
    raise UserError(f"{path.name}: labels import reads .json or .csv files.",
                    hint="Export labels from this app or Neuronpedia as JSON, or save a sheet as CSV.")


def _index(value, d_sae: int, where: str) -> int:
    try:
        index = int(str(value).strip())
    except ValueError:
        raise UserError(f"{where}: the feature index {value!r} is not a whole number.",
                        hint="Each row needs the feature's index (0 .. d_sae-1).") from None
    if not 0 <= index < d_sae:
        raise UserError(f"{where}: feature index {index} is outside this SAE (0 .. {d_sae - 1}).",
                        hint="These labels may belong to another SAE; import them there.")
    return index


def _first(obj: dict, keys: tuple[str, ...]):
    for key in keys:
        if key in obj:
            return obj[key]
    return None


def parse_json(text: str, d_sae: int, name: str = "the file") -> list[LabelRow]:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise UserError(f"{name} is not valid JSON ({exc}).",
                        hint="Export labels again or fix the file in a text editor.") from None
    items = data.get("features", data.get("explanations")) if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise UserError(f"{name} has no list of features.",
                        hint='Expected {"features": [{"index": 0, "label": "..."}, ...]} '
                             "or a list of such objects.")
    rows = []
    for n, item in enumerate(items):
        where = f"{name}, feature entry {n + 1}"
        if not isinstance(item, dict) or _first(item, INDEX_KEYS) is None:
            raise UserError(f"{where} has no feature index.",
                            hint='Each entry needs "index" (or "feature_index").')
        label = _first(item, LABEL_KEYS)
        fav = item.get("favourite", item.get("favorite"))
        lists = item.get("lists") or []
        rows.append(LabelRow(_index(_first(item, INDEX_KEYS), d_sae, where),
                             None if label is None else str(label),
                             None if item.get("notes") is None else str(item["notes"]),
                             None if fav is None else bool(fav),
                             [str(x) for x in lists] if isinstance(lists, list) else []))
    return rows


def parse_csv(text: str, d_sae: int, name: str = "the file") -> list[LabelRow]:
    reader = csv.DictReader(io.StringIO(text))
    fields = [f.strip().lower() for f in (reader.fieldnames or [])]
    reader.fieldnames = fields
    index_key = next((k for k in INDEX_KEYS if k in fields), None)
    if index_key is None:
        raise UserError(f"{name} has no 'index' column (found: {', '.join(fields) or 'nothing'}).",
                        hint="The first row must name the columns: index,label,notes,favourite.")
    label_key = next((k for k in LABEL_KEYS if k in fields), None)
    rows = []
    for n, rec in enumerate(reader):
        where = f"{name}, line {n + 2}"
        fav = rec.get("favourite", rec.get("favorite"))
        lists = rec.get("lists") or ""
        rows.append(LabelRow(
            _index(rec.get(index_key), d_sae, where),
            None if label_key is None else (rec.get(label_key) or ""),
            None if "notes" not in fields else (rec.get("notes") or ""),
            None if fav is None else fav.strip().lower() in TRUE,
            [s.strip() for s in lists.split(";") if s.strip()]))
    return rows
