"""The Steering tab: pick features, set coefficients, generate baseline and steered outputs
side by side (streamed token by token), read the metrics, keep presets and history.

Generation is a ``steering.generate`` job on the queue's worker thread; the tab polls the
streamed tokens every 50 ms and renders them; Stop cancels between two tokens.

The steering service is built on the tab's worker thread by its first read (building it
imports the feature-analysis modules, 25-110 ms); the models and the SAEs that fit one
(hundreds of SAEs and trainings in a large data folder, ~50 ms), the presets and history, and
the feature list (a search through an analysis of 65,536 features, up to 0.2 s) are read
there too (``BackgroundCalls``: a newer request of the same key drops an older one). A
feature opened from the Features tab shows at once as pending (its SAE in the combo, its row
in the table) and its model's SAEs follow from the worker. A preset or a past generation
reads them with ``wait=True``.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import (QCheckBox, QComboBox, QDoubleSpinBox, QFormLayout, QGroupBox,
                               QHBoxLayout, QLabel, QLineEdit, QListWidget, QListWidgetItem,
                               QPlainTextEdit, QPushButton, QScrollArea, QSpinBox, QSplitter,
                               QTabWidget, QVBoxLayout, QWidget)

from mistudio.errors import UserError, describe_exception
from mistudio.ui.kit import palette
from mistudio.ui.kit.background import BackgroundCalls
from mistudio.ui.steering.handoff import FeatureHandoff
from mistudio.ui.steering.interventions_table import InterventionsTable
from mistudio.ui.steering.library import HistoryPanel, PresetsPanel
from mistudio.ui.steering.outputs import MetricsTable, OutputsView
from mistudio.ui.steering.state import SteeringState

UNIT_CHOICES = [("raw", "raw"), ("× max activation", "max"), ("× residual norm", "norm")]
SCOPE_CHOICES = [("all positions", "all"), ("prompt only", "prompt"),
                 ("generated tokens only", "generated")]
FEATURE_ROLE = Qt.ItemDataRole.UserRole


class SteeringTab(FeatureHandoff, QWidget):
    def __init__(self, studio, bridge, parent: QWidget | None = None):
        super().__init__(parent)
        self.studio = studio
        self.bridge = bridge
        self._service = None  # built by the first read, on the worker (see ``service``)
        self._handoff: tuple | None = None  # (sae_id, feature, previous state) being read
        self._generate_when_ready = False  # Generate pressed while a handoff was read
        self.state = SteeringState()
        self._syncing = False
        self._calls = BackgroundCalls(self, name="steering-tab")
        self.loaded = False  # the models and SAEs were read once (tests wait for it)
        self.timer = QTimer(self)
        self.timer.setInterval(50)
        self.timer.timeout.connect(self._poll)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(self._build_controls())
        split.addWidget(self._build_outputs())
        split.setStretchFactor(0, 0)
        split.setStretchFactor(1, 1)
        split.setSizes([490, 900])
        lay = QVBoxLayout(self)
        lay.addWidget(split)
        if bridge is not None:
            bridge.status.connect(self._on_status)
        # Read once the tab has painted (a zero timer runs after the paint request; a worker
        # starting and reading beside the first paint made it late).
        self._first_read = QTimer(self)
        self._first_read.setSingleShot(True)
        self._first_read.timeout.connect(
            lambda: self.loaded or self._handoff is not None or self.reload_models())
        self._first_read.start(0)

    # ================================================================== building

    def _build_controls(self) -> QWidget:
        box = QWidget()
        lay = QVBoxLayout(box)
        form = QFormLayout()
        self.model_combo = QComboBox()
        self.model_combo.currentIndexChanged.connect(lambda _i: self._model_changed())
        self.sae_combo = QComboBox()
        self.sae_combo.currentIndexChanged.connect(lambda _i: self._sae_changed())
        form.addRow("Model", self.model_combo)
        form.addRow("SAE", self.sae_combo)
        lay.addLayout(form)
        self.prompt = QPlainTextEdit()
        self.prompt.setPlaceholderText("Prompt: the text both columns continue")
        self.prompt.setMaximumHeight(90)
        lay.addWidget(self.prompt)
        run = QHBoxLayout()
        self.generate_btn = QPushButton("Generate")
        self.generate_btn.setDefault(True)
        self.generate_btn.clicked.connect(self.generate)
        self.stop_btn = QPushButton("Stop")
        self.stop_btn.setEnabled(False)
        self.stop_btn.clicked.connect(self.stop)
        run.addWidget(self.generate_btn)
        run.addWidget(self.stop_btn)
        lay.addLayout(run)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        lay.addWidget(self.status)

        pick = QGroupBox("Features")
        pl = QVBoxLayout(pick)
        self.search = QLineEdit()
        self.search.setPlaceholderText("Search by index, label or top token…")
        self.search.textChanged.connect(lambda _t: self.refresh_features())
        self.feature_list = QListWidget()
        self.feature_list.setMaximumHeight(120)
        self.feature_list.itemDoubleClicked.connect(lambda _i: self.add_selected("add"))
        buttons = QHBoxLayout()
        for text, kind in (("Add", "add"), ("Clamp", "clamp"), ("Ablate", "ablate")):
            b = QPushButton(text)
            b.clicked.connect(lambda _=False, kind=kind: self.add_selected(kind))
            buttons.addWidget(b)
        contrast = QPushButton("Contrastive…")
        contrast.setToolTip("Steer with the mean difference of two prompt sets' activations")
        contrast.clicked.connect(self._contrast_dialog)
        buttons.addWidget(contrast)
        self.analysis_note = QLabel("")
        self.analysis_note.setWordWrap(True)
        self.analysis_note.setStyleSheet(palette.css("text.muted"))
        pl.addWidget(self.search)
        pl.addWidget(self.feature_list)
        pl.addLayout(buttons)
        pl.addWidget(self.analysis_note)
        self.table = InterventionsTable()
        self.table.setMinimumHeight(110)
        self.table.removed.connect(self._render_rows)
        pl.addWidget(self.table)
        units_form = QFormLayout()
        self.units = QComboBox()
        for label, key in UNIT_CHOICES:
            self.units.addItem(label, key)
        self.units.currentIndexChanged.connect(lambda _i: self._units_changed())
        self.units_note = QLabel("")
        self.units_note.setWordWrap(True)
        self.units_note.setStyleSheet(palette.css("text.muted"))
        self.scope = QComboBox()
        for label, key in SCOPE_CHOICES:
            self.scope.addItem(label, key)
        self.sweep = QLineEdit()
        self.sweep.setPlaceholderText("optional, e.g. 123:-8..8:5 or 10,20,30:+8")
        self.sweep.setToolTip("One output column per value (coefficients of one feature) or "
                              "per feature (the same coefficient); shown as a grid.")
        units_form.addRow("Units", self.units)
        units_form.addRow("", self.units_note)
        units_form.addRow("Positions", self.scope)
        units_form.addRow("Sweep", self.sweep)
        pl.addLayout(units_form)
        lay.addWidget(pick)

        samp = QGroupBox("Sampling")
        sf = QFormLayout(samp)
        self.greedy = QCheckBox("Greedy (argmax)")
        self.greedy.setChecked(True)
        self.greedy.toggled.connect(lambda on: [w.setEnabled(not on) for w in
                                                (self.temperature, self.top_p, self.top_k)])
        self.temperature = QDoubleSpinBox(decimals=2, minimum=0.01, maximum=5.0, value=1.0,
                                          singleStep=0.1)
        self.top_p = QDoubleSpinBox(decimals=2, minimum=0.01, maximum=1.0, value=1.0,
                                    singleStep=0.05)
        self.top_k = QSpinBox(minimum=0, maximum=10_000, value=0)
        for w in (self.temperature, self.top_p, self.top_k):
            w.setEnabled(False)
        self.max_new = QSpinBox(minimum=1, maximum=4096, value=40)
        self.seed = QSpinBox(minimum=0, maximum=2**31 - 1, value=0)
        self.chat = QCheckBox("Use the chat template (instruct models)")
        sf.addRow(self.greedy)
        sf.addRow("Temperature", self.temperature)
        sf.addRow("Top-p", self.top_p)
        sf.addRow("Top-k (0 = off)", self.top_k)
        sf.addRow("Max new tokens", self.max_new)
        sf.addRow("Seed", self.seed)
        sf.addRow(self.chat)
        lay.addWidget(samp)

        lay.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(box)
        scroll.setMinimumWidth(470)
        return scroll

    def _build_outputs(self) -> QWidget:
        right = QSplitter(Qt.Orientation.Vertical)
        self.outputs = OutputsView()
        self.metrics = MetricsTable()
        self.library = QTabWidget()
        self.presets = PresetsPanel(None, self._current_for_preset)  # service: see _take_service
        self.presets.apply_requested.connect(self._apply_preset)
        self.presets.message.connect(self._say)
        self.history = HistoryPanel(None)
        self.history.open_requested.connect(self.open_generation)
        self.history.rerun_requested.connect(self.rerun)
        self.history.message.connect(self._say)
        self.library.addTab(self.metrics, "Metrics")
        self.library.addTab(self.presets, "Presets")
        self.library.addTab(self.history, "History")
        right.addWidget(self.outputs)
        right.addWidget(self.library)
        right.setSizes([520, 300])
        return right

    # ================================================================== service

    @property
    def service(self):
        """The steering service. The tab's first read builds it on the worker; an action
        that needs it sooner (a preset opened with the tab) builds it here."""
        if self._service is None:
            self._take_service(self.studio.steering)
        return self._service

    def _steering(self):  # any thread: never touches a widget
        return self._service if self._service is not None else self.studio.steering

    def _take_service(self, service) -> None:
        """The service arrived: the presets and history lists are read on the worker."""
        if self._service is not None:
            return
        self._service = service
        panels = (self.presets, self.history)
        seen = [panel.reloads for panel in panels]
        for panel in panels:
            panel.set_service(service)
        self._calls.call("library", lambda: [panel.read() for panel in panels],
                         lambda rows: [panel.show_first(r, n)
                                       for panel, r, n in zip(panels, rows, seen)],
                         lambda m: self._say(m, error=True))

    # ================================================================== choices

    def _read_choices(self, keep: str) -> tuple:  # any thread
        """(service, ready models, the chosen model, its SAEs): ``keep`` if it is ready,
        else the first."""
        service = self._steering()  # the first read builds it, here on the worker
        models = [rec for rec in self.studio.models.list() if rec.status == "ready"]
        ids = [rec.id for rec in models]
        chosen = keep if keep in ids else (ids[0] if ids else "")
        return service, models, chosen, service.saes_for_model(chosen) if chosen else []

    def reload_models(self, *, wait: bool = False, model: str = "") -> None:
        """Re-read the models, and the SAEs of ``model`` (else the chosen one, else the
        first): on the worker, or here with ``wait``."""
        keep = model or self.state.model_id
        if wait:
            for key in ("choices", "saes"):  # older reads in flight must not undo this one
                self._calls.cancel(key)
            self._drop_handoff()
            self._show_choices(self._read_choices(keep))
        else:
            self._calls.call("choices", lambda: self._read_choices(keep), self._show_choices,
                             self._read_failed)

    def _read_failed(self, message: str) -> None:
        self._say(f"Could not read the models and SAEs: {message}", error=True)

    def _show_choices(self, choices: tuple) -> None:
        service, models, chosen, saes = choices
        self._take_service(service)
        self.loaded = True
        self._syncing = True
        self.model_combo.clear()
        for rec in models:
            self.model_combo.addItem(rec.name, rec.id)
        self.model_combo.setCurrentIndex(self.model_combo.findData(chosen) if chosen else -1)
        self._syncing = False
        self.state.model_id = chosen
        self._show_saes(saes)

    def _model_changed(self) -> None:
        """The user chose another model: its SAEs are read on the worker."""
        if self._syncing:
            return
        model = self.state.model_id = self.model_combo.currentData() or ""
        if self._handoff is not None:  # the user's choice wins over a feature being opened
            self._calls.cancel("choices")
            self._drop_handoff()
        self._syncing = True
        self.sae_combo.clear()  # until this model's SAEs arrive
        self._syncing = False
        if not model:
            self._show_saes([])
            return
        self._calls.call("saes", lambda: self._steering().saes_for_model(model),
                         self._show_saes, self._read_failed)

    def _show_saes(self, saes: list) -> None:
        keep = self.state.sae_id
        self._syncing = True
        self.sae_combo.clear()
        for rec in saes:
            self.sae_combo.addItem(f"{rec.name or rec.id} · {rec.hook_name} · "
                                   f"{rec.d_sae:,} features", rec.id)
        self._syncing = False
        idx = self.sae_combo.findData(keep) if keep else -1
        self.sae_combo.setCurrentIndex(idx if idx >= 0 else 0 if self.sae_combo.count() else -1)
        self._sae_changed()
        if not self.model_combo.count():
            self._say("Add a model in the Models tab and train or import an SAE for it.")
        elif not self.sae_combo.count():
            self._say("No SAE fits this model yet: train one (Training tab) or import one.")

    def _sae_changed(self) -> None:
        if self._syncing:
            return
        sae = self.sae_combo.currentData() or ""
        if sae != self.state.sae_id:
            self.state.rows = []
        self.state.sae_id = sae
        self._render_rows()
        self.refresh_features()
        self._update_units_note()

    def refresh_features(self) -> None:
        """The features matching the search, read on the worker (a newer search wins)."""
        self.feature_list.clear()
        sae = self.state.sae_id
        if not sae:
            self._calls.cancel("features")
            return
        text = self.search.text()
        self._calls.call("features", lambda: (self._steering().has_analysis(sae),
                                              self._steering().feature_info(sae, text, 100)),
                         self._show_features, lambda m: self._say(m, error=True))

    def _show_features(self, result: tuple) -> None:
        analysed, rows = result
        self.feature_list.clear()
        self.analysis_note.setText("" if analysed else
                                   "This SAE has no analysis yet: pick features by index "
                                   "(labels, top tokens and 'max' units need an analysis).")
        for row in rows:
            tokens = " ".join(repr(t) for t in row.get("top_tokens", [])[:5])
            text = f"#{row['index']}" + (f"  {row['label']}" if row.get("label") else "") + \
                (f"  ·  {tokens}" if tokens else "")
            item = QListWidgetItem(text)
            item.setData(FEATURE_ROLE, row)
            self.feature_list.addItem(item)
        if self.feature_list.count():
            self.feature_list.setCurrentRow(0)

    def add_selected(self, kind: str = "add") -> None:
        item = self.feature_list.currentItem()
        if item is None:
            self._say("Type a feature index (or search an analysed SAE) and pick it first.")
            return
        row = item.data(FEATURE_ROLE)
        self.state.add_feature(row["index"], kind, row.get("label", ""))
        self._render_rows()

    def _contrast_dialog(self) -> None:
        from mistudio.ui.steering.contrast_dialog import ContrastDialog

        dlg = ContrastDialog(self)
        if dlg.exec():
            self.add_contrast(*dlg.values())

    def add_contrast(self, name: str, positive: list[str], negative: list[str]) -> None:
        try:
            self.state.add_contrast(name, positive, negative)
        except UserError as exc:
            self._say(str(exc), error=True)
            return
        self._render_rows()

    def _render_rows(self) -> None:
        self.table.render_rows(self.state.rows, self.state.units)

    def _units_changed(self) -> None:
        self.state.set_units(self.units.currentData())
        self._render_rows()
        self._update_units_note()

    def _update_units_note(self) -> None:
        note = ""
        if self.state.units == "norm" and self.state.sae_id and self.state.model_id:
            hook = self.service.saes.get_sae(self.state.sae_id).hook_name
            info = self.service.typical_norm(self.state.model_id, hook)
            note = (f"Typical norm {info['norm']:.3g}: {info['source']}." if info else
                    "The typical residual norm is measured by a short pass on the first run "
                    "and cached.")
        elif self.state.units == "max":
            note = "× each feature's max activation in its analysis."
        self.units_note.setText(note)

    # ================================================================== public

    def use_preset(self, name: str) -> None:
        """Open a preset (the Templates tab's "Use", via the main window): its SAE chosen
        when it is registered here, its interventions in the table."""
        try:
            preset = self.service.preset(name)
        except UserError as exc:
            self._say(str(exc), error=True)
            return
        sae_id = preset.sae.sae_id
        missing = ""
        try:
            if sae_id and self.sae_combo.findData(sae_id) < 0:
                model = self.service.sae_model(sae_id)
                if model:
                    self.reload_models(wait=True, model=model)
            idx = self.sae_combo.findData(sae_id) if sae_id else -1
            if idx < 0:
                raise UserError("not registered")
            self.sae_combo.setCurrentIndex(idx)
            self.service.check_preset(preset, sae_id)
        except UserError as exc:
            missing = (str(exc) if "another SAE" in str(exc) else
                       f"The SAE it was made with ({preset.sae.name or sae_id or 'unknown'}) "
                       "is not registered here: choose that SAE before generating.")
        self._apply_preset(preset)
        if missing:
            self._say(f"Preset {preset.name!r} applied. {missing}", error=True)

    # ================================================================== running

    def _sync_state(self) -> None:
        s = self.state
        s.prompt = self.prompt.toPlainText()
        s.scope = self.scope.currentData()
        s.sweep = self.sweep.text()
        s.chat = self.chat.isChecked()
        s.sampling = {"max_new_tokens": self.max_new.value(), "greedy": self.greedy.isChecked(),
                      "temperature": self.temperature.value(), "top_p": self.top_p.value(),
                      "top_k": self.top_k.value(), "seed": self.seed.value()}

    def generate(self) -> None:
        if self._handoff is not None:  # a feature's SAE is being read: go when it is here
            self._generate_when_ready = True
            self._say("Generating once the feature's SAE is read…")
            return
        self._sync_state()
        try:
            self.state.start(self.service)
        except UserError as exc:
            self._say(str(exc), error=True)
            return
        except Exception as exc:  # noqa: BLE001 - shown, never swallowed silently
            self._say(describe_exception(exc), error=True)
            return
        self.outputs.clear()
        self.metrics.setRowCount(0)
        self.generate_btn.setEnabled(False)
        self.stop_btn.setEnabled(True)
        self._say("Queued…")
        self.timer.start()
        self.history.reload()

    def rerun(self, gen_id: str) -> None:
        self.open_generation(gen_id)
        self.generate()

    def stop(self) -> None:
        if self.state.generation_id and self.state.running:
            self.service.stop(self.state.generation_id)
            self._say("Stopping…")

    def _poll(self) -> None:
        if self.state.poll(self.service) and self.state.live:
            self.outputs.show_live(self.state.live, self.state.prompt)
            n = max((len(p) for p in self.state.live["pieces"]), default=0)
            self._say(f"Generating… {n} / {self.state.sampling['max_new_tokens']} tokens")

    def _on_status(self, job_id: str, payload: dict) -> None:
        if job_id != self.state.job_id:
            if payload.get("status") in ("completed", "failed", "cancelled"):
                self._reload_history()
            return
        status = payload.get("status")
        if status not in ("completed", "failed", "cancelled", "interrupted"):
            return
        self.timer.stop()
        try:
            self.state.finish(self.service, status, payload.get("error", ""))
        except UserError as exc:
            self.state.error = str(exc)
        self.generate_btn.setEnabled(True)
        self.stop_btn.setEnabled(False)
        self._show_state()
        self._reload_history()

    def _reload_history(self) -> None:
        """A job ended: the history list is read again on the worker (a newer read replaces
        one still on its way; a reload made meanwhile on this thread wins)."""
        panel = self.history
        if panel.service is None:
            return
        panel.reloads += 1
        seen = panel.reloads
        self._calls.call("history", panel.read, lambda rows: panel.show_first(rows, seen),
                         lambda m: self._say(m, error=True))

    def _show_state(self) -> None:
        s = self.state
        if s.result is not None:
            self.outputs.show_result(s.result)
            self.metrics.show_result(s.result)
            self.library.setCurrentWidget(self.metrics)
            norm = (f" Typical residual norm {s.result['typical_norm']:.3g} "
                    f"({s.result['norm_source']})." if s.result.get("typical_norm") else "")
            self._say(f"Done: {s.result['tokens_per_s']:.1f} tokens/s on "
                      f"{s.result['device']}.{norm}")
            self._update_units_note()
        elif s.live is not None:
            self.outputs.show_live(s.live, s.prompt)
        if s.error:
            self._say(s.error, error=s.error != "Stopped.")

    def open_generation(self, gen_id: str) -> None:
        try:
            self.state.open(self.service, gen_id)
        except UserError as exc:
            self._say(str(exc), error=True)
            return
        s = self.state
        self.reload_models(wait=True)  # the generation's model and its SAEs
        self.sae_combo.setCurrentIndex(max(0, self.sae_combo.findData(s.sae_id)))
        self.state.open(self.service, gen_id)  # the combos reset rows; put them back
        self.prompt.setPlainText(s.prompt)
        self.units.setCurrentIndex(max(0, self.units.findData(s.units)))
        self.scope.setCurrentIndex(max(0, self.scope.findData(s.scope)))
        self.chat.setChecked(s.chat)
        self.greedy.setChecked(bool(s.sampling.get("greedy", True)))
        self.temperature.setValue(float(s.sampling.get("temperature", 1.0)))
        self.top_p.setValue(float(s.sampling.get("top_p", 1.0)))
        self.top_k.setValue(int(s.sampling.get("top_k", 0)))
        self.max_new.setValue(int(s.sampling.get("max_new_tokens", 40)))
        self.seed.setValue(int(s.sampling.get("seed", 0)))
        self.sweep.setText("")
        self._render_rows()
        self.outputs.clear()
        self.metrics.setRowCount(0)
        self._show_state()

    # ================================================================== presets

    def _current_for_preset(self):
        self._sync_state()
        return self.state.sae_id, self.state.interventions(), self.state.scope

    def _apply_preset(self, preset) -> None:
        self.state.apply_preset(preset)
        self.units.blockSignals(True)
        self.units.setCurrentIndex(max(0, self.units.findData(self.state.units)))
        self.units.blockSignals(False)
        self.scope.setCurrentIndex(max(0, self.scope.findData(self.state.scope)))
        self._render_rows()
        self._say(f"Preset {preset.name!r} applied.")

    def _say(self, text: str, error: bool = False) -> None:
        self.status.setText(text)
        self.status.setStyleSheet(palette.css("error" if error else "text"))

    def shutdown(self) -> None:
        """Stop the poll timer and the worker (the window is closing)."""
        self.timer.stop()
        self._first_read.stop()
        self._calls.close()


if __name__ == "__main__":  # preview: python -m mistudio.ui.steering.tab
    import sys

    from PySide6.QtWidgets import QApplication

    from mistudio.studio import Studio
    from mistudio.ui.workers import JobBridge, qt_thread_factory

    app = QApplication(sys.argv)
    studio = Studio(thread_factory=qt_thread_factory)
    bridge = JobBridge()
    studio.add_job_listener(bridge)
    tab = SteeringTab(studio, bridge)
    tab.resize(1400, 900)
    tab.show()
    rc = app.exec()
    studio.close()
    sys.exit(rc)
