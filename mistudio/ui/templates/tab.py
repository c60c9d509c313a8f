"""The Templates tab: training templates, extraction templates and steering presets as cards,
an editor generated from the forms' schema, duplicate/rename/delete, import/export, "Use".

"Use" emits ``use_template_requested(kind, ref)``; the main window opens the Training tab,
the Models tab's extraction panel or the Steering tab with it (tabs never import each
other). The state (what is listed, every action) is :class:`TemplatesState`.
"""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtWidgets import (QComboBox, QFileDialog, QFormLayout, QHBoxLayout, QInputDialog,
                               QLayout,
                               QLabel, QLineEdit, QListWidget, QListWidgetItem, QPlainTextEdit,
                               QPushButton, QScrollArea, QSplitter, QStyledItemDelegate,
                               QVBoxLayout, QWidget)

from mistudio.errors import UserError
from mistudio.ui.dialogs import confirm
from mistudio.ui.kit.cards import paint_card
from mistudio.ui.kit.labels import hint_label
from mistudio.ui.kit.palette import css
from mistudio.ui.templates.state import KIND_TITLES, KINDS, Card, TemplatesState

CARD_ROLE = Qt.ItemDataRole.UserRole + 1
CARD_HEIGHT = 92


def card_lines(card: Card) -> list[str]:
    used = (f"used {card.use_count}×, last {card.last_used_at[:16].replace('T', ' ')}"
            if card.use_count else "never used")
    return [card.description or "(no description)", used, card.summary]


class TemplateCardDelegate(QStyledItemDelegate):
    def sizeHint(self, option, index) -> QSize:
        return QSize(max(option.rect.width(), 260), CARD_HEIGHT)

    def paint(self, painter, option, index) -> None:
        card = index.data(CARD_ROLE)
        if card is None:
            super().paint(painter, option, index)
            return
        title = ("★ " if card.favourite else "") + card.name
        badge = "built-in, locked" if card.builtin else (
            "preset" if card.kind == "steering" else "saved")
        paint_card(painter, option, title, badge, "" if card.builtin else "ready",
                   card_lines(card))


