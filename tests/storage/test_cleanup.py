"""Cleanup: the dry run lists exactly what the real run deletes, with the bytes freed; files
of running/paused/interrupted jobs and tmp/ while a job is live are never touched; orphan rows
go through their owning service."""

from __future__ import annotations

import os
from pathlib import Path

from mistudio.jobs.repository import JobRecord, JobsRepo


def _du(path: Path) -> int:
    if path.is_file():
        return os.lstat(path).st_blocks * 512
    return sum(os.lstat(Path(d) / f).st_blocks * 512 for d, _, fs in os.walk(path) for f in fs)


def _setup(studio):
    root = studio.paths.root
    (root / "tmp" / "import-ds_x").mkdir(parents=True)
    (root / "tmp" / "import-ds_x" / "part.bin").write_bytes(os.urandom(120_000))
    (root / "activations" / "act_ghost").mkdir()
    (root / "activations" / "act_ghost" / "a.npy").write_bytes(os.urandom(300_000))
    for status in ("paused", "interrupted"):
        folder = root / "trainings" / f"tr_{status}_out"
        folder.mkdir()
        (folder / "ckpt.pt").write_bytes(os.urandom(50_000))
        JobsRepo(studio.store).insert(JobRecord(id=f"job_{status}", kind="sae.train",
                                                status=status, params={"out": str(folder)}))
    studio.store.db["trainings"].insert({"id": "tr_lost", "status": "completed", "created_at": "2026-01-01",
                                         "folder": str(root / "trainings" / "tr_lost")})
    studio.store.db["activation_sets"].insert({"id": "act_lost", "name": "lost", "created_at": "2026-01-01",
                                               "hook_name": "blocks.0.hook_resid_post",
                                               "status": "ready",
                                               "folder": str(root / "activations" / "act_lost")})
    return root


def test_dry_run_lists_exactly_what_the_real_run_deletes(studio):
    root = _setup(studio)
    dry = studio.storage.clean(dry_run=True)
    listed = {(i.rule, i.where) for i in dry.items}
    assert listed == {("tmp", str(root / "tmp" / "import-ds_x")),
                      ("orphan folder", str(root / "activations" / "act_ghost")),
                      ("orphan row", "activation_sets:act_lost")}
    assert dry.bytes == _du(root / "tmp" / "import-ds_x") + _du(root / "activations" /
                                                                "act_ghost")
    kept = {i.where: i.reason for i in dry.kept}
    assert "paused job job_paused" in kept[str(root / "trainings" / "tr_paused_out")]
    assert "interrupted job" in kept[str(root / "trainings" / "tr_interrupted_out")]
    assert "no service" in kept["trainings:tr_lost"]
    assert (root / "tmp" / "import-ds_x").exists()  # the dry run deleted nothing

    real = studio.storage.clean(dry_run=False)
    assert {(i.rule, i.where) for i in real.items} == listed
    assert not (root / "tmp" / "import-ds_x").exists()
    assert not (root / "activations" / "act_ghost").exists()
    assert studio.store.db["activation_sets"].count_where("id = ?", ["act_lost"]) == 0
    for status in ("paused", "interrupted"):
        assert (root / "trainings" / f"tr_{status}_out" / "ckpt.pt").exists()
    assert studio.store.db["trainings"].count_where("id = ?", ["tr_lost"]) == 1
    assert studio.storage.clean(dry_run=True).items == []


def test_tmp_is_left_alone_while_a_job_is_live(studio, monkeypatch):
    root = studio.paths.root
    (root / "tmp" / "part.bin").write_bytes(b"x" * 5000)
    monkeypatch.setattr(studio.storage.jobs, "live_foreign_ids", lambda: ["job_gui"])
    plan = studio.storage.clean(dry_run=False)
    assert plan.items == []
    assert "job_gui" in plan.kept[0].reason
    assert (root / "tmp" / "part.bin").exists()


def test_cli_clean_dry_run_then_real(studio, capsys):
    import json

    from mistudio.cli import main

    root = studio.paths.root
    ghost = root / "features" / "fa_ghost"
    ghost.mkdir()
    (ghost / "x.bin").write_bytes(os.urandom(64_000))
    studio.close(timeout=5)  # the CLI opens its own
    assert main(["--data-dir", str(root), "storage", "clean", "--dry-run", "--json"]) == 0
    dry = json.loads(capsys.readouterr().out)
    assert [i["where"] for i in dry["items"]] == [str(ghost)]
    assert dry["bytes"] == _du(ghost) and ghost.exists()
    assert main(["--data-dir", str(root), "storage", "clean"]) == 0
    out = capsys.readouterr().out
    assert f"deleted  orphan folder {ghost}" in out and not ghost.exists()
