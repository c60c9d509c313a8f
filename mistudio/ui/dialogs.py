"""Small shared dialogs: errors with details one click away, confirmations."""

from __future__ import annotations

from PySide6.QtWidgets import QMessageBox, QWidget


def error_box(parent: QWidget | None, title: str, message: str, details: str = "") -> QMessageBox:
    """An error message with the details (traceback, log) one click away."""
    box = QMessageBox(parent)
    box.setIcon(QMessageBox.Icon.Critical)
    box.setWindowTitle(title)
    box.setText(message)
    if details:
        box.setDetailedText(details)
    return box


def show_error(parent: QWidget | None, title: str, message: str, details: str = "") -> None:
    error_box(parent, title, message, details).exec()


def confirm(parent: QWidget | None, title: str, message: str, *, destructive: bool = False) -> bool:
    box = QMessageBox(parent)
    box.setIcon(QMessageBox.Icon.Warning if destructive else QMessageBox.Icon.Question)
    box.setWindowTitle(title)
    box.setText(message)
    box.setStandardButtons(QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No)
    box.setDefaultButton(QMessageBox.StandardButton.No)
    return box.exec() == QMessageBox.StandardButton.Yes
