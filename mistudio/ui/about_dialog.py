"""Help > About: versions of Python, Qt, torch, CUDA, and the device in use.

torch is probed on a background thread so the dialog opens at once.
"""

from __future__ import annotations

import importlib.metadata as md
import platform

from PySide6 import __version__ as pyside_version
from PySide6.QtCore import Qt, qVersion
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QLabel, QVBoxLayout

from mistudio import APP_TITLE, __version__, hardware
from mistudio.ui.kit.background import BackgroundCall


def _dist_version(name: str) -> str:
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return "not installed"


def about_html(hw: hardware.HardwareInfo | None) -> str:
    rows = [
        ("MechInterp Studio", __version__),
        ("Python", platform.python_version()),
        ("Qt / PySide6", f"{qVersion()} / {pyside_version}"),
        ("PyTorch", hw.torch_version if hw and hw.torch_version else _dist_version("torch")),
        ("transformers", _dist_version("transformers")),
    ]
    if hw is None or hw.cuda_available is None:
        rows.append(("CUDA", "checking..."))
        rows.append(("Device", "checking..."))
    else:
        rows.append(("CUDA", hw.cuda_version or "none in this PyTorch build"))
        if hw.gpus:
            for g in hw.gpus:
                mem = f"{g.total_bytes / 2**30:.1f} GiB" if g.total_bytes else "memory n/a"
                rows.append((f"GPU {g.index}", f"{g.name}, {mem}, compute {g.compute_capability}, "
                             f"bf16 {'yes' if g.bf16 else 'no'}"))
        else:
            rows.append(("Device", f"CPU ({hw.cpu_count} cores). {hw.fallback_reason}"))
        if hw.jetson:
            rows.append(("Jetson", hw.jetson_model or "yes"))
    rows.append(("Machine", f"{platform.machine()}, {platform.system()} {platform.release()}"))
    body = "".join(f"<tr><td><b>{k}</b></td><td>&nbsp;&nbsp;{v}</td></tr>" for k, v in rows)
    return (f"<h3>{APP_TITLE}</h3><p>Sparse-autoencoder interpretability on your own machine. "
            f"Local and offline; no telemetry.</p><table>{body}</table>"
            "<p style='color:gray'>Demo text: Wikipedia summaries, CC BY-SA 4.0.</p>")


class AboutDialog(QDialog):
    def __init__(self, parent=None, *, probe_torch: bool = True):
        super().__init__(parent)
        self.setWindowTitle(f"About {APP_TITLE}")
        self.setMinimumWidth(520)
        lay = QVBoxLayout(self)
        self.label = QLabel(about_html(None))
        self.label.setTextFormat(Qt.TextFormat.RichText)
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        lay.addWidget(self.label)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        lay.addWidget(buttons)
        self.hw: hardware.HardwareInfo | None = None
        if probe_torch:  # importing torch takes a second: not on the GUI thread
            self._probe = BackgroundCall(hardware.probe, self._show)
        else:
            self._show(hardware.probe_fast())

    def _show(self, hw) -> None:
        self.hw = hw
        self.label.setText(about_html(hw))
