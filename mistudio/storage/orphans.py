"""Orphans: folders in the data folder that no database row knows, and rows whose folder
is gone. Found, listed and offered for cleanup; never deleted here.

A folder counts as known when its name is the id of any row in any table (a tokenization
lives below its dataset's folder under its own id, quantized copies below their model's).
Rows are checked only for folders inside the data folder: a model used in place (the
user's own folder, ``linked``) is never followed.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

ENTITY_FOLDERS = ("datasets", "models", "activations", "trainings", "features")


@dataclass
class Orphan:
    kind: str  # "folder" (no row) | "row" (no folder)
    where: str  # the folder's path, or "table:id"
    detail: str

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def _tables(conn: sqlite3.Connection) -> list[str]:
    return [r[0] for r in conn.execute(
        "select name from sqlite_master where type='table' and name not like 'sqlite_%'")]


def _columns(conn: sqlite3.Connection, table: str) -> list[str]:
    return [r[1] for r in conn.execute(f"PRAGMA table_info('{table}')")]


def find_orphans(db_file: str | Path, root: str | Path) -> list[Orphan]:
    root = Path(root).resolve()
    conn = sqlite3.connect(f"file:{db_file}?mode=ro", uri=True, timeout=10)
    try:
        ids: set[str] = set()
        rows_missing: list[Orphan] = []
        for table in _tables(conn):
            cols = _columns(conn, table)
            if "id" not in cols:
                continue
            select = "id, folder" if "folder" in cols else "id, NULL"
            linked = ", linked" if "linked" in cols else ", 0"
            for rid, folder, is_linked in conn.execute(f"select {select}{linked} from {table}"):
                ids.add(str(rid))
                if not folder or is_linked:
                    continue
                p = Path(folder)
                try:
                    inside = p.resolve().is_relative_to(root)
                except OSError:
                    inside = False
                if inside and not p.exists():
                    rows_missing.append(Orphan("row", f"{table}:{rid}",
                                               f"its folder {folder} is missing"))
    finally:
        conn.close()
    out = []
    for name in ENTITY_FOLDERS:
        d = root / name
        if not d.is_dir():
            continue
        for child in sorted(d.iterdir()):
            if child.name.startswith(".") or child.name in ids:
                continue
            out.append(Orphan("folder", str(child), f"no record in the database owns {name}/"
                              f"{child.name}"))
    return out + rows_missing
