"""Start the desktop app: QApplication, the facade on the Qt runner, the main window.

Kept light: no torch import here (it happens inside jobs), so the window shows fast.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback

log = logging.getLogger(__name__)


def _check_display() -> str | None:
    """A clear message instead of Qt's abort when there is no display."""
    if sys.platform.startswith("linux"):
        platform = os.environ.get("QT_QPA_PLATFORM", "")
        if not platform and not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
            return ("No display found (neither DISPLAY nor WAYLAND_DISPLAY is set). Run the app "
                    "from a desktop session, or use `xvfb-run mistudio` / "
                    "QT_QPA_PLATFORM=offscreen. The headless commands (`mistudio --help`) work "
                    "without a display.")
    return None


_OPEN_ERRORS: list = []


def install_excepthook(app) -> None:
    """Uncaught exceptions are logged and shown in a dialog; the app never dies silently."""
    from mistudio.errors import describe_exception
    from mistudio.ui.kit.background import on_gui_thread

    def hook(exc_type, exc, tb):
        text = "".join(traceback.format_exception(exc_type, exc, tb))
        log.error("uncaught exception:\n%s", text)
        sys.__stderr__.write(text)
        if not on_gui_thread():
            return  # never build widgets off the main thread
        from mistudio.ui.dialogs import error_box

        try:  # non-blocking: the app keeps running behind the dialog
            box = error_box(app.activeWindow(), "Unexpected error",
                            describe_exception(exc) + "\n\nThe details are in the log.", text)
            _OPEN_ERRORS.append(box)
            box.finished.connect(lambda *_: _OPEN_ERRORS.remove(box))
            box.open()
        except Exception:
            pass

    sys.excepthook = hook


def create_app(argv: list[str] | None = None):
    from PySide6.QtGui import QIcon
    from PySide6.QtWidgets import QApplication

    from mistudio import APP_TITLE
    from mistudio.ui.resources import icon_path

    app = QApplication.instance() or QApplication(argv if argv is not None else sys.argv[:1])
    app.setApplicationName("mistudio")
    app.setApplicationDisplayName(APP_TITLE)
    app.setOrganizationName("mistudio")
    app.setDesktopFileName("mistudio")
    app.setWindowIcon(QIcon(str(icon_path())))
    return app


def build_window(data_dir=None, *, remember_layout: bool = True):
    """The facade running jobs on Qt worker threads (ui/workers.py) plus the main window
    (not shown yet)."""
    from mistudio.studio import Studio
    from mistudio.ui.main_window import MainWindow
    from mistudio.ui.workers import qt_thread_factory

    studio = Studio(data_dir, thread_factory=qt_thread_factory)
    return MainWindow(studio, remember_layout=remember_layout)


def main(data_dir=None) -> int:
    problem = _check_display()
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    app = create_app()
    install_excepthook(app)
    try:
        window = build_window(data_dir)
    except Exception as exc:
        from mistudio.errors import describe_exception
        from mistudio.ui.dialogs import show_error

        log.exception("start-up failed")
        show_error(None, "MechInterp Studio could not start", describe_exception(exc),
                   traceback.format_exc())
        return 1
    window.freeze_startup_objects = True
    # Collect garbage only on this thread's timer, never at an arbitrary allocation: a
    # collection inside a Qt call that holds the signal-slot mutex can destroy a widget left
    # in a reference cycle, whose destructor then waits for that mutex (a deadlock), and one
    # on a worker thread would destroy Qt objects off the GUI thread (pyqtgraph's helper).
    from pyqtgraph.util.garbage_collector import GarbageCollector

    window.garbage_collector = GarbageCollector(interval=0.5)
    window.show()
    _daily_backup(window.studio)
    startup_cleanup(window)
    return app.exec()


def _daily_backup(studio):
    """The database's once-a-day backup (docs/storage.md), off the GUI thread: SQLite's
    backup API uses its own connection, and a large database must not hold the window.
    Returns the call (tests wait on it)."""
    from mistudio.ui.kit.background import BackgroundCall

    return BackgroundCall(studio.storage.backup_if_due, _backup_taken, _backup_failed)


def _backup_taken(made) -> None:
    if made is not None:
        log.info("daily database backup: %s", made.path)


def _backup_failed(message: str) -> None:  # a full disk must not stop the app
    log.error("daily database backup failed: %s", message)


def startup_cleanup(window):
    """The cleanup policy at start-up when it is enabled (docs/storage.md): on a background
    thread, never holding the window; its summary goes to the status bar and File > Storage.
    Returns the call (tests wait on it), or None when the policy is off."""
    from PySide6.QtCore import QObject

    from mistudio.ui.kit.background import BackgroundCall

    class CleanupReport(QObject):
        """Gets the summary on the GUI thread (a bound method of a QObject living there)."""

        def __init__(self):
            super().__init__(window)
            self.summary = None

        def done(self, summary) -> None:
            self.summary = summary
            if summary is not None:
                window.statusBar().showMessage(summary.text(), 30_000)

        def failed(self, exc) -> None:
            log.error("start-up cleanup failed: %s", exc)
            window.statusBar().showMessage(f"Start-up cleanup failed: {exc}", 30_000)

    studio = window.studio
    if not studio.settings.cleanup_at_startup:
        return None
    report = CleanupReport()
    call = BackgroundCall(studio.storage.startup_cleanup, report.done, report.failed)
    call.report = report
    return call
