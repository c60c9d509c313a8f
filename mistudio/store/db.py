"""The one SQLite file: connections (one per thread), WAL, busy timeout, migrations."""

from __future__ import annotations

import datetime as _dt
import secrets
import sqlite3
import sys
import threading
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no process lock; restore then relies on the jobs table
    fcntl = None

from mistudio.errors import UserError


def _import_sqlite_utils():
    """Import sqlite-utils without pandas.

    sqlite-utils imports pandas at import time only to map ``pd.Timestamp`` to TEXT, which
    we never use; pandas costs ~0.5-1.5 s of start-up. Hiding it during that one import
    keeps the window fast; pandas stays importable for everything else.
    """
    if "sqlite_utils" in sys.modules or "pandas" in sys.modules:
        import sqlite_utils
        return sqlite_utils
    sys.modules["pandas"] = None  # makes `import pandas` raise ImportError
    try:
        import sqlite_utils
    finally:
        del sys.modules["pandas"]
    return sqlite_utils


sqlite_utils = _import_sqlite_utils()


def new_id(prefix: str) -> str:
    """Short prefixed ids: ``ds_3f9a1c2b`` (prefix names the entity, see DESIGN.md)."""
    return f"{prefix}_{secrets.token_hex(4)}"


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")


class _Database(sqlite_utils.Database):
    """``db[name]`` is always a table: the app defines no SQL views, and sqlite-utils'
    check for one read ``sqlite_master`` on every repository call (on the GUI thread, with a
    busy worker thread holding the GIL between queries, each such query cost milliseconds)."""

    def __getitem__(self, table_name: str):
        return self.table(table_name)


class Store:
    """Owns the path to ``mistudio.db`` and hands each thread its own connection."""

    BUSY_TIMEOUT_MS = 10_000

    def __init__(self, db_file: Path):
        self.db_file = Path(db_file)
        self._local = threading.local()
        self._lock = threading.RLock()
        # every connection handed out, with the thread it was made for
        self._all: list[tuple[threading.Thread, sqlite3.Connection]] = []
        self._holder = None
        self.hold()
        from mistudio.store.migrations import migrate

        try:
            migrate(self.db)
        except sqlite3.DatabaseError as exc:
            raise UserError(
                f"The database {self.db_file} cannot be read ({exc}).",
                hint="It may be damaged. Move it aside and restart; artifacts in the data "
                "folder are kept.",
            ) from exc

    @property
    def db(self) -> sqlite_utils.Database:
        db = getattr(self._local, "db", None)
        if db is None:
            conn = sqlite3.connect(str(self.db_file), timeout=self.BUSY_TIMEOUT_MS / 1000,
                                   check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout={self.BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            db = _Database(conn)
            self._local.db = db
            with self._lock:
                self._all.append((threading.current_thread(), conn))
        return db

    def transaction(self):
        """``with store.transaction():`` groups writes of this thread atomically."""
        return self.db.conn

    def schema_version(self) -> int:
        return self.db.execute("PRAGMA user_version").fetchone()[0]

    def integrity_ok(self) -> bool:
        return self.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

    @property
    def lock_file(self) -> Path:
        return self.db_file.with_name(self.db_file.name + ".lock")

    def hold(self) -> None:
        """Take a shared lock on ``mistudio.db.lock`` while this store is open, so a restore
        (which needs it exclusively) can tell that another process has the database open."""
        if self._holder is not None or fcntl is None:
            return
        try:
            fh = open(self.lock_file, "a+b")
            fcntl.flock(fh.fileno(), fcntl.LOCK_SH)
        except OSError:
            return  # a read-only folder: the database itself will say what is wrong
        self._holder = fh

    def release_hold(self) -> None:
        if self._holder is not None:
            self._holder.close()  # closing the descriptor releases the lock
            self._holder = None

    def close(self) -> None:
        """Close this thread's connection and those of threads that have ended.

        A connection another live thread owns is interrupted (a statement it is running fails
        with "interrupted") but not closed here: closing a connection under a running
        statement frees what SQLite is still using and crashes the process (seen when a
        background read outlived the window's teardown). It closes when that thread lets go
        of it: dropping the thread-local below drops the store's reference, and a later use
        of the store from that thread opens a fresh connection."""
        self.release_hold()
        me = threading.current_thread()
        with self._lock:
            for owner, conn in self._all:
                try:
                    if owner is not me and owner.is_alive():
                        conn.interrupt()
                    else:
                        conn.close()
                except sqlite3.Error:
                    pass
            self._all.clear()
        self._local = threading.local()
