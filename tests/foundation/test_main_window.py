"""The main window driven like a user would, offscreen."""

import time

import pytest
from PySide6.QtCore import Qt, QTimer

from mistudio.secrets_test_support import MemorySecrets
from mistudio.studio import Studio
from mistudio.ui.main_window import MainWindow
from mistudio.ui.tabs import TABS
from mistudio.ui.workers import qt_thread_factory


@pytest.fixture
def window(qtbot, data_dir):
    studio = Studio(data_dir, thread_factory=qt_thread_factory, secrets=MemorySecrets())
    w = MainWindow(studio)
    qtbot.addWidget(w)
    w.show()
    yield w
    w.skip_close_confirmation = True
    if not w._closing:
        w.close()
    qtbot.waitUntil(lambda: w._closing and not studio.jobs.active_ids(), timeout=15000)


def test_tabs_menus_and_status_bar(window):
    assert [window.tabs.tabText(i) for i in range(window.tabs.count())] == [t.title for t in TABS]
    titles = [a.text() for a in window.menuBar().actions()]
    assert titles == ["&File", "&View", "&Help"]
    assert str(window.studio.paths.root) in window.status.dir_label.text()
    assert window.status.device_label.text().startswith(("CPU", "GPU"))
    assert "RAM" in window.status.ram_label.text()
    for spec in TABS:  # every tab shows something truthful (real tab or its empty state)
        inner = window.show_tab(spec.title)
        assert inner is not None


BUSY_SCRIPT = """
import sys, tempfile, time
from PySide6.QtCore import Qt, QTimer
from mistudio.secrets_test_support import MemorySecrets
from mistudio.studio import Studio
from mistudio.ui.app import create_app
from mistudio.ui.main_window import MainWindow
from mistudio.ui.workers import qt_thread_factory
app = create_app()
studio = Studio(tempfile.mkdtemp(), thread_factory=qt_thread_factory, secrets=MemorySecrets())
w = MainWindow(studio)
w.show()
ticks = []
timer = QTimer()
timer.setInterval(20)
timer.timeout.connect(lambda: ticks.append(time.monotonic()))
timer.start()
rec = studio.submit_job("demo.busy", {"seconds": 3})
deadline = time.monotonic() + 30
while studio.get_job(rec.id).status != "completed" and time.monotonic() < deadline:
    app.processEvents()
    time.sleep(0.005)
timer.stop()
gaps = [b - a for a, b in zip(ticks, ticks[1:])]
print("STATUS", studio.get_job(rec.id).status)
print("TICKS", len(ticks))
print("MAXGAP", max(gaps) if gaps else 99)
w.skip_close_confirmation = True
w.close()
"""


def test_event_loop_keeps_running_during_busy_job():
    """A job that busy-computes in Python for 3 s; a 20 ms main-thread timer keeps firing.

    Runs in a fresh process so that threads or windows left by other tests cannot skew it.
    """
    import os
    import subprocess
    import sys

    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", MISTUDIO_NO_KEYRING="1")
    out = subprocess.run([sys.executable, "-c", BUSY_SCRIPT], capture_output=True, text=True,
                         env=env, timeout=90)
    assert out.returncode == 0, out.stderr[-2000:]
    vals = dict(line.split(" ", 1) for line in out.stdout.splitlines() if " " in line)
    assert vals["STATUS"] == "completed"
    assert int(vals["TICKS"]) > 50, "the main-thread timer barely fired while the job ran"
    assert float(vals["MAXGAP"]) < 0.5, f"event loop blocked for {vals['MAXGAP']} s"


def test_early_tab_imports_wait_while_a_job_runs(window, qtbot):
    """The early tab-module imports pause while a job of this process runs (a busy job thread
    stretches each import into a freeze) and finish once it has stopped."""
    import sys

    from mistudio.ui.tabs import PRELOAD_LIBRARIES

    assert all(name in sys.modules for name in PRELOAD_LIBRARIES)  # before the first paint
    rec = window.studio.submit_job("demo.sleep", {"seconds": 30})
    qtbot.waitUntil(window.bridge.jobs_running, timeout=5000)
    window._import_tabs()
    qtbot.wait(1200)  # two retry periods
    assert not window.tab_modules_imported()
    window.studio.cancel_job(rec.id)
    qtbot.waitUntil(lambda: not window.bridge.jobs_running(), timeout=5000)
    qtbot.waitUntil(window.tab_modules_imported, timeout=5000)


def test_jobs_dock_shows_progress_and_cancels(window, qtbot):
    dock = window.jobs_dock
    rec = window.studio.submit_job("demo.sleep", {"seconds": 30}, target="ds_demo")
    qtbot.waitUntil(lambda: any(r.id == rec.id and r.status == "running" for r in dock.model.rows),
                    timeout=5000)
    row = dock.model._index[rec.id]
    qtbot.waitUntil(lambda: (dock.model.rows[dock.model._index[rec.id]].progress or 0) > 0,
                    timeout=5000)
    assert dock.model.data(dock.model.index(row, 1)) == "ds_demo"
    dock.table.selectRow(row)
    assert dock.cancel_btn.isEnabled()
    dock.cancel_btn.click()
    qtbot.waitUntil(lambda: window.studio.get_job(rec.id).status == "cancelled", timeout=5000)
    qtbot.waitUntil(lambda: dock.model.rows[dock.model._index[rec.id]].status == "cancelled",
                    timeout=5000)


