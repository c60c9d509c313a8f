"""Command-line manners: a closed pipe is not an error, help has no RST markup, each action
is listed once, tables fit the terminal, progress lines never cut a number, and library
progress bars stay out of the app's own."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys

import pytest

from mistudio.cli import build_parser, main
from mistudio.cli.table import fit_progress_line, format_table


def test_output_into_a_closed_pipe_is_not_an_error(tmp_path):
    env = {**os.environ, "MISTUDIO_DATA_DIR": str(tmp_path / "data")}
    proc = subprocess.Popen([sys.executable, "-m", "mistudio", "jobs", "list"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # `| head -0`: the reader is gone before anything is written
    err = proc.stderr.read().decode()
    rc = proc.wait(timeout=60)
    assert "BrokenPipeError" not in err and "Traceback" not in err and "Exception" not in err
    assert rc == 141  # 128 + SIGPIPE, as other tools stopped by a closed pipe


def _all_parsers(parser, path=("mistudio",)):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _all_parsers(sub, (*path, name))


def test_help_texts_have_no_rst_markup():
    parsers = list(_all_parsers(build_parser()))
    assert len(parsers) > 30
    for path, parser in parsers:
        text = parser.format_help()
        assert "`" not in text and ":class:" not in text, " ".join(path)
    train = dict(parsers)[("mistudio", "train")].format_help()
    assert "'mistudio sae resume ID'" in train


def test_sae_import_is_listed_once_and_load_still_works():
    parser = build_parser()
    sae = dict(_all_parsers(parser))[("mistudio", "sae")]
    listing = sae.format_help()
    assert len(re.findall(r"^\s+import\s", listing, re.M)) == 1
    assert not re.search(r"^\s+load\s", listing, re.M)
    a = parser.parse_args(["sae", "load", "some/folder", "--name", "x"])
    b = parser.parse_args(["sae", "import", "some/folder", "--name", "x"])
    assert a.func is b.func and a.source == b.source == "some/folder"


def test_tables_fit_the_width_cutting_only_free_text():
    rows = [["job_1234abcd", "running", "12.5%", "A very long title " * 6],
            ["job_99999999", "completed", "100.0%", "short"]]
    lines = format_table(["ID", "STATUS", "PROG", "TITLE"], rows, right=(2,), width=60)
    assert all(len(line) <= 60 for line in lines)
    assert lines[1].startswith("job_1234abcd  running") and lines[1].endswith("…")
    assert "100.0%" in lines[2] and lines[2].endswith("short")
    # Not on a terminal (piped): nothing is cut.
    full = format_table(["ID", "STATUS", "PROG", "TITLE"], rows, right=(2,))
    assert full[1].endswith(rows[0][3].rstrip())
    # Too narrow even for the fixed columns: ids and numbers stay whole.
    narrow = format_table(["ID", "STATUS", "PROG", "TITLE"], rows, right=(2,), width=20)
    assert "job_1234abcd" in narrow[1] and "100.0%" in narrow[2]


def test_jobs_list_fits_the_terminal(data_dir, capsys, monkeypatch):
    from mistudio.secrets_test_support import MemorySecrets
    from mistudio.studio import Studio

    s = Studio(data_dir, secrets=MemorySecrets())
    job = s.submit_job("demo.sleep", {"seconds": 0.01}, title="Extract activations " * 8)
    s.jobs.wait(job.id, timeout=30)
    s.close()
    monkeypatch.setattr("mistudio.cli.table.terminal_columns", lambda stream=None: 80)
    assert main(["--data-dir", str(data_dir), "jobs", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and all(len(line) <= 80 for line in lines)
    assert lines[1].startswith(job.id) and lines[1].endswith("…") and "completed" in lines[1]


MESSAGE = "step 1,234/10,000 · 12,345 tok/s · loss 0.0123 · L0 31.5"


@pytest.mark.parametrize("width", range(17, 121, 3))
def test_progress_line_fits_and_never_cuts_a_number(width):
    line = fit_progress_line(0.1234, 1234, 125.0, MESSAGE, width)
    assert len(line) <= width - 1
    assert "12.3%" in line and "ETA 2:05" in line
    shown = line.split("ETA 2:05", 1)[1].split()
    words = MESSAGE.split()
    assert shown == words[:len(shown)] or shown == words[:len(shown) - 1] + ["…"], line
    no_total = fit_progress_line(None, 1234, None, MESSAGE, width)
    assert no_total.startswith("1234") and len(no_total) <= width - 1
    assert fit_progress_line(0.1234, 1234, 125.0, MESSAGE, 10) == " 12.3%"  # just what fits


def test_library_progress_bars_are_silenced_for_a_cli_job(studio, monkeypatch):
    import huggingface_hub.utils as hub_utils
    from transformers.utils import logging as transformers_logging

    from mistudio.cli.runner import run_job_cli

    monkeypatch.delenv("HF_HUB_DISABLE_PROGRESS_BARS", raising=False)
    monkeypatch.delenv("HF_DATASETS_DISABLE_PROGRESS_BARS", raising=False)
    hub_utils.enable_progress_bars()
    transformers_logging.enable_progress_bar()
    try:
        rec = run_job_cli(studio, "demo.sleep", {"seconds": 0.01}, quiet=True)
        assert rec.status == "completed"
        assert hub_utils.are_progress_bars_disabled()
        assert not transformers_logging.is_progress_bar_enabled()
        assert os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] == "1"  # for libraries imported later
    finally:  # leave the bars as other tests expect them
        monkeypatch.delenv("HF_HUB_DISABLE_PROGRESS_BARS", raising=False)
        monkeypatch.delenv("HF_DATASETS_DISABLE_PROGRESS_BARS", raising=False)
        hub_utils.enable_progress_bars()
        transformers_logging.enable_progress_bar()


def test_plain_tqdm_bars_are_off_in_a_cli_process():
    code = ("import sys\nfrom mistudio.cli.runner import silence_library_progress_bars\n"
            "silence_library_progress_bars()\nfrom tqdm.auto import tqdm\n"
            "print(tqdm(range(3), file=sys.stderr).disable)")
    env = {k: v for k, v in os.environ.items() if k != "TQDM_DISABLE"}
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "True"


def test_progress_written_to_a_log_is_not_shortened():
    import io

    from mistudio.cli.runner import TerminalProgress

    stream = io.StringIO()  # not a terminal: one line per update, as in a log file
    bar = TerminalProgress("job_1", stream=stream)
    bar("job_1", "progress", {"done": 2048, "total": 10033, "eta_s": 64.0,
                              "message": MESSAGE + " · " + MESSAGE})
    assert stream.getvalue().rstrip().endswith(MESSAGE + " · " + MESSAGE)
