"""The main window: assembles tabs, the Jobs dock, menus and the status bar. Nothing more."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from PySide6.QtCore import QSettings, Qt, QTimer, QUrl
from PySide6.QtGui import QAction, QDesktopServices, QKeySequence
from PySide6.QtWidgets import QMainWindow, QMessageBox, QTabWidget

from mistudio import APP_TITLE
from mistudio.ui.jobs_dock import JobsDock
from mistudio.ui.kit.gc_freeze import freeze_long_lived
from mistudio.ui.status_bar import AppStatusBar
from mistudio.ui.tabs import TABS, LazyTab, import_tab_module, preload_tab_libraries, tab_module_names
from mistudio.ui.workers import JobBridge

log = logging.getLogger(__name__)
DOCS_URL = "https://github.com/mistudio/mistudio/tree/main/docs"
IMPORT_RETRY_MS = 500  # early tab imports wait this long while a job runs


class MainWindow(QMainWindow):
    """``remember_layout=False`` (screenshots): neither read nor write the user's ui.ini, so
    the pictures do not depend on the last session and the next session is not changed."""

    # The app's own window sets this (ui/app.py main): once the early tab imports are done,
    # what is alive is start-up state kept for the whole process (modules, their functions
    # and classes, the window's widgets), a few hundred thousand objects that every full
    # garbage collection would walk again with the GIL held, 70-150 ms each on this machine,
    # the longest GUI stalls left while the Training tab's charts arrive. Freezing them
    # (``kit/gc_freeze.py``) moves them out of the collector's reach; the cost, a cycle among
    # them that becomes garbage later is not collected, is small for objects meant to stay.
    # Off for windows made by tests, which build many windows in one process.
    freeze_startup_objects = False

    def __init__(self, studio, parent=None, *, remember_layout: bool = True):
        super().__init__(parent)
        preload_tab_libraries()  # before the first paint: no freeze once the window is up
        self.studio = studio
        self.setWindowTitle(APP_TITLE)
        self.resize(1280, 820)
        self.bridge = JobBridge(self)
        studio.add_job_listener(self.bridge)

        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        self.lazy_tabs: dict[str, LazyTab] = {}
        for spec in TABS:
            page = LazyTab(spec, studio, self.bridge)
            self.lazy_tabs[spec.title] = page
            self.tabs.addTab(page, spec.title)
        self.tabs.currentChanged.connect(self._on_tab_changed)
        self.setCentralWidget(self.tabs)

        self.jobs_dock = JobsDock(studio, self.bridge, self)
        self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, self.jobs_dock)
        self.resizeDocks([self.jobs_dock], [self.jobs_dock.height_for_rows(5)],
                         Qt.Orientation.Vertical)
        self.status = AppStatusBar(studio, self)
        self.setStatusBar(self.status)
        self._build_menus()
        self._ui_settings = (QSettings(str(studio.paths.root / "ui.ini"),
                                       QSettings.Format.IniFormat) if remember_layout else None)
        self._restore_geometry()
        self._closing = False
        self._tab_imports: list[str] | None = None  # set once the window shows (showEvent)
        self._on_tab_changed(self.tabs.currentIndex())
        if studio.interrupted_at_start:
            n = len(studio.interrupted_at_start)
            QTimer.singleShot(0, lambda: self.statusBar().showMessage(
                f"{n} job(s) were interrupted when the app last stopped; see the Jobs panel.",
                15000))

    def showEvent(self, event) -> None:
        super().showEvent(event)
        if self._tab_imports is None:  # after the first paint: the window comes first
            self._tab_imports = False
            QTimer.singleShot(0, self._import_tabs)

    def _import_tabs(self) -> None:
        """Import the tab modules one per event-loop turn on this thread (see
        ``tabs.import_tab_module``), so a tab's first open builds widgets only."""
        self._tab_imports = tab_module_names()
        self._import_next_tab()

    def _import_next_tab(self) -> None:
        if self._closing or not self._tab_imports:
            return
        if self.bridge.jobs_running():
            # A busy job thread holds the GIL most of the time, which stretches a 30 ms
            # import into a freeze of 0.3 s: wait for a quiet moment (the tab's first open
            # imports its module anyway if the user gets there first).
            QTimer.singleShot(IMPORT_RETRY_MS, self._import_next_tab)
            return
        import_tab_module(self._tab_imports.pop(0))
        if not self._tab_imports and self.freeze_startup_objects:
            freeze_long_lived()
        QTimer.singleShot(0, self._import_next_tab)

    def tab_modules_imported(self) -> bool:
        """Whether the early import of the tab modules has finished."""
        return self._tab_imports == []

    # ------------------------------------------------------------------ tabs

    def _on_tab_changed(self, index: int) -> None:
        page = self.tabs.widget(index)
        if isinstance(page, LazyTab):
            self._wire(page.ensure_built())

    def show_tab(self, title: str):
        page = self.lazy_tabs[title]
        self.tabs.setCurrentWidget(page)
        return self._wire(page.ensure_built())

    def _wire(self, widget):
        """Cross-tab requests go through the window (tabs never import each other)."""
        steer = getattr(widget, "steer_feature_requested", None)
        if steer is not None and not getattr(widget, "_steer_wired", False):
            steer.connect(self.steer_feature)
            widget._steer_wired = True
        use = getattr(widget, "use_template_requested", None)
        if use is not None and not getattr(widget, "_use_wired", False):
            use.connect(self.use_template)
            widget._use_wired = True
        return widget

    # which tab a kind of saved settings opens, and the method that takes it there
    USE_TARGETS = {"training": ("Training", "use_template"),
                   "extraction": ("Models", "use_extraction_template"),
                   "steering": ("Steering", "use_preset")}

    def use_template(self, kind: str, ref: str) -> None:
        """"Use" (Templates tab): open the tab that takes these settings, filled in."""
        title, method = self.USE_TARGETS[kind]
        tab = self.show_tab(title)
        take = getattr(tab, method, None)
        if callable(take):
            take(ref)
        else:
            self.statusBar().showMessage(f"The {title} tab cannot take a template in this "
                                         "version.", 8000)

    def steer_feature(self, sae_id: str, feature_index: int) -> None:
        """"Steer with this feature" (Features tab): open Steering with it chosen."""
        tab = self.show_tab("Steering")
        choose = getattr(tab, "steer_feature", None)
        if callable(choose):
            choose(sae_id, int(feature_index))
        else:
            self.statusBar().showMessage("The Steering tab cannot take a feature in this "
                                         "version.", 8000)

    # ------------------------------------------------------------------ menus

    def _build_menus(self) -> None:
        file_menu = self.menuBar().addMenu("&File")
        self.settings_action = QAction("&Settings...", self)
        self.settings_action.setShortcut(QKeySequence.StandardKey.Preferences)
        self.settings_action.triggered.connect(self.open_settings)
        file_menu.addAction(self.settings_action)
        open_dir = QAction("Open &data folder", self)
        open_dir.triggered.connect(
            lambda: QDesktopServices.openUrl(QUrl.fromLocalFile(str(self.studio.paths.root))))
        file_menu.addAction(open_dir)
        self.storage_action = QAction("S&torage...", self)
        self.storage_action.triggered.connect(self.open_storage)
        file_menu.addAction(self.storage_action)
        file_menu.addSeparator()
        quit_action = QAction("&Quit", self)
        quit_action.setShortcut(QKeySequence.StandardKey.Quit)
        quit_action.triggered.connect(self.close)
        file_menu.addAction(quit_action)

        view_menu = self.menuBar().addMenu("&View")
        view_menu.addAction(self.jobs_dock.toggleViewAction())

        help_menu = self.menuBar().addMenu("&Help")
        docs = QAction("&Documentation", self)
        docs.setShortcut(QKeySequence.StandardKey.HelpContents)
        docs.triggered.connect(self.open_docs)
        help_menu.addAction(docs)
        about = QAction("&About MechInterp Studio", self)
        about.triggered.connect(self.open_about)
        help_menu.addAction(about)

    def open_settings(self):
        from mistudio.ui.settings_dialog import SettingsDialog

        dlg = SettingsDialog(self.studio, self)
        dlg.open()
        return dlg

    def open_storage(self):
        from mistudio.ui.storage_dialog import StorageDialog

        dlg = StorageDialog(self.studio, self)
        dlg.open()
        return dlg

    def open_about(self, *, probe_torch: bool = True):
        from mistudio.ui.about_dialog import AboutDialog

        dlg = AboutDialog(self, probe_torch=probe_torch)
        dlg.open()
        return dlg

    def open_docs(self) -> None:
        local = Path(__file__).resolve().parents[2] / "docs"
        url = QUrl.fromLocalFile(str(local)) if local.is_dir() else QUrl(DOCS_URL)
        QDesktopServices.openUrl(url)

    # ------------------------------------------------------------------ geometry & close

    def _restore_geometry(self) -> None:
        if self._ui_settings is None:
            return
        geo = self._ui_settings.value("geometry")
        state = self._ui_settings.value("state")
        if geo is not None:
            self.restoreGeometry(geo)
        if state is not None:
            self.restoreState(state)
        tab = self._ui_settings.value("tab")
        if tab is not None and str(tab).isdigit() and int(tab) < self.tabs.count():
            self.tabs.setCurrentIndex(int(tab))

    def _save_geometry(self) -> None:
        if self._ui_settings is None:
            return
        self._ui_settings.setValue("geometry", self.saveGeometry())
        self._ui_settings.setValue("state", self.saveState())
        self._ui_settings.setValue("tab", self.tabs.currentIndex())
        self._ui_settings.sync()

    def closeEvent(self, event) -> None:
        if self._closing:
            event.accept()
            return
        active = self.studio.jobs.active_ids()
        if active and not getattr(self, "skip_close_confirmation", False):
            answer = QMessageBox.question(
                self, "Jobs are running",
                f"{len(active)} job(s) are still running or queued. Stop them and quit? Trainings "
                "and extractions save a checkpoint and can be resumed later.")
            if answer != QMessageBox.StandardButton.Yes:
                event.ignore()
                return
        self._save_geometry()
        self._closing = True
        for job_id in active:
            self.studio.jobs.cancel(job_id)
        if not active:
            self._finish_close()
            event.accept()
            return
        # Wait for jobs without freezing the window; give up after the configured bound.
        event.ignore()
        self.statusBar().showMessage("Stopping jobs...")
        deadline = time.monotonic() + self.studio.settings.shutdown_wait_s
        timer = QTimer(self)
        timer.setInterval(100)

        def poll():
            if not self.studio.jobs.active_ids() or time.monotonic() > deadline:
                timer.stop()
                self._finish_close()
                self.close()

        timer.timeout.connect(poll)
        timer.start()

    def _finish_close(self) -> None:
        self.status.timer.stop()
        self.jobs_dock.shutdown()  # its poll and its background reads
        for page in self.lazy_tabs.values():  # tabs with timers or threads stop them here
            stop = getattr(page.inner, "shutdown", None)
            if callable(stop):
                stop()
        self.bridge.stop()
        self.studio.jobs.remove_listener(self.bridge)
        for timer in self.findChildren(QTimer):  # any a tab left running (no shutdown hook)
            timer.stop()
        still = self.studio.close(timeout=0.5)
        if still:
            log.warning("closed with jobs still running (marked interrupted): %s", still)
