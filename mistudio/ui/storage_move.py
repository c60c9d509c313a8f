"""File > Storage > Move: move the data folder to another disk. The copy, the verification
(sizes and SHA-256 of every file), the switch and the removal of the old folder run on a
background thread (``StorageService.move_data_folder``); its progress reaches this page
through a thread-safe slot read by a 100 ms timer on the GUI thread. Cancel stops the copy:
the old folder stays the data folder, and moving again to the same place resumes."""

from __future__ import annotations

from PySide6.QtCore import QTimer, Signal
from PySide6.QtWidgets import (QFileDialog, QHBoxLayout, QLabel, QLineEdit, QProgressBar,
                               QPushButton, QVBoxLayout, QWidget)

from mistudio.errors import JobCancelled
from mistudio.jobs.context import JobContext
from mistudio.paths import human_bytes
from mistudio.ui.kit.background import BackgroundCall, LatestProgress
from mistudio.ui.kit.labels import hint_label
from mistudio.ui.kit.palette import css


class MoveDataFolderPage(QWidget):
    moved = Signal(dict)

    def __init__(self, storage, confirm, parent: QWidget | None = None):
        """``confirm(title, message) -> bool``: the dialog's confirmation (tests patch it)."""
        super().__init__(parent)
        self.storage = storage
        self.confirm = confirm
        self.call: BackgroundCall | None = None
        self.ctx: JobContext | None = None
        self.sink = LatestProgress()
        lay = QVBoxLayout(self)
        lay.addWidget(hint_label(
            "Moves everything (database, datasets, models, activations, trainings, ...) to "
            "another folder, e.g. on an external disk: copies with progress, checks every "
            "file's size and SHA-256, switches the data folder, and only then deletes the old "
            "one. Until the switch the old folder stays in use: a cancelled or killed move "
            "leaves it as it was, and moving again to the same folder resumes. Refused while "
            "jobs run. The app closes when the move is done; start it again.", small=False))
        self.current = QLabel(f"Data folder now: {storage.paths.root}")
        self.current.setWordWrap(True)
        lay.addWidget(self.current)
        self.leftover = storage.unfinished_move()
        self.leftover_row = QWidget()
        lrow = QHBoxLayout(self.leftover_row)
        lrow.setContentsMargins(0, 0, 0, 0)
        lrow.addWidget(QLabel(f"An earlier move switched here but did not delete the old "
                              f"folder {self.leftover}."), 1)
        self.finish_btn = QPushButton("Delete old folder...")
        self.finish_btn.clicked.connect(self.finish_earlier_move)
        lrow.addWidget(self.finish_btn)
        self.leftover_row.setVisible(self.leftover is not None)
        lay.addWidget(self.leftover_row)
        row = QHBoxLayout()
        self.dest = QLineEdit()
        self.dest.setPlaceholderText("an empty or new folder on the other disk")
        browse = QPushButton("Browse...")
        browse.clicked.connect(self._browse)
        row.addWidget(self.dest, 1)
        row.addWidget(browse)
        lay.addLayout(row)
        self.bar = QProgressBar()
        self.bar.setRange(0, 1000)
        self.bar.setValue(0)
        self.bar.setFormat("")
        lay.addWidget(self.bar)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        lay.addWidget(self.status)
        lay.addStretch(1)
        row = QHBoxLayout()
        row.addStretch(1)
        self.cancel_btn = QPushButton("Cancel move")
        self.cancel_btn.setEnabled(False)
        self.cancel_btn.clicked.connect(self.cancel)
        self.move_btn = QPushButton("Move data folder...")
        self.move_btn.clicked.connect(self.start)
        row.addWidget(self.cancel_btn)
        row.addWidget(self.move_btn)
        lay.addLayout(row)
        self.timer = QTimer(self)
        self.timer.setInterval(100)
        self.timer.timeout.connect(self._poll)

    def _browse(self) -> None:
        d = QFileDialog.getExistingDirectory(self, "Move the data folder to",
                                             self.dest.text() or str(self.storage.paths.root))
        if d:
            self.dest.setText(d)

    def running(self) -> bool:
        return self.call is not None and self.call.running()

    def start(self) -> None:
        dest = self.dest.text().strip()
        if not dest:
            self._say("Choose the folder to move the data folder to.", error=True)
            return
        if not self.confirm("Move the data folder",
                            f"Copy the data folder to {dest}, verify it, switch to it and "
                            f"delete {self.storage.paths.root}? The app closes when done."):
            return
        self.ctx = JobContext.standalone(on_event=self.sink)
        ctx = self.ctx
        self.move_btn.setEnabled(False)
        self.cancel_btn.setEnabled(True)
        self._say("Starting the move...")
        self.timer.start()
        self.call = BackgroundCall(lambda: self.storage.move_data_folder(dest, ctx),
                                   self._done, self._failed)

    def cancel(self) -> None:
        if self.ctx is not None:
            self.ctx.request_cancel()
            self._say("Cancelling: the old folder stays the data folder...")

    def _poll(self) -> None:
        p = self.sink.take()
        if p is None:
            return
        total = p.get("total") or 0
        frac = min(1.0, p["done"] / total) if total else 0.0
        self.bar.setValue(int(frac * 1000))
        self.bar.setFormat(f"{human_bytes(p['done'])} of {human_bytes(total)}" if total
                           else "")
        self.status.setText(p.get("message") or "")

    def _finish(self) -> None:
        self.timer.stop()
        self._poll()
        self.move_btn.setEnabled(True)
        self.cancel_btn.setEnabled(False)

    def _done(self, result: dict) -> None:
        self._finish()
        self.bar.setValue(1000)
        self._say(f"Moved {result['files']} file(s), {human_bytes(result['bytes'])}, to "
                  f"{result['to']}; every file verified. The old folder was removed.")
        self.moved.emit(result)

    def _failed(self, exc) -> None:
        self._finish()
        if isinstance(exc, JobCancelled):
            self._say("Move cancelled. The data folder is still "
                      f"{self.storage.paths.root}; moving again to the same folder resumes.")
        else:
            self._say(f"{exc} The data folder is still {self.storage.paths.root}.", error=True)

    def finish_earlier_move(self) -> None:
        if self.leftover is None or not self.confirm(
                "Delete the old data folder", f"Delete {self.leftover}? This folder "
                f"({self.storage.paths.root}) was verified complete before the switch."):
            return
        self.finish_btn.setEnabled(False)
        self.call = BackgroundCall(self.storage.finish_move, self._finished, self._failed)

    def _finished(self, old: str) -> None:
        self.leftover = None
        self.leftover_row.setVisible(False)
        self._say(f"Deleted the old data folder {old}.")

    def _say(self, text: str, error: bool = False) -> None:
        self.status.setText(text)
        self.status.setStyleSheet(css("error" if error else "text"))
