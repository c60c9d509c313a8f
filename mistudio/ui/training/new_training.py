"""The "New training" page: templates, activation set, the settings form, estimate, Start."""

from __future__ import annotations

import os

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (QComboBox, QFileDialog, QHBoxLayout, QInputDialog, QLabel,
                               QLineEdit, QMessageBox, QPushButton, QScrollArea, QToolButton,
                               QVBoxLayout, QWidget)

from mistudio.errors import UserError
from mistudio.ui.training.form import TrainingForm, describe_estimate
from mistudio.ui.kit.palette import css, span
from mistudio.ui.kit.labels import hint_label

# The data and its provenance: chosen on this page, never carried over by a template.
DATA_KEYS = {"name", "activation_id", "activation_path", "target_activation_id",
             "target_activation_path", "member_name", "model_name", "hook_name",
             "hook_name_out", "onthefly_model", "onthefly_tokenization"}
FOLDER_ITEM = "__folder__"
EXTRACT_ITEM = "__extract__"
ONTHEFLY_ITEM = "__onthefly__"  # train from the model's activations, nothing written
PLACEHOLDER_PATH = "(extracted first)"  # validates a config whose activations do not exist yet


class NewTrainingPanel(QWidget):
    """Emits ``start_requested(config, activation_path, title)`` when the settings are valid,
    or ``extract_then_train_requested(extraction, config, title)`` when "Extract first" is
    chosen (extraction: model, tokenization, hook_name, max_tokens)."""

    start_requested = Signal(dict, str, str)
    extract_then_train_requested = Signal(dict, dict, str)

    def __init__(self, studio, parent: QWidget | None = None):
        super().__init__(parent)
        self.studio = studio
        self.activation_path = ""
        self._hw = None
        self.problem = ""
        self.verdict = ""
        # The combo's first entry stands for settings that are no template's (as they are).
        self.custom_text = "Default settings"
        self.template_settings: dict = {}  # a template's settings that have no form field
        self._applying = False

        # --- templates
        self.template_combo = QComboBox()
        self.template_combo.setMinimumWidth(220)
        self.template_combo.setToolTip("Built-in recipes and your saved templates (★ favourites)")
        # Choosing a template fills the form; this puts its settings back after edits.
        self.apply_btn = QPushButton("Reapply")
        self.apply_btn.setToolTip("Put the selected template's settings back into the form")
        self.apply_btn.clicked.connect(self.apply_selected_template)
        self.fav_btn = QToolButton(text="☆")
        self.fav_btn.setToolTip("Favourite: listed first")
        self.fav_btn.clicked.connect(self._toggle_favourite)
        self.save_btn = QPushButton("Save as template…")
        self.save_btn.clicked.connect(self._save_template_dialog)
        self.more_btn = QToolButton(text="More ▾")
        self.more_btn.setPopupMode(QToolButton.InstantPopup)
        from PySide6.QtWidgets import QMenu

        menu = QMenu(self.more_btn)
        menu.addAction("Import templates…", self._import_dialog)
        self.export_template_act = menu.addAction("Export this template…",
                                                  self._export_dialog)
        self.delete_template_act = menu.addAction("Delete this template…",
                                                  self._delete_template)
        self.more_btn.setMenu(menu)
        self.template_combo.currentIndexChanged.connect(self._on_template_chosen)
        tbar = QHBoxLayout()
        tbar.addWidget(QLabel("Template:"))
        tbar.addWidget(self.template_combo, 1)
        for w in (self.apply_btn, self.fav_btn, self.save_btn, self.more_btn):
            tbar.addWidget(w)
        self.template_desc = hint_label()

        # --- data and name
        self.data_combo = QComboBox()
        self.data_combo.setToolTip("The activations to train on (extract them in the Models tab)")
        self.data_combo.currentIndexChanged.connect(self._on_data_changed)
        self.name_edit = QLineEdit()
        self.name_edit.setPlaceholderText("name (optional)")
        dbar = QHBoxLayout()
        dbar.addWidget(QLabel("Activations:"))
        dbar.addWidget(self.data_combo, 1)
        dbar.addWidget(QLabel("Name:"))
        dbar.addWidget(self.name_edit)
        self.data_info = hint_label(wrap=False)
        self.extract_box = None  # built when "Extract first" is chosen

        self.form = TrainingForm()
        self.form.changed.connect(self._schedule_validate)
        self.form.changed.connect(self._follow_template)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.form)

        self.estimate_label = QLabel()
        self.estimate_label.setWordWrap(True)
        self.estimate_label.setTextFormat(Qt.RichText)
        self.problem_label = QLabel()
        self.problem_label.setWordWrap(True)
        self.problem_label.setObjectName("problem")
        self.problem_label.setStyleSheet(css("error"))
        self.start_btn = QPushButton("Start training")
        self.start_btn.setDefault(True)
        self.start_btn.clicked.connect(self.start)
        bottom = QHBoxLayout()
        bottom.addWidget(self.problem_label, 1)
        bottom.addWidget(self.start_btn)

        lay = QVBoxLayout(self)
        lay.addLayout(tbar)
        lay.addWidget(self.template_desc)
        lay.addLayout(dbar)
        lay.addWidget(self.data_info)
        self._extract_index = lay.count()
        lay.addWidget(scroll, 1)
        lay.addWidget(self.estimate_label)
        lay.addLayout(bottom)

        self._validate_timer = QTimer(self)
        self._validate_timer.setSingleShot(True)
        self._validate_timer.setInterval(150)
        self._validate_timer.timeout.connect(self.validate)

        self.reload_templates()
        self.reload_activation_sets()
        last = self.studio.templates.last_used()
        if last:
            self.load_config(last, label="Last used settings")
        self.validate()

    def shutdown(self) -> None:
        """Stop the pending validation (the tab is closing)."""
        self._validate_timer.stop()

    # ------------------------------------------------------------------ templates

    def reload_templates(self, select_id: str | None = None) -> None:
        """Refill the list, keeping (or selecting, without applying) ``select_id``."""
        current = select_id or self.template_combo.currentData()
        self.template_combo.blockSignals(True)
        self.template_combo.clear()
        self.template_combo.addItem(self.custom_text, "")
        self.template_combo.setItemData(0, "The settings in the form, from no template "
                                        "(or changed since one was chosen)", Qt.ToolTipRole)
        for t in self.studio.templates.list(favourites_first=True):
            star = "★ " if t.favourite else ""
            mine = "" if t.builtin else "  (saved)"
            self.template_combo.addItem(f"{star}{t.name}{mine}", t.id)
        i = self.template_combo.findData(current) if current else -1
        self.template_combo.setCurrentIndex(max(0, i))
        self.template_combo.blockSignals(False)
        self._update_template_buttons()

    def selected_template(self):
        tid = self.template_combo.currentData()
        return self.studio.templates.get(tid) if tid else None

    def select_template(self, template_id: str) -> None:
        """Choose a template as the user does: the form takes its settings."""
        i = self.template_combo.findData(template_id)
        if i < 0:
            raise UserError(f"No training template {template_id!r} in the list.")
        if i == self.template_combo.currentIndex():
            self.apply_selected_template()
        else:
            self.template_combo.setCurrentIndex(i)  # applies through _on_template_chosen

    def _on_template_chosen(self, _index: int = -1) -> None:
        self._update_template_buttons()
        if self.selected_template() is not None:
            self.apply_selected_template()

    def _set_custom_text(self, text: str) -> None:
        self.custom_text = text
        self.template_combo.setItemText(0, text)

    def _update_template_buttons(self) -> None:
        t = self.selected_template()
        self.fav_btn.setText("★" if t and t.favourite else "☆")
        self.fav_btn.setEnabled(t is not None)
        self.apply_btn.setEnabled(t is not None)
        self.delete_template_act.setEnabled(bool(t and not t.builtin))
        self.export_template_act.setEnabled(t is not None)
        if t is not None:
            self.template_desc.setText(t.description)
        elif not self.template_desc.text().startswith("Changed from"):
            self.template_desc.setText("")

    def apply_selected_template(self) -> list[str]:
        """Fill the form with the selected template over the defaults; returns the template's
        settings this version does not know (left out)."""
        t = self.selected_template()
        if t is None:
            return []
        import dataclasses

        from mistudio.sae.config import TrainingConfig

        known = {f.name for f in dataclasses.fields(TrainingConfig)}
        merged, ignored = self.studio.templates.merge(self.form.defaults.to_dict(), t, known)
        # Keep the chosen data and device: a template describes the recipe, not the machine.
        current, _ = self.form.config()
        for key in ("device", "dtype"):
            if key not in t.settings and key in current:
                merged[key] = current[key]
        # Settings without a field (init_seed, compile_backend...) still go with the run.
        self.template_settings = {k: v for k, v in t.settings.items() if k in known
                                  and k not in self.form.editors and k not in DATA_KEYS
                                  and k != "sweep"}
        self._applying = True
        try:
            self.form.set_config(merged, lr_given="lr" in t.settings)
        finally:
            self._applying = False
        self._set_custom_text("Custom settings")
        extra = ", ".join(f"{k} = {v}" for k, v in self.template_settings.items())
        self.template_desc.setText(t.description + (
            f"  (also sets, without a field here: {extra})" if extra else "") + (
            f"  (ignored settings this version does not know: {', '.join(ignored)})"
            if ignored else ""))
        return ignored

    def _follow_template(self) -> None:
        """After an edit, the combo names a template only while the form holds its settings;
        otherwise it switches to "Custom (changed from ...)" and says what differs."""
        if self._applying:
            return
        t = self.selected_template()
        if t is None:
            return
        from mistudio.sae.config import setting_info
        from mistudio.templates.differences import template_differences

        current, _ = self.form.config()
        diffs = template_differences(current, t, compared=[*self.form.editors, "sweep"])
        if not diffs:
            return
        # The recipe's settings without a field stay: the form is the template plus edits.
        self.template_combo.blockSignals(True)
        self.template_combo.setCurrentIndex(0)
        self.template_combo.blockSignals(False)
        self._set_custom_text(f"Custom (changed from {t.name})")
        self._update_template_buttons()
        self.template_desc.setText("Changed from the template: " + "; ".join(
            f"{setting_info(k).label} {_short(old)} → {_short(new)}"
            for k, old, new in diffs[:6]) + ("; ..." if len(diffs) > 6 else "") + (
            "  (still set, without a field here: " + ", ".join(
                f"{k} = {v}" for k, v in self.template_settings.items()) + ")"
            if self.template_settings else ""))

    def _toggle_favourite(self) -> None:
        t = self.selected_template()
        if t:
            self.studio.templates.set_favourite(t.id, not t.favourite)
            self.reload_templates(t.id)

    def save_template(self, name: str, *, overwrite: bool = False):
        config, problems = self.form.config()
        config = {**self.template_settings, **config}  # with the settings that have no field
        if problems:
            raise UserError("Some settings cannot be read: " + " ".join(problems),
                            hint="Fix them before saving a template.")
        t = self.studio.templates.save(name, config, overwrite=overwrite,
                                       description="Saved from the training form.")
        self.reload_templates(t.id)
        return t

    def _save_template_dialog(self) -> None:
        name, ok = QInputDialog.getText(self, "Save as template", "Template name:")
        if not ok or not name.strip():
            return
        try:
            overwrite = False
            if self.studio.templates.find_saved(name) is not None:
                overwrite = QMessageBox.question(
                    self, "Replace template?", f"A template called '{name}' exists. Replace it?"
                ) == QMessageBox.Yes
                if not overwrite:
                    return
            self.save_template(name, overwrite=overwrite)
        except UserError as exc:
            QMessageBox.warning(self, "Cannot save the template", str(exc))

    def _import_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Import training templates", "",
                                              "JSON (*.json)")
        if not path:
            return
        try:
            saved = self.studio.templates.import_file(path)
        except UserError as exc:
            QMessageBox.warning(self, "Cannot import", str(exc))
            return
        self.reload_templates()
        if saved:
            self.select_template(saved[0].id)
        QMessageBox.information(self, "Imported", "Imported: " + ", ".join(t.name for t in saved))

    def _export_dialog(self) -> None:
        t = self.selected_template()
        if t is None:
            return
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in t.name)
        path, _ = QFileDialog.getSaveFileName(self, "Export template", f"{safe}.json",
                                              "JSON (*.json)")
        if path:
            try:
                self.studio.templates.export([t.id], path)
            except (UserError, OSError) as exc:
                QMessageBox.warning(self, "Cannot export", str(exc))

    def _delete_template(self) -> None:
        t = self.selected_template()
        if t and not t.builtin and QMessageBox.question(
                self, "Delete template?", f"Delete the template '{t.name}'?") == QMessageBox.Yes:
            self.studio.templates.delete(t.id)
            self.reload_templates()

    # ------------------------------------------------------------------ data

    def reload_activation_sets(self) -> None:
        current = self.data_combo.currentData()
        self.data_combo.blockSignals(True)
        self.data_combo.clear()
        self.data_combo.addItem("— choose an activation set —", "")
        try:
            sets = self.studio.activations.list(status="ready")
        except Exception:  # the activations area may be missing in a partial install
            sets = []
        for s in sets:
            shape = f"{s.d_in} × {s.num_rows:,}" if s.d_in and s.num_rows else ""
            self.data_combo.addItem(f"{s.name or s.id} · {s.hook_name} · {shape}",
                                    f"id:{s.id}")
        if self.activation_path:
            self.data_combo.addItem(f"Folder: {self.activation_path}",
                                    f"path:{self.activation_path}")
        self.data_combo.addItem("Choose a folder…", FOLDER_ITEM)
        self.data_combo.addItem("Extract first from a model…", EXTRACT_ITEM)
        self.data_combo.setItemData(self.data_combo.count() - 1,
                                    "No activation set yet: choose a model, a tokenized dataset "
                                    "and a hook point; the training starts when the extraction "
                                    "completes.", Qt.ToolTipRole)
        self.data_combo.addItem("Train on the fly from a model…", ONTHEFLY_ITEM)
        self.data_combo.setItemData(self.data_combo.count() - 1,
                                    "Compute the activations as training goes (model + "
                                    "tokenized dataset + hook point); nothing is written to "
                                    "disk, each epoch runs the model again.", Qt.ToolTipRole)
        i = self.data_combo.findData(current) if current else -1
        if i < 0 and len(sets) == 1 and not self.activation_path:
            i = 1  # exactly one set: that is the one to train on
        self.data_combo.setCurrentIndex(max(0, i))
        self.data_combo.blockSignals(False)
        self._on_data_changed()

    def set_activation_folder(self, path: str) -> None:
        self.activation_path = str(path)
        self.reload_activation_sets()
        self.data_combo.setCurrentIndex(self.data_combo.findData(f"path:{path}"))

    def _on_data_changed(self) -> None:
        data = self.data_combo.currentData() or ""
        if data == FOLDER_ITEM:
            path = QFileDialog.getExistingDirectory(self, "Activation set folder")
            if path:
                self.set_activation_folder(path)
            else:
                self.data_combo.setCurrentIndex(0)
            return
        d_in = num_rows = None
        self.data_info.setText("")
        onthefly = data == ONTHEFLY_ITEM
        extracting = data == EXTRACT_ITEM or onthefly
        if extracting:
            existed = self.extract_box is not None
            self.extract_first(select=False)  # builds the box
            if existed:
                self.extract_box.reload()  # models and tokenizations added since
            self.extract_box.set_on_the_fly(onthefly)
        if self.extract_box is not None:
            self.extract_box.setVisible(extracting)
        self.start_btn.setText("Start training (on the fly)" if onthefly else
                               "Extract, then train" if extracting else "Start training")
        if extracting:
            self.data_info.setText(
                "The activations are computed from the model as training goes; nothing is "
                "written to disk." if onthefly else "The activations are extracted first; the "
                "training starts when the extraction completes.")
            self.form.set_data_shape(self.extract_box.d_in(), self.extract_box.expected_rows())
            return
        folder = self._data_folder()
        if folder:
            try:
                from mistudio.activations.format import ActivationSet

                s = ActivationSet(folder)
                d_in, num_rows = s.d_in, s.num_rows
                hook = s.hook_name
                model = s.meta.get("model_name") or s.meta.get("model_id") or ""
                self.data_info.setText(f"{num_rows:,} tokens of width {d_in}"
                                       + (f" · {model}" if model else "")
                                       + (f" · {hook}" if hook else ""))
            except UserError as exc:
                self.data_info.setText(span("error", str(exc)))
        self.form.set_data_shape(d_in, num_rows)

    def on_the_fly(self):
        """Choose "Train on the fly" and return its box (model, tokenization, hook)."""
        self.extract_first(select=False)
        i = self.data_combo.findData(ONTHEFLY_ITEM)
        if self.data_combo.currentIndex() != i:
            self.data_combo.setCurrentIndex(i)
        return self.extract_box

    def training_on_the_fly(self) -> bool:
        return (self.data_combo.currentData() or "") == ONTHEFLY_ITEM

    def extract_first(self, select: bool = True):
        """Choose "Extract first" and return its box (model, tokenization, hook, tokens)."""
        if self.extract_box is None:
            from mistudio.ui.training.extract_first import ExtractFirstBox

            self.extract_box = ExtractFirstBox(self.studio)
            self.extract_box.changed.connect(self._on_extract_changed)
            self.layout().insertWidget(self._extract_index, self.extract_box)
        i = self.data_combo.findData(EXTRACT_ITEM)
        if select and self.data_combo.currentIndex() != i:
            self.data_combo.setCurrentIndex(i)  # comes back here through _on_data_changed
        return self.extract_box

    def extracting(self) -> bool:
        return (self.data_combo.currentData() or "") == EXTRACT_ITEM

    def _on_extract_changed(self) -> None:
        if self.extracting() or self.training_on_the_fly():
            self.form.set_data_shape(self.extract_box.d_in(), self.extract_box.expected_rows())

    def _data_folder(self) -> str:
        data = self.data_combo.currentData() or ""
        if data.startswith("id:"):
            try:
                return str(self.studio.activations.get(data[3:]).folder)
            except UserError:
                return ""
        if data.startswith("path:"):
            return data[5:]
        return ""

    # ------------------------------------------------------------------ config

    def load_config(self, config: dict, label: str = "Custom settings") -> None:
        """Fill the form (last-used settings, a duplicated training); the template list then
        shows ``label``, since these settings are no template's."""
        import dataclasses

        from mistudio.sae.config import TrainingConfig

        known = {f.name for f in dataclasses.fields(TrainingConfig)}
        config = {k: v for k, v in config.items() if k in known}
        self.template_combo.blockSignals(True)
        self.template_combo.setCurrentIndex(0)
        self.template_combo.blockSignals(False)
        self._set_custom_text(label)
        self._update_template_buttons()
        self.template_settings = {k: v for k, v in config.items() if k not in self.form.editors
                                  and k not in DATA_KEYS and k != "sweep"}
        path = config.get("activation_path")
        if config.get("activation_id"):
            i = self.data_combo.findData(f"id:{config['activation_id']}")
            if i >= 0:
                self.data_combo.setCurrentIndex(i)
        elif path and os.path.isdir(path):
            self.set_activation_folder(path)
        self.name_edit.setText(config.get("name", ""))
        self.form.set_config(config)

    def full_config(self) -> tuple[dict, list[str]]:
        config, problems = self.form.config()
        data = self.data_combo.currentData() or ""
        if data.startswith("id:"):
            config["activation_id"] = data[3:]
        elif data.startswith("path:"):
            config["activation_path"] = data[5:]
        elif data == ONTHEFLY_ITEM and self.extract_box is not None:
            chosen, _ = self.extract_box.settings()
            config.update(onthefly_model=chosen["model"],
                          onthefly_tokenization=chosen["tokenization"],
                          hook_name=chosen["hook_name"])
        config["name"] = self.name_edit.text().strip()
        return {**self.template_settings, **config}, problems

    def _schedule_validate(self) -> None:
        self._validate_timer.start()

    def validate(self) -> str:
        """Check the settings as the job will; show the first problem and the estimate."""
        from mistudio.sae.config import TrainingConfig

        config, problems = self.full_config()
        if self.extracting():
            config["activation_path"] = PLACEHOLDER_PATH
            problems = self.extract_box.settings()[1] + problems
        elif self.training_on_the_fly():
            problems = self.extract_box.settings()[1] + problems
        problem = problems[0] if problems else ""
        if not problem:
            try:
                TrainingConfig.from_dict(config).validate(d_in=self.form.d_in,
                                                          num_rows=self.form.num_rows)
            except UserError as exc:
                problem = str(exc)
        self.problem = problem
        self.problem_label.setText(problem)
        self.start_btn.setEnabled(not problem)
        self._update_estimate(config)
        return problem

    def _hardware(self):
        if self._hw is None:
            from mistudio.hardware import probe_fast

            self._hw = probe_fast()
        return self._hw

    def _update_estimate(self, config: dict) -> None:
        hw = self._hardware()
        device = config.get("device", "auto")
        on_gpu = bool(hw.gpus) and device in ("auto", "cuda")
        dtype = config.get("dtype", "auto")
        if dtype == "auto":
            dtype = "bfloat16" if on_gpu else "float32"
        if on_gpu:
            g = hw.gpus[0]
            avail = hw.ram_available_bytes if hw.jetson else g.free_bytes
            where = g.name
        else:
            avail, where = hw.ram_available_bytes, f"the CPU ({hw.cpu_count} cores)"
        est = self.form.estimate("cuda" if on_gpu else "cpu", dtype, hw.cpu_count)
        text, verdict = describe_estimate(est, avail, where)
        self.estimate_label.setText(text)
        self.verdict = verdict

    def start(self) -> bool:
        if self.validate():
            return False
        config, _ = self.full_config()
        if getattr(self, "verdict", "") == "won't fit" and QMessageBox.question(
                self, "Probably too large",
                "The estimate says this training will not fit in memory. Start anyway?"
        ) != QMessageBox.Yes:
            return False
        self.studio.templates.remember_last_used(config)
        if self.extracting():
            extraction, _ = self.extract_box.settings()
            self.extract_then_train_requested.emit(extraction, config, config.get("name", ""))
            return True
        path = config.get("activation_path", "") or self._data_folder()
        self.start_requested.emit(config, path, config.get("name", ""))
        return True


def _short(value) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)
