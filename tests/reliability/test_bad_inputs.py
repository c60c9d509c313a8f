"""Every command-line entry of the bad-input catalogue (``bad_input_catalogue.py``): a message
that names the key or path at fault (the recorded one), exit code 2, no traceback, and the
data folder and database exactly as before.

Messages changed on purpose? Record them again with
``MISTUDIO_RECORD_BAD_INPUTS=1 pytest tests/reliability/test_bad_inputs.py
tests/reliability/test_bad_input_dialogs.py`` and regenerate the docs
(``python scripts/bad_input_catalogue.py --write-docs``)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from mistudio.cli import main
from tests.reliability.bad_input_catalogue import (CATALOGUE, normalise, record_message,
                                                   recorded_messages)
from tests.reliability.snapshot import differences, snapshot

CLI_ENTRIES = [e for e in CATALOGUE if not e.dialog]
RECORD = bool(os.environ.get("MISTUDIO_RECORD_BAD_INPUTS"))


def check_message(entry, message: str, a, b) -> None:
    """The message names what the entry says, and is the recorded one."""
    for name in entry.names(a, b):
        assert name in message, f"{entry.id}: {name!r} not named in {message!r}"
    text = normalise(message, a, b)
    if RECORD:
        record_message(entry.id, text)
    else:
        assert text == recorded_messages().get(entry.id), (
            f"{entry.id}: the message changed; if on purpose, record it again "
            "(MISTUDIO_RECORD_BAD_INPUTS=1) and regenerate docs/reliability.md")


def _read_only_run(data, argv) -> tuple[int, str, str]:
    """Run the CLI with ``data`` not writable. Root may write anywhere, so as root the
    command runs in a child process without the capabilities that bypass file modes."""
    cmd = [sys.executable, "-m", "mistudio", "--data-dir", str(data), *argv]
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: a read-only folder cannot be made")
        drop = "-dac_override,-dac_read_search"
        cmd = [setpriv, f"--inh-caps={drop}", f"--bounding-set={drop}", *cmd]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    return run.returncode, run.stdout, run.stderr


def _set_writable(folder, writable: bool) -> None:
    for path in [folder, *folder.rglob("*")]:
        mode = path.stat().st_mode
        path.chmod(mode | 0o200 if writable else mode & ~0o222)


@pytest.mark.parametrize("entry", CLI_ENTRIES, ids=[e.id for e in CLI_ENTRIES])
def test_bad_input_is_refused_cleanly(entry, bad_input_assets, tmp_path, capsys):
    a = bad_input_assets
    b = tmp_path / "files"
    b.mkdir()
    argv = entry.argv(a, b)
    before = snapshot(a.data)
    if entry.read_only:
        _set_writable(a.data, False)
        try:
            rc, out, err = _read_only_run(a.data, argv)
        finally:
            _set_writable(a.data, True)
    else:
        rc = main(["--data-dir", str(a.data), *argv])
        out, err = capsys.readouterr()
    after = snapshot(a.data)
    assert "Traceback" not in out + err, err
    assert rc == 2, (rc, out, err)
    assert err.startswith("error: ") and err.count("error: ") == 1, err
    assert differences(before, after) == [], err
    check_message(entry, err.strip().removeprefix("error: "), a, b)


def test_catalogue_is_large_and_unique():
    ids = [e.id for e in CATALOGUE]
    assert len(ids) == len(set(ids)) and len(ids) >= 50
    assert {e.area for e in CATALOGUE} >= {"training config", "SAE folder", "template file",
                                           "dataset file", "dialog", "data folder"}
