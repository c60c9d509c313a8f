"""The pieces the kill harness stands on: named crash points, manifests, the atomic-write
layer's recovery and its disk-full message."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys

import pytest

from mistudio import manifest, paths
from mistudio.errors import UserError

CHILD = """
import sys
from mistudio.reliability import crash_point
for i in range(5):
    crash_point("demo.step")
    print(i, flush=True)
"""


def _run(env_value: str | None, trace: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MISTUDIO_CRASH")}
    if env_value is not None:
        env["MISTUDIO_CRASH_AT"] = env_value
    if trace:
        env["MISTUDIO_CRASH_TRACE"] = trace
    return subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True,
                          text=True, timeout=60)


def test_crash_point_kills_at_the_named_hit_only(tmp_path):
    third = _run("demo.step:3")
    assert third.returncode == -signal.SIGKILL  # no cleanup ran: killed, not exited
    assert third.stdout.split() == ["0", "1"]
    first = _run("demo.step")
    assert first.returncode == -signal.SIGKILL and first.stdout == ""
    other = _run("another.point")
    assert other.returncode == 0 and other.stdout.split() == ["0", "1", "2", "3", "4"]
    trace = tmp_path / "trace.txt"
    assert _run(None, str(trace)).returncode == 0
    assert trace.read_text().split() == ["demo.step"] * 5


def test_manifest_catches_truncation_loss_and_change(tmp_path):
    folder = tmp_path / "artifact"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.bin").write_bytes(b"x" * 1000)
    (folder / "sub" / "b.json").write_text('{"k": 1}')
    (folder / ".a.bin.1234.tmp").write_bytes(b"left by a killed write")
    manifest.write_manifest(folder)
    assert not (folder / ".a.bin.1234.tmp").exists()  # completing sweeps the leftovers
    assert manifest.verify_manifest(folder) == []
    entry = manifest.read_manifest(folder)["files"]["a.bin"]
    import hashlib

    assert entry == {"size": 1000, "sha256": hashlib.sha256(b"x" * 1000).hexdigest()}
    (folder / "sub" / "b.json").write_text('{"k": 2}')  # same size, other bytes
    assert manifest.verify_manifest(folder) == [f"{folder / 'sub' / 'b.json'}: checksum "
                                                "differs from the manifest"]
    (folder / "a.bin").write_bytes(b"x" * 10)
    (folder / "sub" / "b.json").unlink()
    problems = manifest.verify_manifest(folder)
    assert any("10 bytes, the manifest says 1000" in p for p in problems)
    assert any(p.endswith("b.json: missing") for p in problems)
    (folder / "COMPLETE").write_text("ok\n")  # a marker from before manifests
    assert manifest.read_manifest(folder, "COMPLETE") is None
    assert manifest.verify_manifest(folder, "COMPLETE") == [f"{folder / 'COMPLETE'}: no manifest"]


def test_atomic_dir_recovers_a_swap_cut_in_half(tmp_path):
    """Killed between moving the old folder aside and the new one in: the next writer (or
    reader's sweep) puts the old one back; half-built folders are dropped."""
    target = tmp_path / "tok"
    target.mkdir()
    (target / "data").write_text("old")
    os.replace(target, tmp_path / ".tok.abcd1234.old")  # the state a kill leaves
    (tmp_path / ".tok.x1y2.partial").mkdir()
    assert paths.recover_replaced_dir(target)
    assert (target / "data").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tok"]
    with paths.atomic_dir(target) as tmp:
        (tmp / "data").write_text("new")
    assert (target / "data").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tok"]


@pytest.mark.parametrize("err,why", [(errno.ENOSPC, "the disk is full"),
                                     (errno.EFBIG, "a file-size limit")])
def test_a_write_without_room_names_the_file_and_what_to_do(tmp_path, err, why):
    target = tmp_path / "out.bin"
    with pytest.raises(UserError) as raised:
        with paths.atomic_path(target):
            raise OSError(err, os.strerror(err))
    text = str(raised.value)
    assert f"Could not write {target}" in text and why in text
    assert "Free some space" in text and "resume the job" in text
    assert not target.exists() and list(tmp_path.iterdir()) == []
    # libraries that wrap the OS error in their own type (torch.save, safetensors)
    with pytest.raises(paths.DiskFull):
        with paths.atomic_dir(tmp_path / "d"):
            raise RuntimeError("PytorchStreamWriter failed writing file data/0: file write "
                               "failed")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError):  # anything else passes through unchanged
        with paths.atomic_path(target):
            raise ValueError("not about room")
