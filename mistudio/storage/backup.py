"""Database backups with SQLite's online backup API, and restoring one.

A backup is a folder ``backups/<stamp>[-label]/`` holding ``mistudio.db`` (a consistent copy
taken while jobs may be writing), a copy of the steering presets (``steering/presets/``) and
``manifest.json`` (sizes, SHA-256, schema version, integrity) written last: a folder without
a manifest is an unfinished backup and is never offered for restore.

Restoring checks the backup's integrity and checksum first, refuses while another process
has the database open (the store holds a shared lock on ``mistudio.db.lock``; restore needs
it exclusively), keeps the current database as a ``before-restore`` backup, swaps the file
atomically and checks the result.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from mistudio.errors import UserError
from mistudio.paths import atomic_write_json

MANIFEST = "manifest.json"
DB_NAME = "mistudio.db"

try:
    import fcntl
except ImportError:
    fcntl = None


@dataclass
class BackupInfo:
    name: str
    path: str
    created_at: str
    bytes: int
    schema_version: int
    label: str

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def integrity(db_file: Path) -> str:
    """``PRAGMA integrity_check`` of a database file, read only ("ok" when sound)."""
    try:
        conn = sqlite3.connect(f"file:{db_file}?mode=ro", uri=True)
        try:
            return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        return f"not a database: {exc}"


def backup_database(db_file: str | os.PathLike, backups_dir: str | os.PathLike, *,
                    label: str = "", presets_dir: str | os.PathLike | None = None,
                    keep: int | None = None) -> BackupInfo:
    db_file, backups_dir = Path(db_file), Path(backups_dir)
    now = _dt.datetime.now(_dt.timezone.utc)
    name = now.strftime("%Y%m%d-%H%M%S-%f") + (f"-{label}" if label else "")
    work = backups_dir / f".{name}.partial"
    final = backups_dir / name
    work.mkdir(parents=True, exist_ok=False)
    try:
        src = sqlite3.connect(str(db_file), timeout=10)
        dst = sqlite3.connect(str(work / DB_NAME))
        try:
            src.backup(dst)  # page by page; sees one consistent snapshot while others write
            version = dst.execute("PRAGMA user_version").fetchone()[0]
        finally:
            dst.close()
            src.close()
        check = integrity(work / DB_NAME)
        if check != "ok":
            raise UserError(f"The backup of {db_file} failed its integrity check: {check}.",
                            hint="The database may be damaged; `mistudio storage backups` "
                            "lists earlier backups to restore.")
        if presets_dir and Path(presets_dir).is_dir():
            shutil.copytree(presets_dir, work / "presets")
        size = (work / DB_NAME).stat().st_size
        atomic_write_json(work / MANIFEST, {
            "created_at": now.isoformat(timespec="seconds"), "label": label,
            "schema_version": version, "database": DB_NAME, "bytes": size,
            "sha256": _sha256(work / DB_NAME), "integrity": check,
        })
        os.replace(work, final)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    if keep:
        prune(backups_dir, keep)
    return _info(final)


def _info(folder: Path) -> BackupInfo:
    m = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    return BackupInfo(folder.name, str(folder), m["created_at"], int(m["bytes"]),
                      int(m["schema_version"]), m.get("label", ""))


def list_backups(backups_dir: str | os.PathLike) -> list[BackupInfo]:
    """Complete backups (with a manifest), newest first."""
    out = []
    d = Path(backups_dir)
    if not d.is_dir():
        return out
    for folder in d.iterdir():
        if folder.name.startswith(".") or not (folder / MANIFEST).is_file():
            continue
        try:
            out.append(_info(folder))
        except (OSError, ValueError, KeyError):
            continue
    out.sort(key=lambda b: b.name, reverse=True)
    return out


def prune(backups_dir: str | os.PathLike, keep: int) -> list[str]:
    """Delete all but the newest ``keep`` complete backups (and unfinished ones)."""
    d = Path(backups_dir)
    removed = []
    for b in list_backups(d)[max(1, keep):]:
        shutil.rmtree(b.path, ignore_errors=True)
        removed.append(b.name)
    for partial in d.glob(".*.partial"):
        shutil.rmtree(partial, ignore_errors=True)
    return removed


def daily_backup_due(backups_dir: str | os.PathLike, *, hours: float = 24.0) -> bool:
    backups = list_backups(backups_dir)
    if not backups:
        return True
    last = _dt.datetime.fromisoformat(backups[0].created_at)
    return _dt.datetime.now(_dt.timezone.utc) - last >= _dt.timedelta(hours=hours)


def find_backup(backups_dir: str | os.PathLike, ref: str) -> BackupInfo:
    """A backup by folder name (a prefix is enough), or a path to a backup folder."""
    p = Path(ref)
    if p.is_dir() and (p / MANIFEST).is_file():
        return _info(p)
    matches = [b for b in list_backups(backups_dir) if b.name.startswith(ref)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise UserError(f"No backup {ref!r}.", hint="`mistudio storage backups` lists them.")
    raise UserError(f"{ref!r} matches several backups: "
                    f"{', '.join(b.name for b in matches[:5])}.", hint="Give more of the name.")


def verify_backup(backup: BackupInfo) -> None:
    folder = Path(backup.path)
    m = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    db = folder / m.get("database", DB_NAME)
    if not db.is_file() or db.stat().st_size != int(m["bytes"]) or _sha256(db) != m["sha256"]:
        raise UserError(f"The backup {backup.name} does not match its manifest (changed or "
                        "truncated since it was taken).", hint="Restore another backup.")
    check = integrity(db)
    if check != "ok":
        raise UserError(f"The backup {backup.name} fails SQLite's integrity check: {check}.",
                        hint="Restore another backup.")


def exclusive_lock(db_file: Path):
    """The database's lock file held exclusively, or a UserError if another process has the
    database open. The caller closes the returned handle to release it."""
    lock = db_file.with_name(db_file.name + ".lock")
    fh = open(lock, "a+b")
    if fcntl is None:
        return fh
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        fh.close()
        raise UserError("Another process has this data folder's database open (the app "
                        "window or a command still running).",
                        hint="Close it, then restore again.") from None
    return fh


def checkpoint(db_file: Path) -> None:
    """Fold the write-ahead log into the database file (caller holds the exclusive lock), so
    ``mistudio.db`` alone holds every committed row."""
    conn = sqlite3.connect(str(db_file), timeout=10)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


def swap_in(backup: BackupInfo, db_file: Path) -> None:
    """Replace ``db_file`` with the backup's copy (caller holds the exclusive lock)."""
    src = Path(backup.path) / DB_NAME
    tmp = db_file.with_name(f".{db_file.name}.restore.tmp")
    shutil.copyfile(src, tmp)
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    for suffix in ("-wal", "-shm"):  # the old database's journal must not replay onto the new
        db_file.with_name(db_file.name + suffix).unlink(missing_ok=True)
    os.replace(tmp, db_file)
    check = integrity(db_file)
    if check != "ok":
        raise UserError(f"The restored database fails its integrity check: {check}.",
                        hint="Restore the 'before-restore' backup taken just now.")
