"""Status bar: where work runs (GPU or CPU, and why), RAM, GPU memory, the data folder.

Sampling uses psutil and NVML only (no torch), on a 2 s timer.
"""

from __future__ import annotations

import os

import psutil
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QLabel, QStatusBar

from mistudio import hardware


def _gib(n: float | None) -> str:
    return "?" if n is None else f"{n / 2**30:.1f}"


class AppStatusBar(QStatusBar):
    def __init__(self, studio, parent=None):
        super().__init__(parent)
        self.studio = studio
        self.hw = hardware.probe_fast()
        self.device_label = QLabel()
        self.ram_label = QLabel()
        self.gpu_label = QLabel()
        self.dir_label = QLabel()
        for w in (self.device_label, self.gpu_label, self.ram_label):
            self.addPermanentWidget(w)
        self.addPermanentWidget(self.dir_label, 1)
        self._proc = psutil.Process(os.getpid())
        self._describe_device()
        self.dir_label.setText(f"Data: {studio.paths.root}")
        self.dir_label.setToolTip("The data folder (change it in File > Settings)")
        self.timer = QTimer(self)
        self.timer.setInterval(2000)
        self.timer.timeout.connect(self.sample)
        self.timer.start()
        self.sample()

    def _describe_device(self) -> None:
        hw = self.hw
        if hw.gpus:
            text = f"GPU: {hw.device_label()}"
            if hw.jetson:
                text += " (Jetson, unified memory)"
            tip = "Jobs run on this GPU unless Settings says CPU."
        else:
            text = f"CPU: {hw.cpu_count} cores"
            tip = ("No NVIDIA GPU was found (no driver, or none present); jobs run on the CPU. "
                   "Small models work; large ones will be slow.")
        self.device_label.setText(text)
        self.device_label.setToolTip(tip)

    def sample(self) -> None:
        vm = psutil.virtual_memory()
        try:
            own = self._proc.memory_info().rss
        except psutil.Error:
            own = None
        self.ram_label.setText(f"RAM {_gib(vm.total - vm.available)}/{_gib(vm.total)} GiB "
                               f"(app {_gib(own)})")
        if self.hw.gpus:
            gpus = hardware.nvml_gpus()
            g = gpus[0] if gpus else None
            if g and g.total_bytes:
                self.gpu_label.setText(f"GPU mem {_gib(g.used_bytes)}/{_gib(g.total_bytes)} GiB")
            elif self.hw.jetson:
                self.gpu_label.setText("GPU mem: shared with RAM")
            else:
                self.gpu_label.setText("GPU mem: n/a")
            self.gpu_label.show()
        else:
            self.gpu_label.hide()
