"""A truthful empty state: what a tab will hold and what to do first."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QPushButton, QSizePolicy, QVBoxLayout, QWidget

from mistudio.ui.kit.palette import css


class EmptyState(QWidget):
    def __init__(self, title: str, body: str, *, action_text: str = "", on_action=None,
                 parent: QWidget | None = None):
        super().__init__(parent)
        lay = QVBoxLayout(self)
        lay.addStretch(2)
        head = QLabel(title)
        head.setAlignment(Qt.AlignmentFlag.AlignCenter)
        head.setStyleSheet("font-size: 18px; font-weight: 600;")
        text = QLabel(body)
        text.setWordWrap(True)
        text.setAlignment(Qt.AlignmentFlag.AlignCenter)
        text.setTextFormat(Qt.TextFormat.RichText)
        text.setFixedWidth(620)
        font = text.font()
        font.setPointSizeF(font.pointSizeF() * 1.1)
        text.setFont(font)  # a real font (not a style sheet) so the wrapped height is right
        text.setStyleSheet(css("text.secondary"))
        lay.addWidget(head)
        lay.addSpacing(8)
        text.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Minimum)
        text.setMinimumHeight(text.heightForWidth(620) + 8)
        lay.addWidget(text, 0, Qt.AlignmentFlag.AlignHCenter)
        if action_text and on_action:
            btn = QPushButton(action_text)
            btn.clicked.connect(on_action)
            lay.addSpacing(12)
            lay.addWidget(btn, 0, Qt.AlignmentFlag.AlignHCenter)
        lay.addStretch(3)
        self.title_text = title
        self.body_text = body