def test_failed_job_message_and_log_dialog(window, qtbot):
    dock = window.jobs_dock
    rec = window.studio.submit_job("demo.fail", {"user_error": False})
    qtbot.waitUntil(lambda: any(r.id == rec.id and r.status == "failed" for r in dock.model.rows),
                    timeout=5000)
    row = dock.model._index[rec.id]
    assert dock.model.data(dock.model.index(row, 6)) == "RuntimeError: boom"
    dock.table.selectRow(row)
    dock.open_log()
    dlg = dock._log_dialogs[rec.id]
    assert "Traceback" in dlg.text.toPlainText()
    dlg.close()


def test_settings_dialog_saves(window, qtbot):
    dlg = window.open_settings()
    dlg.max_jobs.setValue(4)
    dlg.device.setCurrentText("cpu")
    dlg.token.setText("hf_testtoken123")
    dlg.save()
    assert window.studio.settings.max_concurrent_jobs == 4
    assert window.studio.jobs.limits()["max_concurrent"] == 4
    assert window.studio.settings.default_device == "cpu"
    assert window.studio.hf_token == "hf_testtoken123"


def test_about_dialog_reports_versions(window, qtbot):
    import torch

    dlg = window.open_about()
    qtbot.waitUntil(lambda: dlg.hw is not None and dlg.hw.cuda_available is not None,
                    timeout=30000)
    text = dlg.label.text()
    assert torch.__version__ in text and "Python" in text and "Qt" in text
    assert ("CPU" in text) != torch.cuda.is_available() or "GPU 0" in text
    dlg.close()


def test_geometry_is_remembered(qtbot, data_dir):
    s1 = Studio(data_dir, thread_factory=qt_thread_factory, secrets=MemorySecrets())
    w1 = MainWindow(s1)
    qtbot.addWidget(w1)
    w1.show()
    w1.resize(700, 500)  # inside the 800x600 offscreen screen
    w1.tabs.setCurrentIndex(2)
    training = w1.tabs.widget(2).inner  # its trainings are read on a thread, then shown
    qtbot.waitUntil(lambda: training.jobs_loaded, timeout=10_000)
    qtbot.wait(50)
    size1 = (w1.width(), w1.height())  # a tab's minimum size may have widened it a little
    w1.close()
    s2 = Studio(data_dir, thread_factory=qt_thread_factory, secrets=MemorySecrets())
    w2 = MainWindow(s2)
    qtbot.addWidget(w2)
    w2.show()
    assert (w2.width(), w2.height()) == size1 != (1280, 820)
    assert w2.tabs.currentIndex() == 2
    w2.close()


def test_closing_window_stops_running_jobs(qtbot, data_dir):
    studio = Studio(data_dir, thread_factory=qt_thread_factory, secrets=MemorySecrets())
    w = MainWindow(studio)
    qtbot.addWidget(w)
    w.show()
    rec = studio.submit_job("demo.sleep", {"seconds": 60})
    qtbot.waitUntil(lambda: studio.get_job(rec.id).status == "running", timeout=5000)
    w.skip_close_confirmation = True
    w.close()
    qtbot.waitUntil(lambda: not w.isVisible(), timeout=15000)
    assert studio.jobs.find(rec.id).status == "cancelled"


def test_screenshot_command_saves_every_tab_and_dialog(tmp_path, data_dir, qapp):
    from mistudio.ui.screenshots import take_screenshots

    # The user's window layout and settings are neither used nor changed by screenshots.
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "ui.ini").write_text("[General]\ntab=2\n")
    saved = take_screenshots(tmp_path / "shots", data_dir, size=(1000, 700))
    assert (data_dir / "ui.ini").read_text() == "[General]\ntab=2\n"
    names = {p.name for p in saved}
    assert {f"tab-{i + 1}-{t.title.lower()}.png" for i, t in enumerate(TABS)} <= names
    assert {"dialog-settings.png", "dialog-about.png"} <= names
    from PySide6.QtGui import QImage

    img = QImage(str(tmp_path / "shots" / "tab-1-datasets.png"))
    assert img.width() >= 1000 and img.height() >= 700  # a tab may ask for a few pixels more
    assert len({img.pixel(x, y) for x in range(0, 1000, 50) for y in range(0, 700, 50)}) > 3


def test_jobs_panel_shows_five_jobs_whole_on_one_line_each(window, qtbot):
    dock = window.jobs_dock
    window.resize(1400, 900)  # the size of `mistudio screenshot`
    title = "Extract SmolLM2-135M-Instruct (demo, from GGUF) · layer 6 · resid_post"
    recs = [window.studio.submit_job("demo.sleep", {"seconds": 0.01}, title=f"{title} #{i}")
            for i in range(5)]
    qtbot.waitUntil(lambda: sum(r.status == "completed" for r in dock.model.rows) == 5,
                    timeout=10_000)
    qtbot.wait(50)
    table = dock.table
    assert not table.wordWrap()  # a long name is one line ending in "…", not two cut lines
    for row in range(5):
        top = table.rowViewportPosition(row)
        assert top >= 0 and top + table.rowHeight(row) <= table.viewport().height(), row
    row = dock.model._index[recs[0].id]
    assert title in dock.model.data(dock.model.index(row, 0), Qt.ItemDataRole.ToolTipRole)
