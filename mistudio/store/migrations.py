"""Schema migrations, applied in order at start-up.

Each migration is a function of the database, registered with a version number.
``PRAGMA user_version`` records the last one applied. Later features append theirs
with :func:`migration`; never edit one that has shipped.
"""

from __future__ import annotations

from typing import Callable

from mistudio.store.db import sqlite_utils

Migration = Callable[[sqlite_utils.Database], None]
_MIGRATIONS: dict[int, tuple[str, Migration]] = {}


def migration(version: int, name: str):
    def register(fn: Migration) -> Migration:
        if version in _MIGRATIONS and _MIGRATIONS[version][1] is not fn:
            raise RuntimeError(f"two migrations claim version {version}")
        _MIGRATIONS[version] = (name, fn)
        return fn

    return register


def latest_version() -> int:
    _load_all()
    return max(_MIGRATIONS) if _MIGRATIONS else 0


def _load_all() -> None:
    # Each area keeps its tables in ``mistudio/store/schema*.py`` (cheap to import, no torch).
    import importlib
    import pkgutil

    import mistudio.store as pkg

    for info in pkgutil.iter_modules(pkg.__path__):
        if info.name.startswith("schema"):
            importlib.import_module(f"mistudio.store.{info.name}")


def migrate(db: sqlite_utils.Database) -> int:
    _load_all()
    current = db.execute("PRAGMA user_version").fetchone()[0]
    for version in sorted(v for v in _MIGRATIONS if v > current):
        _name, fn = _MIGRATIONS[version]
        with db.conn:
            fn(db)
            db.execute(f"PRAGMA user_version={int(version)}")
    return db.execute("PRAGMA user_version").fetchone()[0]
