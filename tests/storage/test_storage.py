"""Storage: disk use against an independent walk, orphans, backups while a writer writes,
restore (refused while another process holds the database), the CLI."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest


def _du_reference(folder: Path) -> int:
    # independent of the app: `du`-style allocated bytes from os.walk, no symlinks
    total = 0
    for dirpath, _dirs, files in os.walk(folder):
        for f in files:
            p = Path(dirpath) / f
            if not p.is_symlink():
                total += os.lstat(p).st_blocks * 512
    return total


def test_disk_use_per_category_equals_an_independent_walk(studio, tmp_path):
    root = studio.paths.root
    (root / "datasets" / "ds_a").mkdir()
    (root / "datasets" / "ds_a" / "raw.bin").write_bytes(os.urandom(300_000))
    (root / "datasets" / "ds_b").mkdir()
    (root / "datasets" / "ds_b" / "x.bin").write_bytes(os.urandom(50_000))
    (root / "cache" / "big.bin").write_bytes(os.urandom(700_000))
    outside = tmp_path / "users_model"
    outside.mkdir()
    (outside / "weights.bin").write_bytes(os.urandom(400_000))
    (root / "models" / "m_linked").symlink_to(outside)  # never followed
    du = studio.storage.disk_usage()
    by = {c.name: c for c in du.categories}
    for name in ("datasets", "cache", "models", "logs"):
        assert by[name].bytes == _du_reference(root / name), name
    assert [i.name for i in by["datasets"].items] == ["ds_a", "ds_b"]  # largest first
    assert by["models"].bytes == 0
    assert du.categories[0].name == "cache"
    assert du.free_bytes > 0 and du.total_bytes >= sum(c.bytes for c in du.categories)


def test_orphans_found_on_hand_made_orphans(studio):
    root = studio.paths.root
    (root / "activations" / "act_ghost").mkdir()
    (root / "trainings" / "tr_ghost").mkdir()
    assert {Path(o.where).name for o in studio.storage.orphans() if o.kind == "folder"} == \
        {"act_ghost", "tr_ghost"}
    studio.store.db["trainings"].insert({"id": "tr_lost", "status": "completed",
                                         "created_at": "2026-01-01",
                                         "folder": str(root / "trainings" / "tr_lost")})
    (root / "trainings" / "tr_ghost").rmdir()
    found = studio.storage.orphans()
    assert [(o.kind, o.where) for o in found] == [
        ("folder", str(root / "activations" / "act_ghost")), ("row", "trainings:tr_lost")]


def test_backup_taken_while_a_job_writes_restores_every_committed_row(studio):
    db = studio.store.db
    db["jobs_probe"].create({"n": int}, pk="n")
    stop = threading.Event()
    committed = []

    def writer():
        conn = sqlite3.connect(str(studio.paths.db_file), timeout=10)
        n = 0
        while not stop.is_set():
            with conn:
                conn.execute("insert into jobs_probe(n) values (?)", (n,))
            committed.append(n)
            n += 1
        conn.close()

    t = threading.Thread(target=writer)
    t.start()
    try:
        time.sleep(0.2)
        before = len(committed)
        b = studio.storage.backup()
        after = len(committed)
    finally:
        stop.set()
        t.join()
    snap = sqlite3.connect(Path(b.path) / "mistudio.db")
    rows = [r[0] for r in snap.execute("select n from jobs_probe order by n")]
    assert snap.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    snap.close()
    # a consistent snapshot: a prefix of the writer's commits, at least those before it began
    assert rows == list(range(len(rows))) and before <= len(rows) <= after
    assert len(committed) > len(rows)  # the writer went on after the snapshot

    out = studio.storage.restore(b.name)
    assert out["integrity"] == "ok"
    now = [r[0] for r in studio.store.db.execute("select n from jobs_probe order by n")]
    assert now == rows
    names = [x.name for x in studio.storage.list_backups()]
    assert out["previous"]["name"] in names and "before-restore" in out["previous"]["name"]


def test_restore_refused_while_another_process_holds_the_database(studio):
    b = studio.storage.backup()
    code = ("import sys, time; from mistudio.store.db import Store; "
            "s = Store(__import__('pathlib').Path(sys.argv[1])); print('open', flush=True); "
            "time.sleep(30)")
    child = subprocess.Popen([sys.executable, "-c", code, str(studio.paths.db_file)],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "open"
        from mistudio.errors import UserError

        with pytest.raises(UserError, match="Another process has this data folder's database"):
            studio.storage.restore(b.name)
    finally:
        child.kill()
        child.wait()
    assert studio.store.integrity_ok()  # still usable after the refusal
    assert studio.storage.restore(b.name)["integrity"] == "ok"


def test_a_damaged_backup_is_refused_before_anything_changes(studio):
    studio.store.db["probe"].insert({"id": 1})
    b = studio.storage.backup()
    db_file = Path(b.path) / "mistudio.db"
    data = bytearray(db_file.read_bytes())
    data[-100] ^= 0xFF
    db_file.write_bytes(bytes(data))
    from mistudio.errors import UserError

    with pytest.raises(UserError, match="does not match its manifest"):
        studio.storage.restore(b.name)
    assert [x.label for x in studio.storage.list_backups()] == [""]  # no safety copy taken


def test_daily_backup_once_a_day_and_pruned(studio):
    assert studio.storage.backup_if_due() is not None
    assert studio.storage.backup_if_due() is None
    for _ in range(4):
        studio.storage.backup(keep=3)
    assert len(studio.storage.list_backups()) == 3


def test_cli_du_backup_backups_restore(studio, capsys):
    from mistudio.cli import main

    root = str(studio.paths.root)
    studio.close(timeout=5)  # the CLI opens its own
    assert main(["--data-dir", root, "storage", "du", "--json"]) == 0
    du = json.loads(capsys.readouterr().out)
    assert {c["name"] for c in du["categories"]} >= {"datasets", "backups", "logs"}
    assert main(["--data-dir", root, "storage", "backup", "--json"]) == 0
    name = json.loads(capsys.readouterr().out)["name"]
    assert main(["--data-dir", root, "storage", "backups"]) == 0
    assert name in capsys.readouterr().out
    assert main(["--data-dir", root, "storage", "restore", "nope"]) == 2
    assert "No backup 'nope'" in capsys.readouterr().err
    assert main(["--data-dir", root, "storage", "restore", name]) == 0
    assert "Integrity: ok" in capsys.readouterr().out


def test_window_start_takes_the_daily_backup_off_the_gui_thread(studio, qapp):
    import threading

    from mistudio.ui.app import _daily_backup

    threads = []
    backup_if_due = studio.storage.backup_if_due

    def recording():
        threads.append(threading.current_thread())
        return backup_if_due()

    studio.storage.backup_if_due = recording
    for _ in range(2):  # the second start the same day takes none
        assert _daily_backup(studio).wait(30)
    assert len(threads) == 2 and threading.main_thread() not in threads
    (b,) = studio.storage.list_backups()
    assert b.label == "daily"
