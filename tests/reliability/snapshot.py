"""What a data folder holds, to compare before and after a command: every file (size and
SHA-256) and folder, and every row of every table of the database.

Left out of the file list: the database's own files (compared by their rows instead: SQLite
rewrites pages and the WAL without changing a row), the app's log, which records the
refused command on purpose, and the log of free-space checks that jobs append to."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

NOT_COMPARED = {"mistudio.db", "mistudio.db-wal", "mistudio.db-shm", "mistudio.db.lock",
                "logs/mistudio.log", "logs/space-checks.jsonl"}


def files(data: Path) -> dict[str, tuple]:
    out: dict[str, tuple] = {}
    for path in sorted(data.rglob("*")):
        rel = path.relative_to(data).as_posix()
        if rel in NOT_COMPARED:
            continue
        if path.is_dir():
            out[rel + "/"] = ("dir",)
        else:
            out[rel] = (path.stat().st_size, hashlib.sha256(path.read_bytes()).hexdigest())
    return out


def rows(db_file: Path) -> dict[str, list]:
    conn = sqlite3.connect(f"file:{db_file}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]
        return {t: sorted(map(repr, conn.execute(f'SELECT * FROM "{t}"'))) for t in tables}
    finally:
        conn.close()


def snapshot(data: Path) -> dict:
    return {"files": files(data), "rows": rows(data / "mistudio.db")}


def differences(before: dict, after: dict) -> list[str]:
    """Human-readable lines: files added, removed or changed; rows added or removed."""
    out = []
    fb, fa = before["files"], after["files"]
    out += [f"file added: {k}" for k in sorted(fa.keys() - fb.keys())]
    out += [f"file removed: {k}" for k in sorted(fb.keys() - fa.keys())]
    out += [f"file changed: {k}" for k in sorted(fb.keys() & fa.keys()) if fb[k] != fa[k]]
    for table in sorted(before["rows"].keys() | after["rows"].keys()):
        rb, ra = before["rows"].get(table, []), after["rows"].get(table, [])
        if rb != ra:
            added = sorted(set(ra) - set(rb))
            removed = sorted(set(rb) - set(ra))
            out += [f"row added to {table}: {r[:200]}" for r in added]
            out += [f"row removed from {table}: {r[:200]}" for r in removed]
    return out
