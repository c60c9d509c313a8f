"""A dialog for a contrastive steering vector: two prompt sets, one prompt a line."""

from __future__ import annotations

from PySide6.QtWidgets import (QDialog, QDialogButtonBox, QFormLayout, QLabel, QLineEdit,
                               QPlainTextEdit)


class ContrastDialog(QDialog):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Contrastive steering vector")
        form = QFormLayout(self)
        note = QLabel("The direction is the mean of the hook point's activations at the last "
                      "token of each 'towards' prompt minus the same mean over the 'away from' "
                      "prompts (as in ActAdd / CAA). It is measured when you generate.")
        note.setWordWrap(True)
        form.addRow(note)
        self.name = QLineEdit()
        self.name.setPlaceholderText("e.g. happy-sad")
        self.positive = QPlainTextEdit()
        self.positive.setPlaceholderText("I am so happy today\nWhat a wonderful day")
        self.negative = QPlainTextEdit()
        self.negative.setPlaceholderText("I am so sad today\nWhat a terrible day")
        form.addRow("Name", self.name)
        form.addRow("Towards (one a line)", self.positive)
        form.addRow("Away from (one a line)", self.negative)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok |
                                   QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def values(self) -> tuple[str, list[str], list[str]]:
        return (self.name.text(), self.positive.toPlainText().splitlines(),
                self.negative.toPlainText().splitlines())
