"""The Jobs dock: every job with kind, target, status badge, progress, ETA, cancel, log.

The jobs (the newest ``LIST_LIMIT``; hundreds in a long-used data folder) and the change
token that tells of another process's jobs are read on the dock's background thread
(``BackgroundCalls``): a job event or the 2 s poll never waits on the database.
"""

from __future__ import annotations

import datetime as _dt

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QRect, Qt, QTimer, QUrl, Signal
from PySide6.QtGui import QAction, QColor, QDesktopServices
from PySide6.QtWidgets import (QApplication, QDockWidget, QHBoxLayout, QHeaderView, QMenu,
                               QPlainTextEdit, QPushButton, QStyle, QStyledItemDelegate,
                               QStyleOptionProgressBar, QTableView, QVBoxLayout, QWidget,
                               QDialog, QDialogButtonBox)

from mistudio.app.jobs import ACTIVE, JobRecord
from mistudio.ui.kit.background import BackgroundCalls
from mistudio.ui.kit.labels import paint_status_chip
from mistudio.ui.kit.palette import status_colour

POLL_MS = 2000  # how often the window looks for jobs of other processes
LIST_LIMIT = 500  # the newest jobs listed (older ones: `mistudio jobs list`)
COLUMNS = ["Job", "Target", "Status", "Progress", "ETA", "Started", "Message"]


def format_eta(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}:{seconds % 60:02d}"


def _local_time(iso: str | None) -> str:
    if not iso:
        return ""
    try:
        return _dt.datetime.fromisoformat(iso).astimezone().strftime("%m-%d %H:%M:%S")
    except ValueError:
        return iso[:19]


class JobsModel(QAbstractTableModel):
    def __init__(self, studio, parent=None):
        super().__init__(parent)
        self.studio = studio
        self.rows: list[JobRecord] = []
        self._index: dict[str, int] = {}

    def set_rows(self, rows: list[JobRecord]) -> None:
        self.beginResetModel()
        self.rows = list(rows)
        self._index = {r.id: i for i, r in enumerate(self.rows)}
        self.endResetModel()

    def rowCount(self, parent=QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent=QModelIndex()) -> int:
        return len(COLUMNS)

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section]
        return None

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        r = self.rows[index.row()]
        col = COLUMNS[index.column()]
        if role == Qt.ItemDataRole.DisplayRole:
            return {
                "Job": r.title or r.kind, "Target": r.target, "Status": r.status,
                "Progress": None, "ETA": format_eta(r.eta_s) if r.status == "running" else "",
                "Started": _local_time(r.started_at or r.created_at),
                "Message": r.error or r.message,
            }[col]
        if role == Qt.ItemDataRole.UserRole:
            return r
        if role == Qt.ItemDataRole.ToolTipRole:
            if col == "Message" and (r.error or r.message):
                return r.error or r.message
            if col == "Job":
                return f"{r.title or r.kind}\n{r.kind} ({r.id})"
        if role == Qt.ItemDataRole.ForegroundRole and col == "Status":
            return QColor(status_colour(r.status))
        return None

    def apply_progress(self, job_id: str, payload: dict) -> None:
        i = self._index.get(job_id)
        if i is None:
            return
        r = self.rows[i]
        r.progress, r.total = payload["done"], payload["total"]
        r.eta_s = payload.get("eta_s")
        if payload.get("message"):
            r.message = payload["message"]
        self.dataChanged.emit(self.index(i, 3), self.index(i, len(COLUMNS) - 1))

    def record(self, row: int) -> JobRecord:
        return self.rows[row]


class ProgressDelegate(QStyledItemDelegate):
    def paint(self, painter, option, index):
        r: JobRecord = index.data(Qt.ItemDataRole.UserRole)
        opt = QStyleOptionProgressBar()
        opt.rect = QRect(option.rect.adjusted(2, 3, -2, -3))
        opt.minimum, opt.maximum = 0, 1000
        frac = r.fraction
        if r.status == "completed":
            frac = 1.0
        if frac is None:
            opt.progress, opt.text = 0, "" if r.status != "running" else "..."
        else:
            opt.progress, opt.text = int(frac * 1000), f"{frac * 100:.0f}%"
        opt.textVisible = True
        QApplication.style().drawControl(QStyle.ControlElement.CE_ProgressBar, opt, painter)


class StatusBadgeDelegate(QStyledItemDelegate):
    """The status as a coloured rounded badge."""

    def paint(self, painter, option, index):
        status = index.data(Qt.ItemDataRole.DisplayRole) or ""
        w = option.fontMetrics.horizontalAdvance(status) + 14
        rect = QRect(option.rect.x() + 4, option.rect.y() + 4, w, option.rect.height() - 8)
        paint_status_chip(painter, rect, status, status)


