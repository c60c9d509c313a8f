"""Dialogs to add a model: from the Hub (with revision and the remote-code opt-in)."""

from __future__ import annotations

from PySide6.QtWidgets import (QCheckBox, QDialog, QDialogButtonBox, QFormLayout, QLabel,
                               QLineEdit, QVBoxLayout, QWidget)

from mistudio.ui.kit.palette import css


class HubDownloadDialog(QDialog):
    """Hub id, optional revision and name; 'trust remote code' off, with a warning."""

    def __init__(self, parent: QWidget | None = None, has_token: bool = False):
        super().__init__(parent)
        self.setWindowTitle("Download a model from the Hugging Face Hub")
        lay = QVBoxLayout(self)
        form = QFormLayout()
        self.repo = QLineEdit()
        self.repo.setPlaceholderText("owner/name, e.g. HuggingFaceTB/SmolLM2-135M")
        self.revision = QLineEdit()
        self.revision.setPlaceholderText("main (a branch, tag or commit pins the version)")
        self.name = QLineEdit()
        self.name.setPlaceholderText("optional display name")
        self.trust = QCheckBox("Trust remote code (runs the repository's Python code)")
        self.warning = QLabel("Only enable this for repositories whose authors you trust: "
                              "their code runs on this computer with your permissions.")
        self.warning.setWordWrap(True)
        self.warning.setStyleSheet(css("warning"))
        self.warning.setVisible(False)
        self.trust.toggled.connect(self.warning.setVisible)
        form.addRow("Model id", self.repo)
        form.addRow("Revision", self.revision)
        form.addRow("Name", self.name)
        lay.addLayout(form)
        lay.addWidget(self.trust)
        lay.addWidget(self.warning)
        note = QLabel("Uses the network. Gated models need your access token (File > "
                      "Settings)." + ("" if has_token else " No token is set."))
        note.setWordWrap(True)
        note.setStyleSheet(css("text.secondary"))
        lay.addWidget(note)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok |
                                   QDialogButtonBox.StandardButton.Cancel)
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Download")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        lay.addWidget(buttons)

    def values(self) -> dict:
        return {"repo_id": self.repo.text().strip(), "revision": self.revision.text().strip()
                or None, "name": self.name.text().strip() or None,
                "trust_remote_code": self.trust.isChecked()}