class TemplatesTab(QWidget):
    use_template_requested = Signal(str, str)  # kind, template id or preset name

    def __init__(self, studio, bridge=None, parent: QWidget | None = None):
        super().__init__(parent)
        self.studio = studio
        self.state = TemplatesState(studio.templates, getattr(studio, "steering", None))
        self.editors: dict[str, QLineEdit] = {}

        self.kind_combo = QComboBox()
        for kind in KINDS:
            self.kind_combo.addItem(KIND_TITLES[kind], kind)
        self.kind_combo.currentIndexChanged.connect(self._on_kind)
        self.cards = QListWidget()
        self.cards.setItemDelegate(TemplateCardDelegate(self.cards))
        self.cards.setSpacing(2)
        self.cards.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.cards.currentItemChanged.connect(self._on_selected)
        self.cards.itemDoubleClicked.connect(lambda _i: self.use())

        self.use_btn = QPushButton("Use")
        self.use_btn.setToolTip("Open the Training tab, the extraction panel or the Steering "
                                "tab with these settings filled in.")
        self.use_btn.clicked.connect(self.use)
        self.fav_btn = QPushButton("☆ Favourite")
        self.fav_btn.clicked.connect(self.toggle_favourite)
        self.dup_btn = QPushButton("Duplicate")
        self.dup_btn.clicked.connect(self.duplicate)
        self.rename_btn = QPushButton("Rename...")
        self.rename_btn.clicked.connect(self.rename)
        self.delete_btn = QPushButton("Delete")
        self.delete_btn.clicked.connect(self.delete)
        self.import_btn = QPushButton("Import...")
        self.import_btn.clicked.connect(self.import_dialog)
        self.export_btn = QPushButton("Export...")
        self.export_btn.clicked.connect(lambda: self.export_dialog(bundle=False))
        self.export_all_btn = QPushButton("Export all...")
        self.export_all_btn.setToolTip("All templates of this kind in one bundle file.")
        self.export_all_btn.clicked.connect(lambda: self.export_dialog(bundle=True))

        left = QWidget()
        lv = QVBoxLayout(left)
        lv.setContentsMargins(0, 0, 0, 0)
        top = QHBoxLayout()
        top.addWidget(self.kind_combo, 1)
        top.addWidget(self.import_btn)
        top.addWidget(self.export_all_btn)
        lv.addLayout(top)
        lv.addWidget(self.cards, 1)
        row = QHBoxLayout()
        for b in (self.use_btn, self.fav_btn, self.dup_btn, self.rename_btn, self.delete_btn,
                  self.export_btn):
            row.addWidget(b)
        lv.addLayout(row)

        # ---- editor
        self.editor_title = QLabel()
        self.editor_title.setStyleSheet(css("text.strong", "font-weight: bold"))
        self.lock_note = hint_label("")
        self.description = QLineEdit()
        self.description.setPlaceholderText("What this template is for")
        self.fields_box = QWidget()
        self.fields_form = QFormLayout(self.fields_box)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.fields_box)
        self.preset_view = QPlainTextEdit()
        self.preset_view.setReadOnly(True)
        self.error = QLabel()
        self.error.setWordWrap(True)
        self.error.setStyleSheet(css("error"))
        self.message = hint_label("", small=False)
        self.save_btn = QPushButton("Save changes")
        self.save_btn.clicked.connect(self.save_edit)

        right = QWidget()
        rv = QVBoxLayout(right)
        rv.setContentsMargins(0, 0, 0, 0)
        rv.addWidget(self.editor_title)
        rv.addWidget(self.lock_note)
        desc_row = QFormLayout()
        desc_row.addRow("Description", self.description)
        rv.addLayout(desc_row)
        rv.addWidget(scroll, 1)
        rv.addWidget(self.preset_view, 1)
        rv.addWidget(self.error)
        bottom = QHBoxLayout()
        bottom.addWidget(self.message, 1)
        bottom.addWidget(self.save_btn)
        rv.addLayout(bottom)
        self._scroll = scroll

        split = QSplitter()
        split.addWidget(left)
        split.addWidget(right)
        split.setStretchFactor(0, 1)
        split.setStretchFactor(1, 1)
        layout = QVBoxLayout(self)
        layout.addWidget(hint_label(
            "Saved settings for training, extraction and steering. Built-in templates are "
            "locked: duplicate one to change it. \"Use\" opens the right tab with them filled "
            "in.", small=False))
        layout.addWidget(split, 1)
        self.reload()

    # ------------------------------------------------------------------ listing

    def _guard(self, fn, *args):
        try:
            return fn(*args)
        except UserError as exc:
            self.show_error(str(exc))
            return None

    def show_error(self, text: str) -> None:
        self.error.setText(text)
        self.message.setText("")

    def say(self, text: str) -> None:
        self.error.setText("")
        self.message.setText(text)

    def _on_kind(self, _index: int) -> None:
        self.state.selected = None
        self.reload()

    def set_kind(self, kind: str) -> None:
        self.kind_combo.setCurrentIndex(KINDS.index(kind))

    def reload(self) -> None:
        kind = self.kind_combo.currentData()
        if self._guard(self.state.load, kind) is None:
            self.cards.clear()
            return
        self.cards.blockSignals(True)
        self.cards.clear()
        current = None
        for card in self.state.cards:
            item = QListWidgetItem(card.name)
            item.setData(CARD_ROLE, card)
            item.setToolTip("\n".join(card_lines(card)))
            self.cards.addItem(item)
            if card.ref == self.state.selected:
                current = item
        if current is not None:
            self.cards.setCurrentItem(current)
        self.cards.blockSignals(False)
        self._show_selected()

    def card_names(self) -> list[str]:
        return [self.cards.item(i).data(CARD_ROLE).name for i in range(self.cards.count())]

    def select(self, ref: str) -> None:
        for i in range(self.cards.count()):
            if self.cards.item(i).data(CARD_ROLE).ref == ref:
                self.cards.setCurrentRow(i)
                return
        raise UserError(f"No template {ref!r} in the list.")

    def _on_selected(self, item, _previous=None) -> None:
        self.state.selected = item.data(CARD_ROLE).ref if item is not None else None
        self._show_selected()

    def _show_selected(self) -> None:
        self.error.setText("")
        # a fresh form per template: rows removed and re-added in place keep stale heights
        self.fields_box = QWidget()
        self.fields_form = QFormLayout(self.fields_box)
        # the scroll area must scroll, not squeeze the rows below their height
        self.fields_form.setSizeConstraint(QLayout.SizeConstraint.SetMinimumSize)
        self._scroll.setWidget(self.fields_box)
        self.editors.clear()
        card = None
        if self.state.selected is not None:
            card = self.state.card()
        has = card is not None
        for b in (self.use_btn, self.fav_btn, self.dup_btn, self.export_btn):
            b.setEnabled(has)
        self.rename_btn.setEnabled(has and not card.builtin)
        self.delete_btn.setEnabled(has and not card.builtin)
        self.export_all_btn.setEnabled(bool(self.state.cards))
        if not has:
            self.editor_title.setText("No template chosen")
            self.lock_note.setText("")
            self.description.setText("")
            self.preset_view.hide()
            self._scroll.hide()
            self.save_btn.setEnabled(False)
            return
        self.fav_btn.setText("★ Favourite" if card.favourite else "☆ Favourite")
        self.editor_title.setText(card.name)
        self.description.setText(card.description)
        if card.kind == "steering":
            import json

            self._scroll.hide()
            self.preset_view.show()
            self.preset_view.setPlainText(json.dumps(self.state.settings(), indent=2))
            self.description.setReadOnly(True)
            self.save_btn.setEnabled(False)
            self.lock_note.setText("A preset's interventions are edited in the Steering tab: "
                                   "Use it, change it there and save it again.")
            return
        self.preset_view.hide()
        self._scroll.show()
        locked = card.builtin
        self.description.setReadOnly(locked)
        self.save_btn.setEnabled(not locked)
        self.lock_note.setText("Built-in: locked. Duplicate it to make an editable copy."
                               if locked else "Blank fields take the default (shown in grey).")
        for f in self.state.editor_fields():
            edit = QLineEdit(f.text)
            edit.setPlaceholderText(f.default)
            edit.setReadOnly(locked)
            edit.setToolTip(f"{f.help}\n(setting '{f.key}')")
            self.editors[f.key] = edit
            label = QLabel(f.label)
            label.setToolTip(f.key)
            self.fields_form.addRow(label, edit)

    # ------------------------------------------------------------------ actions

    def save_edit(self) -> bool:
        texts = {key: edit.text() for key, edit in self.editors.items()}
        ok = self._guard(self.state.save_edit, texts, self.description.text())
        if ok is None:
            return False
        self.reload()
        self.say("Saved.")
        return True

    def use(self) -> None:
        result = self._guard(self.state.use)
        if result is not None:
            self.reload()
            self.use_template_requested.emit(*result)

    def toggle_favourite(self) -> None:
        if self._guard(self.state.toggle_favourite) is not None:
            self.reload()

    def duplicate(self) -> None:
        if self._guard(self.state.duplicate) is not None:
            self.reload()
            self.say(f"Duplicated as '{self.state.card().name}'.")

    def rename(self, new_name: str | None = None) -> None:
        if self.state.selected is None:
            return
        if not new_name:
            new_name = self._ask_text("Rename", "New name", self.state.card().name)
            if not new_name:
                return
        if self._guard(self.state.rename, new_name) is not None:
            self.reload()

    def delete(self) -> None:
        if self.state.selected is None:
            return
        card = self.state.card()
        if not self._confirm("Delete template", f"Delete '{card.name}'? This cannot be undone."):
            return
        self._guard(self.state.delete)
        self.reload()

    def import_dialog(self, path: str | None = None) -> None:
        path = path or self._ask_open_path()
        if not path:
            return
        names = self._guard(self.state.import_file, path)
        if names is not None:
            self.reload()
            self.say(f"Imported {len(names)} template(s).")

    def export_dialog(self, path: str | None = None, *, bundle: bool = False) -> None:
        refs = [c.ref for c in self.state.cards] if bundle else None
        path = path or self._ask_save_path()
        if not path:
            return
        written = self._guard(self.state.export, path, refs)
        if written is not None:
            self.say(f"Exported to {written}.")

    # ------------------------------------------------------------------ dialogs (tests patch)

    def _ask_text(self, title: str, label: str, text: str) -> str:
        value, ok = QInputDialog.getText(self, title, label, text=text)
        return value if ok else ""

    def _confirm(self, title: str, message: str) -> bool:
        return confirm(self, title, message, destructive=True)

    def _ask_open_path(self) -> str:
        path, _ = QFileDialog.getOpenFileName(self, "Import templates", "", "JSON (*.json)")
        return path

    def _ask_save_path(self) -> str:
        path, _ = QFileDialog.getSaveFileName(self, "Export templates", "templates.json",
                                              "JSON (*.json)")
        return path
