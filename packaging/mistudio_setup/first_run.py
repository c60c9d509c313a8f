"""The first-run window: installs PyTorch for this machine, with progress, then the app starts.

pip runs in a QProcess (the event loop never waits on it); its ``--progress-bar raw`` lines
become the progress bar. No network gives a clear message and a Retry button instead of a
traceback; Cancel removes the partial download.
"""

from __future__ import annotations

import shutil
import sys

from PySide6.QtCore import QProcess, QProcessEnvironment, Qt, QTimer
from PySide6.QtWidgets import (QApplication, QDialog, QDialogButtonBox, QLabel, QPlainTextEdit,
                               QProgressBar, QPushButton, QVBoxLayout)

from mistudio_setup import torch_layer
from mistudio_setup.torch_choice import TorchChoice

JETSON_HELP = (
    "MechInterp Studio uses NVIDIA's PyTorch for JetPack, which is not installed yet (or not "
    "where the app can see it).\n\nInstall the PyTorch wheel that matches your JetPack for the "
    "whole system, for JetPack 6:\n    sudo pip3 install torch --index-url "
    "https://pypi.jetson-ai-lab.io/jp6/cu126\n(see docs/jetson.md), then press Check again.")


class FirstRunDialog(QDialog):
    def __init__(self, choice: TorchChoice, layer=None, parent=None):
        super().__init__(parent)
        self.choice = choice
        self.layer = layer or torch_layer.user_layer()
        self.partial = None
        self.output = torch_layer.PipOutput()
        self.process: QProcess | None = None
        self.setWindowTitle("MechInterp Studio: first start")
        self.setMinimumWidth(620)
        lay = QVBoxLayout(self)
        self.intro = QLabel()
        self.intro.setWordWrap(True)
        self.intro.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.status = QLabel("Starting...")
        self.status.setWordWrap(True)
        self.bar = QProgressBar()
        self.details = QPlainTextEdit(readOnly=True)
        self.details.setMaximumBlockCount(2000)
        self.details.setMinimumHeight(140)
        self.buttons = QDialogButtonBox()
        self.retry = QPushButton("Retry")
        self.buttons.addButton(self.retry, QDialogButtonBox.ActionRole)
        self.cancel = self.buttons.addButton(QDialogButtonBox.Cancel)
        self.retry.clicked.connect(self.start)
        self.cancel.clicked.connect(self.reject)
        for w in (self.intro, self.status, self.bar, self.details, self.buttons):
            lay.addWidget(w)
        self.details.hide()  # pip's own output, shown once pip runs
        if choice.kind == "jetson":
            self.intro.setText(JETSON_HELP)
            self.retry.setText("Check again")
            self.status.setText("")
            self.bar.hide()
            self.details.hide()
        else:
            self.intro.setText(
                "MechInterp Studio runs language models with PyTorch, which is installed once "
                f"for your user account:\n{choice.describe()}")

    def start(self) -> None:
        if self.choice.kind == "jetson":
            if torch_layer.torch_present():
                self.accept()
            return
        self.retry.setEnabled(False)
        self.bar.show()
        self.bar.setRange(0, 0)
        why = torch_layer.reachable(self.choice.index_url)
        if why:
            self.fail(torch_layer.offline_message(self.choice.label(), self.choice.index_url, why))
            return
        self.output = torch_layer.PipOutput()
        self.partial = torch_layer.partial_dir(self.layer)
        cmd = torch_layer.pip_command(self.partial, self.choice.pip_args)
        self.details.show()
        self.details.appendPlainText(" ".join(cmd))
        self.process = QProcess(self)
        self.process.setProcessChannelMode(QProcess.MergedChannels)
        env = QProcessEnvironment()
        for key, value in torch_layer.pip_environment().items():
            env.insert(key, value)
        self.process.setProcessEnvironment(env)
        self.process.readyReadStandardOutput.connect(self._read)
        self.process.finished.connect(self._finished)
        self.status.setText("Looking up PyTorch...")
        self.process.start(cmd[0], cmd[1:])

    def _read(self) -> None:
        data = bytes(self.process.readAllStandardOutput()).decode(errors="replace")
        for line in data.splitlines():
            p = self.output.feed(line)
            if line.startswith("Progress "):
                if p.total:
                    self.bar.setRange(0, 1000)
                    self.bar.setValue(int(1000 * p.done / p.total))
                    self.status.setText(f"Downloading {p.name}: {p.done / 2**20:,.0f} of "
                                        f"{p.total / 2**20:,.0f} MB (files done: {p.files_done})")
            else:
                self.details.appendPlainText(line)
                if line.startswith(("Collecting", "Installing")):
                    self.status.setText(p.phase)
                    self.bar.setRange(0, 0)

    def _finished(self, code: int, _status) -> None:
        if code != 0:
            detail, offline = self.output.failure(code)
            if offline:
                detail = torch_layer.offline_message(self.choice.label(), self.choice.index_url,
                                                     detail)
            self.fail(detail)
            return
        torch_layer.finish_install(self.partial, self.layer)
        self.partial = None
        self.status.setText("Installed. Starting MechInterp Studio...")
        self.bar.setRange(0, 1)
        self.bar.setValue(1)
        QTimer.singleShot(300, self.accept)

    def fail(self, message: str) -> None:
        self.status.setText(message)
        self.bar.hide()
        self.retry.setEnabled(True)
        self.adjustSize()  # the message is longer than the status line it replaces
        self._drop_partial()

    def reject(self) -> None:
        if self.process and self.process.state() != QProcess.NotRunning:
            self.process.kill()
            self.process.waitForFinished(5000)
        self._drop_partial()
        super().reject()

    def _drop_partial(self) -> None:
        if self.partial is not None:
            shutil.rmtree(self.partial, ignore_errors=True)
            self.partial = None


def run_first_run(choice: TorchChoice) -> bool:
    from PySide6.QtGui import QIcon

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setDesktopFileName("mistudio")
    try:
        from mistudio.ui.resources import icon_path

        app.setWindowIcon(QIcon(str(icon_path())))
    except Exception:  # the icon is a nicety; the install must not depend on it
        pass
    dialog = FirstRunDialog(choice)
    QTimer.singleShot(0, dialog.start)
    return dialog.exec() == QDialog.Accepted
