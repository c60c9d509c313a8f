"""Two processes on one data folder: the window (offscreen) and a CLI job at the same time.

The window shows the CLI's job as it runs and ends, no "database is locked" reaches the
user, and both finish (issue: crash safety and bad input, item 3)."""

from __future__ import annotations

import os
import subprocess
import sys

from mistudio.secrets_test_support import MemorySecrets
from mistudio.studio import Studio
from mistudio.ui.main_window import MainWindow
from mistudio.ui.workers import qt_thread_factory


def test_window_shows_a_cli_job_and_both_finish(qtbot, data_dir):
    studio = Studio(data_dir, thread_factory=qt_thread_factory, secrets=MemorySecrets())
    w = MainWindow(studio)
    qtbot.addWidget(w)
    w.show()
    dock = w.jobs_dock
    try:
        own = studio.submit_job("demo.sleep", {"seconds": 3.0}, title="Window job")
        env = dict(os.environ, MISTUDIO_DATA_DIR=str(data_dir))
        cli = subprocess.Popen([sys.executable, "-m", "mistudio", "jobs", "selftest",
                                "--seconds", "3"], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)

        def cli_row(status):
            rows = [dock.model.record(i) for i in range(dock.model.rowCount())]
            return any(r.title == "Self-test" and r.status == status for r in rows)

        qtbot.waitUntil(lambda: cli_row("running"), timeout=30000)  # seen while it runs
        out, err = cli.communicate(timeout=60)
        assert cli.returncode == 0, err[-2000:]
        assert "completed" in out and "database is locked" not in (out + err)
        qtbot.waitUntil(lambda: cli_row("completed"), timeout=10000)  # and its end
        studio.jobs.wait(own.id, timeout=30)
        assert studio.get_job(own.id).status == "completed"
        errors = [r.error for r in studio.list_jobs() if r.error]
        assert not any("locked" in e for e in errors), errors
    finally:
        w.skip_close_confirmation = True
        w.close()
        qtbot.waitUntil(lambda: not studio.jobs.active_ids(), timeout=15000)
