"""Presets and generation history: the two lists under the outputs."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QFileDialog, QHBoxLayout, QInputDialog, QLabel, QListWidget,
                               QListWidgetItem, QPushButton, QVBoxLayout, QWidget)

from mistudio.errors import UserError

ID_ROLE = Qt.ItemDataRole.UserRole


class ServicePanel(QWidget):
    """A list that needs the steering service, which the tab builds on its worker thread: the
    panel stays disabled until ``set_service``; its first rows may come from that worker
    (``show_first``), later reloads read here (a save, a delete: a few rows)."""

    def __init__(self, service, parent=None):
        super().__init__(parent)
        self.service = service
        self.reloads = 0  # a first read older than a reload here is dropped

    def set_service(self, service) -> None:
        self.service = service
        self.setEnabled(True)

    def reload(self) -> None:
        if self.service is not None:
            self.reloads += 1
            self.show_rows(self.read())

    def show_first(self, rows: list, reloads: int) -> None:
        """Rows read on the worker when the panel had seen ``reloads`` reloads."""
        if reloads == self.reloads:
            self.show_rows(rows)

    def read(self) -> list:  # any thread
        raise NotImplementedError

    def show_rows(self, rows: list) -> None:
        raise NotImplementedError


class PresetsPanel(ServicePanel):
    """Save the current interventions under a name, apply, import/export JSON, delete."""

    apply_requested = Signal(object)  # a Preset, already checked against the current SAE
    message = Signal(str)

    def __init__(self, service, current, parent=None):
        """``current()`` -> (sae_id, interventions, scope) of the tab; ``service`` may be
        None until ``set_service``."""
        super().__init__(service, parent)
        self.current = current
        lay = QVBoxLayout(self)
        self.list = QListWidget()
        self.list.itemDoubleClicked.connect(lambda _i: self.apply_selected())
        lay.addWidget(self.list, 1)
        row = QHBoxLayout()
        for text, fn in (("Save current…", self.save_current), ("Apply", self.apply_selected),
                         ("Import…", self.import_file), ("Export…", self.export_selected),
                         ("Delete", self.delete_selected)):
            b = QPushButton(text)
            b.clicked.connect(lambda _=False, fn=fn: self._guard(fn))
            row.addWidget(b)
        lay.addLayout(row)
        self.setEnabled(service is not None)
        self.reload()

    def _guard(self, fn) -> None:
        try:
            fn()
        except UserError as exc:
            self.message.emit(str(exc))

    def read(self) -> list:
        return self.service.presets()

    def show_rows(self, rows: list) -> None:
        self.list.clear()
        for p in rows:
            labels = ", ".join(i.label for i in p.interventions)
            item = QListWidgetItem(f"{p.name}  —  {labels}  ({p.sae.name or p.sae.sae_id}, "
                                   f"{p.sae.hook_name})")
            item.setData(ID_ROLE, p.name)
            self.list.addItem(item)

    def selected(self) -> str:
        item = self.list.currentItem()
        if item is None:
            raise UserError("Pick a preset in the list first.")
        return item.data(ID_ROLE)

    def save_current(self, name: str | None = None) -> None:
        sae_id, ivs, scope = self.current()
        if not sae_id:
            raise UserError("Pick an SAE first.")
        if name is None:
            name, ok = QInputDialog.getText(self, "Save preset", "Preset name:")
            if not ok:
                return
        self.service.save_preset(name, sae_id, ivs, scope=scope)
        self.reload()
        self.message.emit(f"Saved preset {name!r}.")

    def apply_selected(self) -> None:
        sae_id, _ivs, _scope = self.current()
        preset = self.service.preset_for(self.selected(), sae_id)
        self.apply_requested.emit(preset)

    def import_file(self, path: str | None = None) -> None:
        if path is None:
            path, _ = QFileDialog.getOpenFileName(self, "Import preset", "", "JSON (*.json)")
            if not path:
                return
        def load():  # a bad file is a message in the tab, never an exception in a slot
            preset = self.service.import_preset(path)
            self.reload()
            self.message.emit(f"Imported preset {preset.name!r}.")

        self._guard(load)

    def export_selected(self, path: str | None = None) -> None:
        name = self.selected()
        if path is None:
            path, _ = QFileDialog.getSaveFileName(self, "Export preset", f"{name}.json",
                                                  "JSON (*.json)")
            if not path:
                return
        out = self.service.export_preset(name, path)
        self.message.emit(f"Exported to {out}.")

    def delete_selected(self) -> None:
        self.service.delete_preset(self.selected())
        self.reload()


class HistoryPanel(ServicePanel):
    """Past generations, newest first: open (outputs + settings), re-run, delete."""

    open_requested = Signal(str)
    rerun_requested = Signal(str)
    message = Signal(str)

    def __init__(self, service, parent=None):
        super().__init__(service, parent)
        lay = QVBoxLayout(self)
        self.list = QListWidget()
        self.list.itemDoubleClicked.connect(
            lambda item: self.open_requested.emit(item.data(ID_ROLE)))
        lay.addWidget(self.list, 1)
        row = QHBoxLayout()
        for text, fn in (("Open", lambda: self.open_requested.emit(self.selected())),
                         ("Re-run", lambda: self.rerun_requested.emit(self.selected())),
                         ("Delete", self.delete_selected)):
            b = QPushButton(text)
            b.clicked.connect(lambda _=False, fn=fn: self._guard(fn))
            row.addWidget(b)
        self.count = QLabel("")
        row.addWidget(self.count, 1)
        lay.addLayout(row)
        self.setEnabled(service is not None)
        self.reload()

    def _guard(self, fn) -> None:
        try:
            fn()
        except UserError as exc:
            self.message.emit(str(exc))

    def read(self) -> list:
        return self.service.history(200)

    def show_rows(self, rows: list) -> None:
        self.list.clear()
        for rec in rows:
            item = QListWidgetItem(f"{rec.created_at[:19].replace('T', ' ')}  ·  {rec.status}"
                                   f"  ·  {rec.model_name}  ·  {rec.title}")
            item.setData(ID_ROLE, rec.id)
            self.list.addItem(item)
        self.count.setText(f"{len(rows)} generation{'s' if len(rows) != 1 else ''}")

    def selected(self) -> str:
        item = self.list.currentItem()
        if item is None:
            raise UserError("Pick a generation in the list first.")
        return item.data(ID_ROLE)

    def delete_selected(self) -> None:
        self.service.delete(self.selected())
        self.reload()