class LogDialog(QDialog):
    """The job's log file, refreshed live while the job runs."""

    def __init__(self, studio, job_id: str, parent=None):
        super().__init__(parent)
        self.studio, self.job_id = studio, job_id
        rec = studio.get_job(job_id)
        self.setWindowTitle(f"Log: {rec.title or rec.kind} ({job_id})")
        self.resize(860, 520)
        lay = QVBoxLayout(self)
        self.text = QPlainTextEdit(readOnly=True)
        self.text.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.text.setStyleSheet("font-family: monospace;")
        lay.addWidget(self.text)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        open_btn = buttons.addButton("Open file", QDialogButtonBox.ButtonRole.ActionRole)
        open_btn.clicked.connect(lambda: QDesktopServices.openUrl(QUrl.fromLocalFile(rec.log_path)))
        buttons.rejected.connect(self.reject)
        lay.addWidget(buttons)
        self.refresh()

    def refresh(self) -> None:
        text = self.studio.job_log(self.job_id) or "(the log is empty)"
        if text != self.text.toPlainText():
            self.text.setPlainText(text)
            self.text.verticalScrollBar().setValue(self.text.verticalScrollBar().maximum())


class JobsDock(QDockWidget):
    log_requested = Signal(str)

    def __init__(self, studio, bridge, parent=None):
        super().__init__("Jobs", parent)
        self.setObjectName("JobsDock")
        self.studio = studio
        self.model = JobsModel(studio, self)
        self.calls = BackgroundCalls(self, name="jobs-dock")  # the list's and the poll's reads
        self._loaded = False
        body = QWidget()
        lay = QVBoxLayout(body)
        lay.setContentsMargins(4, 4, 4, 4)
        bar = QHBoxLayout()
        self.cancel_btn = QPushButton("Cancel")
        self.pause_btn = QPushButton("Pause")
        self.resume_btn = QPushButton("Resume")
        self.log_btn = QPushButton("Open log")
        self.clear_btn = QPushButton("Clear finished")
        for b in (self.cancel_btn, self.pause_btn, self.resume_btn, self.log_btn):
            bar.addWidget(b)
        bar.addStretch(1)
        bar.addWidget(self.clear_btn)
        lay.addLayout(bar)
        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.setSelectionBehavior(QTableView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QTableView.SelectionMode.SingleSelection)
        self.table.setItemDelegateForColumn(2, StatusBadgeDelegate(self.table))
        self.table.setItemDelegateForColumn(3, ProgressDelegate(self.table))
        self.table.verticalHeader().hide()
        # One line per job, names shortened with "…" (the tooltip has them whole), rows just
        # tall enough for the badge: the panel's default height shows five jobs.
        self.table.setWordWrap(False)
        self.table.setTextElideMode(Qt.TextElideMode.ElideRight)
        vh = self.table.verticalHeader()
        vh.setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        vh.setDefaultSectionSize(self.table.fontMetrics().height() + 10)
        self.table.setAlternatingRowColors(True)
        hh = self.table.horizontalHeader()
        hh.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        hh.setStretchLastSection(True)
        for col, w in enumerate((280, 110, 90, 120, 60, 110)):
            self.table.setColumnWidth(col, w)
        self.table.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.table.customContextMenuRequested.connect(self._context_menu)
        self.table.doubleClicked.connect(lambda _: self.open_log())
        lay.addWidget(self.table)
        self.setWidget(body)
        self._log_dialogs: dict[str, LogDialog] = {}

        self.cancel_btn.clicked.connect(self.cancel_selected)
        self.pause_btn.clicked.connect(lambda: self._act(self.studio.pause_job))
        self.resume_btn.clicked.connect(lambda: self._act(self.studio.resume_job))
        self.log_btn.clicked.connect(self.open_log)
        self.clear_btn.clicked.connect(self.clear_finished)
        self.table.selectionModel().selectionChanged.connect(lambda *_: self._update_buttons())
        bridge.changed.connect(self.reload)
        bridge.progress.connect(self.model.apply_progress)
        bridge.log.connect(self._on_log)
        # Jobs of another process (a CLI command on the same data folder) reach this window
        # only through the database: a cheap read every 2 s (WAL readers never wait on writers).
        self._token = None
        self._poll = QTimer(self)
        self._poll.setInterval(POLL_MS)
        self._poll.timeout.connect(self._poll_other_processes)
        self._poll.start()
        self.reload()

    def _poll_other_processes(self) -> None:
        if self.calls.busy():
            return  # a read is on its way; the next tick looks again

        def changed(token) -> None:
            if token != self._token:
                self.reload()

        jobs = self.studio.jobs
        # a busy or closing database: no answer, the next tick tries again
        self.calls.call("poll", jobs.change_token, changed, lambda _message: None)

    def height_for_rows(self, rows: int) -> int:
        """The dock height that shows ``rows`` jobs whole (buttons, header, rows, frames)."""
        body = self.widget()
        margins = body.layout().contentsMargins()
        bar = max(self.cancel_btn.sizeHint().height(), self.clear_btn.sizeHint().height())
        header = self.table.horizontalHeader().sizeHint().height()
        frame = 2 * self.table.frameWidth()
        title = self.style().pixelMetric(QStyle.PixelMetric.PM_TitleBarHeight)
        return (title + margins.top() + margins.bottom() + bar + body.layout().spacing()
                + header + frame + rows * self.table.verticalHeader().defaultSectionSize() + 4)

    def reload(self) -> None:
        """Read the jobs again on the dock's thread; the table follows when they arrive
        (a newer reload makes an older one stale)."""
        studio = self.studio

        def read() -> tuple:
            try:
                token = studio.jobs.change_token()
            except Exception:  # a busy or closing database: the next poll reads again
                token = None
            return token, studio.list_jobs(limit=LIST_LIMIT)

        self.calls.call("jobs", read, self._show_jobs)

    def is_loaded(self) -> bool:
        """The table shows what was last asked for (no read of it is on its way)."""
        return self._loaded and not self.calls.busy()

    def _show_jobs(self, result) -> None:
        self._token, rows = result
        self._loaded = True
        selected = self.selected()
        self.model.set_rows(rows)
        if selected:
            i = self.model._index.get(selected.id)
            if i is not None:
                self.table.selectRow(i)
        self._update_buttons()

    def shutdown(self) -> None:
        """Stop the poll and the background reads (the main window, on close)."""
        self._poll.stop()
        self.calls.close()

    def selected(self) -> JobRecord | None:
        rows = self.table.selectionModel().selectedRows()
        return self.model.record(rows[0].row()) if rows else None

    def _update_buttons(self) -> None:
        r = self.selected()
        active = bool(r and r.status in ACTIVE)
        self.cancel_btn.setEnabled(active)
        self.pause_btn.setEnabled(bool(r and r.status == "running"))
        self.resume_btn.setEnabled(bool(r and r.status == "paused"))
        self.log_btn.setEnabled(r is not None)

    def _act(self, fn) -> None:
        r = self.selected()
        if r:
            fn(r.id)

    def cancel_selected(self) -> None:
        self._act(self.studio.cancel_job)
        self.reload()

    def open_log(self) -> None:
        r = self.selected()
        if not r:
            return
        dlg = self._log_dialogs.get(r.id)
        if dlg is None:
            dlg = LogDialog(self.studio, r.id, self)
            dlg.finished.connect(lambda _=0, job_id=r.id: self._log_dialogs.pop(job_id, None))
            self._log_dialogs[r.id] = dlg
        dlg.show()
        dlg.raise_()

    def _on_log(self, job_id: str, _payload: dict) -> None:
        dlg = self._log_dialogs.get(job_id)
        if dlg is not None:
            dlg.refresh()

    def clear_finished(self) -> None:
        """Delete the listed jobs that ended (rows, metrics, logs) on the dock's thread: a
        long-used folder lists hundreds, each with thousands of metric rows."""
        ids = [r.id for r in self.model.rows if r.status not in ACTIVE]
        studio = self.studio

        def clear() -> int:
            from mistudio.errors import UserError

            done = 0
            for job_id in ids:
                try:
                    studio.delete_job(job_id)
                    done += 1
                except UserError:  # resumed meanwhile, or already gone: keep going
                    pass
            return done

        self.clear_btn.setEnabled(False)

        def cleared(_result) -> None:
            self.clear_btn.setEnabled(True)
            self.reload()

        self.calls.call("clear", clear, cleared, cleared)

    def _context_menu(self, pos) -> None:
        index = self.table.indexAt(pos)
        if not index.isValid():
            return
        self.table.selectRow(index.row())
        r = self.selected()
        menu = QMenu(self)
        for text, fn, enabled in (
            ("Cancel", self.cancel_selected, r.status in ACTIVE),
            ("Open log", self.open_log, True),
            ("Open artifact folder", lambda: QDesktopServices.openUrl(
                QUrl.fromLocalFile(r.artifact_dir)), bool(r.artifact_dir)),
            ("Copy error", lambda: QApplication.clipboard().setText(r.error + "\n\n" + r.traceback),
             bool(r.error)),
        ):
            act = QAction(text, menu)
            act.setEnabled(enabled)
            act.triggered.connect(fn)
            menu.addAction(act)
        menu.exec(self.table.viewport().mapToGlobal(pos))
