"""Moving the data folder: every file copied and verified (checked here with an independent
SHA-256 walk), the configured folder switched, and the old folder removed only after the
switch; a copy that differs switches nothing; a move killed mid-copy leaves the old folder
in use, and running it again resumes."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mistudio.activations.repository import ActivationSetRecord, ActivationSetsRepo
from mistudio.errors import UserError
from mistudio.secrets_test_support import MemorySecrets

SIDE = ("mistudio.db", "mistudio.db-wal", "mistudio.db-shm", "mistudio.db.lock")


def _digests(root: Path) -> dict[str, str]:
    # independent of the app: every regular file's SHA-256, links by their target
    out = {}
    for dirpath, dirnames, files in os.walk(root):
        for name in files + [d for d in dirnames if (Path(dirpath) / d).is_symlink()]:
            p = Path(dirpath) / name
            rel = p.relative_to(root).as_posix()
            if rel in SIDE or rel == ".mistudio-move.json" or rel.startswith("logs/"):
                continue
            out[rel] = ("link:" + os.readlink(p) if p.is_symlink()
                        else hashlib.sha256(p.read_bytes()).hexdigest())
    return out


@pytest.fixture
def movable(studio, tmp_path, monkeypatch):
    """A studio whose data folder comes from the setting (not $MISTUDIO_DATA_DIR), with
    files in several categories, a record, and a model used in place (a link)."""
    monkeypatch.delenv("MISTUDIO_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    root = studio.paths.root
    for i in range(12):
        (root / "datasets" / f"ds_{i}").mkdir()
        (root / "datasets" / f"ds_{i}" / "tokens.npy").write_bytes(os.urandom(40_000 + i))
    (root / "activations" / "act_1").mkdir()
    (root / "activations" / "act_1" / "shard.npy").write_bytes(os.urandom(70_000))
    ActivationSetsRepo(studio.store).insert_all([ActivationSetRecord(
        id="act_1", hook_name="blocks.0.hook_resid_post", status="ready", name="kept set",
        folder=str(root / "activations" / "act_1"))])
    users_model = tmp_path / "users_model"
    users_model.mkdir()
    (users_model / "weights.bin").write_bytes(b"w" * 1000)
    (root / "models" / "m_linked").symlink_to(users_model)
    return studio


class Events:
    def __init__(self):
        self.progress = []

    def __call__(self, job_id, kind, payload):
        if kind == "progress":
            self.progress.append(payload)


def test_move_copies_verifies_switches_and_only_then_removes_the_old_folder(movable,
                                                                            tmp_path,
                                                                            monkeypatch):
    from mistudio import paths
    from mistudio.jobs.context import JobContext
    from mistudio.studio import Studio

    src = movable.paths.root.resolve()
    dest = tmp_path / "external" / "mistudio"
    before = _digests(src)
    switched = []
    real_remember = paths.remember_data_dir

    def remember(path):  # the switch: the old folder must still be whole at this moment
        assert _digests(src) == before and _digests(Path(path)) == before
        switched.append(Path(path))
        real_remember(path)

    monkeypatch.setattr(paths, "remember_data_dir", remember)
    events = Events()
    out = movable.storage.move_data_folder(str(dest), JobContext.standalone(on_event=events))
    movable.close(timeout=5)

    assert switched == [dest.resolve()]
    assert not src.exists()  # removed after the switch
    assert _digests(dest) == before and (dest / "models" / "m_linked").is_symlink()
    assert not (dest / ".mistudio-move.json").exists()
    assert paths.resolve_data_dir() == dest.resolve()
    assert out["files"] >= len(before) and events.progress[-1]["done"] == \
        events.progress[-1]["total"]
    moved = Studio(None, secrets=MemorySecrets())  # opens the new folder from the setting
    try:
        assert moved.paths.root.resolve() == dest.resolve()
        assert moved.activations.get("act_1").name == "kept set"
        assert moved.store.integrity_ok()
    finally:
        moved.close(timeout=5)


def test_a_copy_that_differs_switches_nothing(movable, tmp_path, monkeypatch):
    from mistudio import paths
    from mistudio.storage import move

    src = movable.paths.root.resolve()
    real_copy = move._copy_hashing

    def flaky_copy(a, b, ctx):  # the destination disk corrupts one file it was given
        digest = real_copy(a, b, ctx)
        if Path(a).name == "shard.npy":
            with open(b, "r+b") as fh:
                fh.write(b"\0" * 16)
        return digest

    monkeypatch.setattr(move, "_copy_hashing", flaky_copy)
    with pytest.raises(UserError, match="differs from the original"):
        movable.storage.move_data_folder(str(tmp_path / "external"))
    assert paths.resolve_data_dir() != (tmp_path / "external").resolve()
    assert (src / "activations" / "act_1" / "shard.npy").exists()
    assert movable.activations.get("act_1").name == "kept set"  # the store is back in use


def test_move_is_refused_while_a_job_runs_and_into_a_non_empty_folder(movable, tmp_path,
                                                                     monkeypatch):
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "x.txt").write_text("someone's file")
    with pytest.raises(UserError, match="not empty"):
        movable.storage.move_data_folder(str(busy))
    with pytest.raises(UserError, match="contain one another"):
        movable.storage.move_data_folder(str(movable.paths.root / "datasets" / "inside"))
    monkeypatch.setattr(movable.jobs, "live_foreign_ids", lambda: ["job_gui"])
    with pytest.raises(UserError, match="job_gui"):
        movable.storage.move_data_folder(str(tmp_path / "new"))
    assert not (tmp_path / "new").exists()


def test_refused_when_the_environment_variable_sets_the_folder(studio, tmp_path):
    with pytest.raises(UserError, match="MISTUDIO_DATA_DIR"):
        studio.storage.move_data_folder(str(tmp_path / "new"))


KILL_AFTER = textwrap.dedent("""
    import os, sys
    from mistudio.secrets_test_support import MemorySecrets
    from mistudio.studio import Studio

    class DieMidCopy:  # a context that kills the process after a few files, no clean-up
        job_id = "local"
        def __init__(self):
            self.files = 0
        def progress(self, done, total=None, message=None):
            if message and message.startswith("Copying: "):
                self.files += 1
                if self.files == 4:
                    os._exit(9)
        def check_cancelled(self):
            pass
        def flush(self):
            pass

    studio = Studio(sys.argv[1], secrets=MemorySecrets())
    studio.storage.move_data_folder(sys.argv[2], DieMidCopy())
    os._exit(0)
