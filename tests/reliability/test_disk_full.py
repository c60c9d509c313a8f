"""A full disk during extraction and training: a clear error naming the file and saying to free
space, nothing half-written read as complete, the database intact and its rows unchanged, and
the job resumable (to the very result of an uninterrupted run) once there is room again.

Three ways to fill the disk:

* a real small filesystem: a tmpfs of a few hundred KB mounted over the job's output folder in
  a private mount namespace of the CLI child (``unshare -m`` as root, ``unshare -rm`` as a
  user where user namespaces are allowed). Skipped, saying why, where neither is allowed.
* never skipped: the real CLI child under ``RLIMIT_FSIZE`` (its writes past the limit fail
  with EFBIG, the file-size twin of ENOSPC), and ENOSPC raised inside the atomic-write layer
  (``atomic_dir``) in process.
"""

from __future__ import annotations

import contextlib
import errno
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.reliability import kill_harness as kh

EXTRACT = "extract"
TRAIN = "train"


def _rows(db: Path) -> dict[str, list]:
    """Every row of every table but the jobs' own bookkeeping."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in conn.execute(
            "select name from sqlite_master where type = 'table' and name not like 'sqlite_%'")]
        skip = {"jobs", "job_metrics"}
        return {t: sorted(map(repr, conn.execute(f"select * from [{t}]")))
                for t in tables if t not in skip}
    finally:
        conn.close()


def _assert_store_after_failure(data: Path, before: dict, kind: str, base) -> None:
    """Integrity ok; every row that existed is unchanged; the failed job's own record (an
    incomplete activation set, a stopped training) is the only addition, and not complete."""
    assert kh.integrity(data / "mistudio.db") == "ok"
    after = _rows(data / "mistudio.db")
    for table, rows in before.items():
        missing = set(rows) - set(after.get(table, []))
        assert not missing, f"{table}: rows changed or lost: {sorted(missing)[:2]}"
    s = kh.open_studio(data)
    try:
        assert not kh.check_store(s)
        if kind == EXTRACT:  # an incomplete set to resume, or none (nothing was saved)
            new = [a for a in s.activations.list() if a.id != base.act_id]
            assert all(a.status == "incomplete" for a in new)
            for folder in (data / "activations").iterdir():
                if folder.name != base.act_id:  # nothing half-written that reads as complete
                    assert not (folder / "COMPLETE").exists()
        else:
            new = [t for t in s.trainings.list_trainings() if t.status != "completed"]
            assert len(new) == 1 and new[0].status == "failed"
    finally:
        s.close(timeout=30)


def _resume_and_compare(harness, data: Path, run_dir: Path, kind: str) -> None:
    refs = kh.reference_for(harness, kind)
    problems, _ = kh.verify_and_resume(kind, harness["base"], data, run_dir, harness["ids"],
                                       refs[kind])
    assert not problems


def _error_says_free_space(text: str, where: str, *, at_write: bool = True) -> None:
    """``at_write``: the write itself failed (DiskFull); else the up-front free-space check
    refused (InsufficientDiskSpace), which names the folder too."""
    assert "Traceback" not in text
    assert where in text and "Free some space" in text, text[-1500:]
    if at_write:
        assert "Could not write" in text and "resume the job" in text, text[-1500:]
    else:
        assert "Not enough disk space" in text, text[-1500:]


# ================================================================ RLIMIT_FSIZE (never skips)


def _fsize_limit(limit: int):
    def limit_writes():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a kill
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return limit_writes


@pytest.mark.timeout(600)
def test_extraction_past_a_file_size_limit(harness, one_torch_thread):
    """The real CLI under RLIMIT_FSIZE: a shard of 1 MB cannot be written past 768 KB (the
    database, about 300 KB, stays writable)."""
    base = harness["base"]
    run_dir = harness["scratch"] / "fsize-extract"
    data = kh.fresh_copy(base, run_dir)
    before = _rows(data / "mistudio.db")
    args = kh.cli_args(EXTRACT, base, run_dir)
    args[args.index("--shard-rows") + 1] = "4096"  # one shard of 4096 x 64 float32 = 1 MB
    proc = subprocess.run([sys.executable, "-m", "mistudio", *args], cwd=str(kh.REPO),
                          env=kh.child_env(data), capture_output=True, text=True, timeout=300,
                          preexec_fn=_fsize_limit(768 * 1024))
    assert proc.returncode == 1, proc.stderr[-2000:]
    _error_says_free_space(proc.stderr, str(data / "activations"))
    assert "file-size limit" in proc.stderr
    _assert_store_after_failure(data, before, EXTRACT, base)
    _resume_and_compare(harness, data, run_dir, EXTRACT)  # nothing was kept: run again


# ================================================================ ENOSPC in atomic_dir (never skips)


@pytest.mark.timeout(600)
def test_training_when_a_checkpoint_finds_no_room(harness, one_torch_thread, monkeypatch):
    """ENOSPC raised while the third checkpoint is written into its temporary folder (what
    a full disk does to torch.save): the job fails with the clear message, the two complete
    checkpoints stay, and the resume ends bit for bit where an uninterrupted run ends."""
    from mistudio import paths
    from mistudio.sae import checkpoints

    base = harness["base"]
    run_dir = harness["scratch"] / "enospc-train"
    data = kh.fresh_copy(base, run_dir)
    before = _rows(data / "mistudio.db")
    real_atomic_dir = paths.atomic_dir
    calls = {"n": 0}

    @contextlib.contextmanager
    def disk_fills_at_third(path):
        with real_atomic_dir(path) as tmp:
            calls["n"] += 1
            if calls["n"] >= 3:
                (tmp / "state.pt").write_bytes(b"\0" * 1000)  # a write cut short
                raise OSError(errno.ENOSPC, "No space left on device")
            yield tmp

    monkeypatch.setattr(checkpoints, "atomic_dir", disk_fills_at_third)
    s = kh.open_studio(data)
    try:
        job = s.trainings.start_training(kh.training_config(base.act_id))
        rec = s.jobs.wait(job.id, 300)
        assert rec.status == "failed"
        _error_says_free_space(rec.error, str(Path(s.trainings.get_training(job.target).folder)
                                              / "checkpoints" / "step_00000024"))
        assert "the disk is full" in rec.error
        folder = Path(s.trainings.get_training(job.target).folder)
    finally:
        s.close(timeout=30)
    monkeypatch.setattr(checkpoints, "atomic_dir", real_atomic_dir)  # room again
    assert sorted(p.name for p in (folder / "checkpoints").iterdir()) == [
        "step_00000008", "step_00000016"]  # the half-written one was removed
    _assert_store_after_failure(data, before, TRAIN, base)
    _resume_and_compare(harness, data, run_dir, TRAIN)


# ================================================================ a real small filesystem


def _namespace_prefix() -> list[str] | None:
    """How to give a child its own mount namespace here, or None."""
    if shutil.which("unshare") is None:
        return None
    for prefix in (["unshare", "-m"], ["unshare", "-rm"]):
        probe = subprocess.run([*prefix, "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"
                                " 2>/dev/null || mount -t tmpfs -o size=64k tmpfs /tmp"],
                               capture_output=True, timeout=30)
        if probe.returncode == 0:
            return prefix
    return None


def _run_on_tmpfs(prefix, data: Path, sub: str, size_kb: int, args: list[str],
                  keep: Path) -> subprocess.CompletedProcess:
    """Run the CLI with ``data/sub`` a ``size_kb`` tmpfs (private to the child), then copy
    what it wrote to ``keep`` (the mount ends with the child)."""
    target = data / sub
    keep.mkdir(parents=True, exist_ok=True)
    cli = " ".join(f"'{a}'" for a in [sys.executable, "-m", "mistudio", *args])
    script = (f"mount -t tmpfs -o size={size_kb}k tmpfs '{target}' || exit 97; {cli}; rc=$?; "
              f"df -k '{target}' >&2; cp -a '{target}/.' '{keep}/'; exit $rc")
    return subprocess.run([*prefix, "sh", "-c", script], cwd=str(kh.REPO),
                          env=kh.child_env(data), capture_output=True, text=True, timeout=300)


@pytest.mark.timeout(600)
@pytest.mark.parametrize("kind", [EXTRACT, TRAIN])
def test_a_small_filesystem_fills_up(harness, one_torch_thread, kind):
    prefix = _namespace_prefix()
    if prefix is None:
        pytest.skip("no private mount namespace here (unshare -m / -rm refused); the "
                    "RLIMIT_FSIZE and injected-ENOSPC tests cover a full disk instead")
    base = harness["base"]
    run_dir = harness["scratch"] / f"tmpfs-{kind}"
    data = kh.fresh_copy(base, run_dir)
    before = _rows(data / "mistudio.db")
    sub = "activations" if kind == EXTRACT else "trainings"
    hidden = run_dir / "hidden"  # what the tmpfs will cover, put back afterwards
    shutil.copytree(data / sub, hidden)
    # extraction: 1.2 MB of activations into 512 KB (refused before a byte is written: the
    # extraction checks the room it needs); training: checkpoints of 220 KB each, kept three
    # at a time, into 600 KB (two fit; the third is refused, the run stops, resumable)
    size_kb = 512 if kind == EXTRACT else 600
    proc = _run_on_tmpfs(prefix, data, sub, size_kb, kh.cli_args(kind, base, run_dir),
                         run_dir / "written")
    assert proc.returncode == 1, proc.stderr[-2000:]
    _error_says_free_space(proc.stderr, str(data / sub), at_write="Could not write" in
                           proc.stderr)
    # "space exists": what the job wrote, now on the big disk beside what the mount hid
    shutil.copytree(run_dir / "written", data / sub, dirs_exist_ok=True)
    shutil.copytree(hidden, data / sub, dirs_exist_ok=True)
    _assert_store_after_failure(data, before, kind, base)
    if kind == TRAIN:  # it stopped after two complete checkpoints, and resumes from there
        s = kh.open_studio(data)
        try:
            (tr,) = [t for t in s.trainings.list_trainings() if t.status == "failed"]
            assert tr.step == 16 and s.trainings.can_resume(tr.id)
        finally:
            s.close(timeout=30)
    _resume_and_compare(harness, data, run_dir, kind)
