"""Closing the window and its Studio stops everything they started: no Python thread, no
running QThread, no active QTimer and no process-wide setting is left behind to slow down
whatever runs next in the process (a later test, or a second window)."""

from __future__ import annotations

import sys
import threading

import shiboken6
from PySide6.QtCore import QThread, QTimer

from mistudio.secrets_test_support import MemorySecrets
from mistudio.studio import Studio
from mistudio.ui import workers
from mistudio.ui.main_window import MainWindow
from mistudio.ui.tabs import TABS
from mistudio.ui.workers import qt_thread_factory


def test_closing_the_window_with_every_tab_open_leaves_nothing_running(qtbot, data_dir):
    before = {t.ident for t in threading.enumerate()}
    switch_interval = sys.getswitchinterval()
    studio = Studio(data_dir, thread_factory=qt_thread_factory, secrets=MemorySecrets())
    w = MainWindow(studio)
    qtbot.addWidget(w)
    w.show()
    for spec in TABS:
        w.show_tab(spec.title)
        qtbot.wait(20)
    training = w.show_tab("Training")
    for i in range(training.pages.count()):  # charts, runs (its loader), resources (sampler)
        training.pages.setCurrentIndex(i)
        qtbot.wait(50)
    running = studio.submit_job("demo.sleep", {"seconds": 60})
    queued = studio.submit_job("demo.sleep", {"seconds": 60})
    qtbot.waitUntil(lambda: studio.get_job(running.id).status == "running", timeout=10_000)
    job_threads = [t for t in workers._LIVE if shiboken6.isValid(t) and t.isRunning()]
    assert job_threads
    assert sys.getswitchinterval() != switch_interval  # the bridge shortens it while open

    w.skip_close_confirmation = True
    w.close()
    qtbot.waitUntil(lambda: w._closing and not w.isVisible(), timeout=20_000)
    studio.close()

    # QThreads show up in threading.enumerate() as never-ending "Dummy" entries once they
    # touched the threading module; they are checked through Qt instead
    extra = [t.name for t in threading.enumerate()
             if t.ident not in before and not isinstance(t, threading._DummyThread)]
    assert extra == [], f"threads left running: {extra}"
    assert [t.objectName() for t in job_threads if shiboken6.isValid(t) and t.isRunning()] == []
    assert [t.objectName() for t in w.findChildren(QThread) if t.isRunning()] == []
    timers = [(t.parent().__class__.__name__, t.interval()) for t in w.findChildren(QTimer)
              if t.isActive()]
    assert timers == [], f"timers still firing: {timers}"
    assert sys.getswitchinterval() == switch_interval
    assert studio.jobs.find(running.id).status == "cancelled"
    assert studio.jobs.find(queued.id).status == "cancelled"