""")


def test_a_move_killed_mid_copy_leaves_the_old_folder_working_and_resumes(movable, tmp_path):
    from mistudio import paths
    from mistudio.studio import Studio

    src = movable.paths.root.resolve()
    dest = tmp_path / "external"
    before = _digests(src)
    movable.close(timeout=5)
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config")}
    env.pop("MISTUDIO_DATA_DIR", None)
    proc = subprocess.run([sys.executable, "-c", KILL_AFTER, str(src), str(dest)], env=env,
                          capture_output=True, text=True, timeout=90)
    assert proc.returncode == 9, proc.stderr
    assert paths.resolve_data_dir() != dest.resolve()  # not switched
    assert _digests(src) == before
    copied = [p for p in dest.rglob("*") if p.is_file() and p.name != ".mistudio-move.json"]
    assert 0 < len(copied) < len(before)
    inodes = {p: p.stat().st_ino for p in copied if "logs" not in p.parts}

    again = Studio(src, secrets=MemorySecrets())  # the old folder is still the data folder
    assert again.activations.get("act_1").name == "kept set"
    out = again.storage.move_data_folder(str(dest))  # resumes into the marked folder
    again.close(timeout=5)
    # the files complete before the kill were kept, not copied again
    assert inodes and all(p.stat().st_ino == ino for p, ino in inodes.items())
    assert out["copied_first"] < out["files"]
    assert _digests(dest) == before and not src.exists()
    assert paths.resolve_data_dir() == dest.resolve()


def test_cli_move(movable, tmp_path, capsys):
    from mistudio import paths
    from mistudio.cli import main

    src = movable.paths.root.resolve()
    before = _digests(src)
    movable.close(timeout=5)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    assert main(["--data-dir", str(src), "storage", "move", str(tmp_path / "full")]) == 2
    assert "is not empty" in capsys.readouterr().err and src.exists()
    assert main(["--data-dir", str(src), "storage", "move", str(tmp_path / "ext")]) == 0
    assert "every file verified" in capsys.readouterr().out
    assert _digests(tmp_path / "ext") == before and not src.exists()
    assert paths.resolve_data_dir() == (tmp_path / "ext").resolve()


def test_an_old_folder_left_after_the_switch_is_offered_and_deleted(studio, tmp_path, qtbot,
                                                                    monkeypatch):
    import fcntl
    import json as _json

    from mistudio.ui.storage_move import MoveDataFolderPage

    old = tmp_path / "old"
    (old / "datasets" / "ds_1").mkdir(parents=True)
    (old / "datasets" / "ds_1" / "tokens.npy").write_bytes(b"x" * 1000)
    # the process died after switching to this folder, before deleting the old one
    (studio.paths.root / ".mistudio-move.json").write_text(_json.dumps(
        {"source": str(old), "state": "switching"}))
    assert studio.storage.unfinished_move() == str(old)
    holder = open(old / "mistudio.db.lock", "a+b")  # someone opened the old folder again
    fcntl.flock(holder.fileno(), fcntl.LOCK_SH)
    with pytest.raises(UserError, match="Another process"):
        studio.storage.finish_move()
    holder.close()
    assert old.exists()
    page = MoveDataFolderPage(studio.storage, lambda *a: True)
    qtbot.addWidget(page)
    assert not page.leftover_row.isHidden() and str(old) in page.leftover
    page.finish_earlier_move()
    qtbot.waitUntil(lambda: page.leftover is None, timeout=20_000)
    assert not old.exists() and "Deleted the old data folder" in page.status.text()
    assert not (studio.paths.root / ".mistudio-move.json").exists()
    assert studio.storage.unfinished_move() is None
