"""The log viewer: the job's log file, then its live lines from the bridge; filter by level."""

from __future__ import annotations

import re
import time
from collections import deque
from pathlib import Path

from PySide6.QtCore import QUrl
from PySide6.QtGui import QDesktopServices, QTextCursor
from PySide6.QtWidgets import (QCheckBox, QComboBox, QHBoxLayout, QLabel, QLineEdit,
                               QPlainTextEdit, QPushButton, QVBoxLayout, QWidget)

LEVELS = ("debug", "info", "warning", "error")
MAX_LINES = 5000
TAIL_BYTES = 512 * 1024
# The queue's log format: "%(asctime)s %(levelname)-7s %(message)s"
_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+) (DEBUG|INFO|WARNING|ERROR|CRITICAL)\s+(.*)$")


def parse_log_text(text: str) -> list[tuple[str, str]]:
    """(level, line) pairs; continuation lines (tracebacks) take the level of their entry."""
    out, level = [], "info"
    for line in text.splitlines():
        m = _LINE.match(line)
        if m:
            level = m.group(2).lower()
            level = "error" if level == "critical" else level
        out.append((level, line))
    return out


class JobLogView(QWidget):
    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.job_id: str | None = None
        self.log_path: Path | None = None
        self.entries: deque[tuple[str, str]] = deque(maxlen=MAX_LINES)

        self.level_combo = QComboBox()
        for label, level in (("All", "debug"), ("Info and above", "info"),
                             ("Warnings and errors", "warning"), ("Errors only", "error")):
            self.level_combo.addItem(label, level)
        self.level_combo.setCurrentIndex(1)
        self.level_combo.currentIndexChanged.connect(self.rerender)
        self.search = QLineEdit()
        self.search.setPlaceholderText("Filter text…")
        self.search.setClearButtonEnabled(True)
        self.search.textChanged.connect(self.rerender)
        self.follow = QCheckBox("Follow")
        self.follow.setChecked(True)
        self.follow.setToolTip("Keep the newest line in view")
        self.open_btn = QPushButton("Open log file")
        self.open_btn.clicked.connect(self._open_file)
        self.title = QLabel("No training selected.")
        bar = QHBoxLayout()
        bar.addWidget(self.title, 1)
        bar.addWidget(QLabel("Show:"))
        bar.addWidget(self.level_combo)
        bar.addWidget(self.search)
        bar.addWidget(self.follow)
        bar.addWidget(self.open_btn)
        self.text = QPlainTextEdit()
        self.text.setReadOnly(True)
        self.text.setLineWrapMode(QPlainTextEdit.NoWrap)
        self.text.setMaximumBlockCount(MAX_LINES)
        self.text.setStyleSheet("font-family: monospace; font-size: 9pt")
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(bar)
        lay.addWidget(self.text, 1)
        self.open_btn.setEnabled(False)

    @property
    def min_level(self) -> str:
        return self.level_combo.currentData()

    def set_job(self, job_id: str | None, log_path: str | None, title: str = "") -> None:
        self.job_id = job_id
        self.log_path = Path(log_path) if log_path else None
        self.entries.clear()
        self.title.setText(title or (job_id or "No training selected."))
        self.open_btn.setEnabled(bool(self.log_path and self.log_path.exists()))
        if self.log_path is not None:
            self.entries.extend(parse_log_text(self._read_tail(self.log_path)))
        self.rerender()

    @staticmethod
    def _read_tail(path: Path) -> str:
        try:
            with open(path, "rb") as fh:
                fh.seek(0, 2)
                size = fh.tell()
                fh.seek(max(0, size - TAIL_BYTES))
                data = fh.read()
        except OSError:
            return ""
        text = data.decode("utf-8", errors="replace")
        if size > TAIL_BYTES:  # drop the partial first line
            text = text.split("\n", 1)[-1]
        return text

    def _visible(self, level: str, line: str) -> bool:
        if LEVELS.index(level) < LEVELS.index(self.min_level):
            return False
        needle = self.search.text().strip().lower()
        return not needle or needle in line.lower()

    def rerender(self) -> None:
        lines = [line for level, line in self.entries if self._visible(level, line)]
        self.text.setPlainText("\n".join(lines))
        if self.follow.isChecked():
            self.text.moveCursor(QTextCursor.End)

    def on_log(self, job_id: str, payload: dict) -> None:
        """Slot for ``JobBridge.log``: append the job's new line if it passes the filter."""
        if job_id != self.job_id:
            return
        level = str(payload.get("level", "info")).lower()
        level = level if level in LEVELS else ("error" if level == "critical" else "info")
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(payload.get("t") or time.time()))
        line = f"{stamp} {level.upper():<7} {payload.get('message', '')}"
        self.entries.append((level, line))
        if self._visible(level, line):
            bar = self.text.verticalScrollBar()
            at_end = bar.value() >= bar.maximum() - 2
            self.text.appendPlainText(line)
            if self.follow.isChecked() and at_end:
                self.text.moveCursor(QTextCursor.End)

    def visible_lines(self) -> list[str]:
        text = self.text.toPlainText()
        return text.splitlines() if text else []

    def _open_file(self) -> None:
        if self.log_path is not None:
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(self.log_path)))
