"""What the load tests share: a small generated data folder (``scripts/make_load_folder.py``),
a read of its database that bypasses the app, and a recorder of the threads a method runs on."""

from __future__ import annotations

import importlib.util
import sqlite3
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def make_small_load_folder(tmp_path_factory, name: str, **size) -> Path:
    """A data folder made by the load-folder generator with these ``LoadSize`` fields."""
    spec = importlib.util.spec_from_file_location("make_load_folder",
                                                  ROOT / "scripts" / "make_load_folder.py")
    gen = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("make_load_folder", gen)  # its dataclass looks itself up
    spec.loader.exec_module(gen)
    folder = tmp_path_factory.mktemp(name) / "data"
    gen.make_load_folder(folder, gen.LoadSize(**size), log=lambda _m: None)
    return folder


def db_rows(folder: Path, sql: str, *args) -> list:
    """Rows read straight from the folder's database (an independent check of the app)."""
    con = sqlite3.connect(folder / "mistudio.db")
    try:
        return con.execute(sql, args).fetchall()
    finally:
        con.close()


def record_threads(monkeypatch, obj, name: str, seen: list) -> None:
    """Append the current thread to ``seen`` on every call of ``obj.name``."""
    original = getattr(obj, name)

    def spy(*args, **kwargs):
        seen.append(threading.current_thread())
        return original(*args, **kwargs)

    monkeypatch.setattr(obj, name, spy)
