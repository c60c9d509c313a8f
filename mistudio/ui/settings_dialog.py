"""File > Settings: data folder, default device and dtype, Hugging Face token, job limits."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import (QCheckBox, QComboBox, QDialog, QDialogButtonBox, QDoubleSpinBox, QFileDialog,
                               QFormLayout, QHBoxLayout, QLabel, QLineEdit, QMessageBox,
                               QPushButton, QSpinBox, QTabWidget, QVBoxLayout, QWidget)

from mistudio import paths
from mistudio.errors import UserError
from mistudio.app.storage_cleanup import CleanupPolicy
from mistudio.settings import DEVICES, DTYPES, Settings
from mistudio.ui.cleanup_policy_form import CleanupPolicyForm
from mistudio.ui.kit.labels import hint_label


def _help(text: str) -> QLabel:
    return hint_label(text)


class SettingsDialog(QDialog):
    def __init__(self, studio, parent=None):
        super().__init__(parent)
        self.studio = studio
        self.setWindowTitle("Settings")
        self.setMinimumWidth(600)
        self.setMinimumHeight(640)  # wrapped help texts under each field need the room
        s = studio.settings
        lay = QVBoxLayout(self)
        pages = QTabWidget()
        general = QWidget()
        form = QFormLayout(general)
        pages.addTab(general, "General")
        lay.addWidget(pages)

        row = QHBoxLayout()
        self.data_dir = QLineEdit(str(studio.paths.root))
        browse = QPushButton("Browse...")
        browse.clicked.connect(self._browse)
        row.addWidget(self.data_dir, 1)
        row.addWidget(browse)
        box = QWidget()
        box.setLayout(row)
        row.setContentsMargins(0, 0, 0, 0)
        form.addRow("Data folder", box)
        form.addRow("", _help("Where datasets, models, activations and trainings are stored. "
                              "Takes effect after a restart; existing data is not moved "
                              "(File > Storage > Move moves it). "
                              f"(${paths.ENV_DATA_DIR} overrides it.)"))

        self.device = QComboBox()
        self.device.addItems(DEVICES)
        self.device.setCurrentText(s.default_device)
        form.addRow("Default device", self.device)
        form.addRow("", _help(Settings.help("default_device")))

        self.dtype = QComboBox()
        self.dtype.addItems(DTYPES)
        self.dtype.setCurrentText(s.default_dtype)
        form.addRow("Default dtype", self.dtype)
        form.addRow("", _help(Settings.help("default_dtype")))

        self.token = QLineEdit()
        self.token.setEchoMode(QLineEdit.EchoMode.Password)
        self.token.setPlaceholderText("hf_... (only needed for gated or private repositories)")
        self._had_token = bool(studio.secrets.get("hf_token"))
        if self._had_token:
            self.token.setPlaceholderText("a token is saved; type a new one to replace it")
        form.addRow("Hugging Face token", self.token)
        self.clear_token = QPushButton("Remove saved token")
        self.clear_token.setEnabled(self._had_token)
        self.clear_token.clicked.connect(self._remove_token)
        form.addRow("", self.clear_token)
        form.addRow("", _help(f"Stored in the {studio.secrets.backend}, never in the database or "
                              "logs. Used only for Hub downloads you start."))

        self.max_jobs = QSpinBox(minimum=1, maximum=32, value=s.max_concurrent_jobs)
        form.addRow("Max concurrent jobs", self.max_jobs)
        form.addRow("", _help(Settings.help("max_concurrent_jobs")))
        self.max_gpu = QSpinBox(minimum=1, maximum=8, value=s.max_gpu_jobs)
        form.addRow("Max GPU jobs at once", self.max_gpu)
        form.addRow("", _help(Settings.help("max_gpu_jobs")))
        self.wait = QDoubleSpinBox(minimum=0, maximum=600, value=s.shutdown_wait_s, suffix=" s")
        form.addRow("Wait for jobs on quit", self.wait)
        form.addRow("", _help(Settings.help("shutdown_wait_s")))
        self.cpu_quant = QCheckBox("Allow 8-/4-bit quantization on the CPU")
        self.cpu_quant.setChecked(bool(s.allow_cpu_quantization))
        form.addRow("CPU quantization", self.cpu_quant)
        form.addRow("", _help(Settings.help("allow_cpu_quantization")))

        cleanup = QWidget()
        cl = QVBoxLayout(cleanup)
        cl.addWidget(_help("What File > Storage > Cleanup and `mistudio storage clean` delete, "
                           "and whether the window runs it at start-up. Rules that delete your "
                           "work are off until you turn them on; a preview always comes first "
                           "when you run it by hand."))
        self.cleanup = CleanupPolicyForm(studio.storage.policy())
        cl.addWidget(self.cleanup)
        cl.addStretch(1)
        pages.addTab(cleanup, "Cleanup policy")
        self.pages = pages

        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Save
                                   | QDialogButtonBox.StandardButton.Cancel
                                   | QDialogButtonBox.StandardButton.RestoreDefaults)
        buttons.accepted.connect(self.save)
        buttons.rejected.connect(self.reject)
        buttons.button(QDialogButtonBox.StandardButton.RestoreDefaults).clicked.connect(
            self.restore_defaults)
        lay.addWidget(buttons)

    def _browse(self) -> None:
        d = QFileDialog.getExistingDirectory(self, "Data folder", self.data_dir.text())
        if d:
            self.data_dir.setText(d)

    def _remove_token(self) -> None:
        self.studio.set_hf_token(None)
        self._had_token = False
        self.clear_token.setEnabled(False)
        self.token.setPlaceholderText("hf_... (only needed for gated or private repositories)")

    def restore_defaults(self) -> None:
        d = Settings()
        self.device.setCurrentText(d.default_device)
        self.dtype.setCurrentText(d.default_dtype)
        self.max_jobs.setValue(d.max_concurrent_jobs)
        self.max_gpu.setValue(d.max_gpu_jobs)
        self.wait.setValue(d.shutdown_wait_s)
        self.cpu_quant.setChecked(d.allow_cpu_quantization)
        self.cleanup.set_policy(CleanupPolicy.from_settings(d))
        self.data_dir.setText(str(paths.default_data_dir()))

    def save(self) -> None:
        try:
            self.studio.update_settings(
                default_device=self.device.currentText(), default_dtype=self.dtype.currentText(),
                max_concurrent_jobs=self.max_jobs.value(), max_gpu_jobs=self.max_gpu.value(),
                shutdown_wait_s=self.wait.value(),
                allow_cpu_quantization=self.cpu_quant.isChecked(),
                **self.cleanup.policy().to_settings())
            if self.token.text().strip():
                self.studio.set_hf_token(self.token.text().strip())
            new_dir = Path(self.data_dir.text().strip()).expanduser()
            if new_dir.resolve() != self.studio.paths.root.resolve():
                paths.remember_data_dir(None if new_dir == paths.default_data_dir() else new_dir)
                QMessageBox.information(self, "Restart needed",
                                        f"The data folder will be {new_dir} after a restart.")
        except UserError as exc:
            QMessageBox.warning(self, "Settings not saved", str(exc))
            return
        self.accept()
