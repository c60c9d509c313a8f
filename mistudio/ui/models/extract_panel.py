"""The extraction form: tokenization, layers x hook types, limits, dtype; live throughput.

What it lists (the ready tokenizations, the extraction templates) and what it reads about the
chosen model (its row, config.json and safetensors headers) come from its background thread,
so choosing a model or opening the page never waits on the data folder.
"""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (QCheckBox, QComboBox, QFileDialog, QFormLayout, QGridLayout,
                               QHBoxLayout, QInputDialog, QLabel, QLineEdit, QProgressBar,
                               QPushButton, QSpinBox, QVBoxLayout, QWidget)

from mistudio.errors import UserError, describe_exception
from mistudio.models.hooks import HOOK_LABELS, HOOK_TYPES
from mistudio.ui.kit.background import BackgroundCalls
from mistudio.ui.models.precision import PrecisionChooser, precision_label
from mistudio.ui.kit.palette import css


def read_tokenizations(studio) -> tuple[list, dict]:
    """The ready tokenizations and the names of their datasets (background thread)."""
    try:
        toks = [t for t in studio.datasets.tokenizations() if t.status == "ready"]
        names = {d.id: d.name for d in studio.datasets.list()}
    except Exception:  # the datasets area may be absent; a folder still works
        return [], {}
    return toks, names


def read_model(studio, model_id: str) -> tuple:
    """(model id, its record, its architecture summary or None) (background thread)."""
    rec = studio.models.find(model_id)
    try:  # config.json + safetensors headers
        summary = studio.models.inspect(model_id) if rec is not None else None
    except Exception:  # shown by the inspector; the form still works with names
        summary = None
    return model_id, rec, summary


class ExtractionPanel(QWidget):
    """Fills from templates, starts ``activations.extract`` through the service."""

    started = Signal(str)  # job id
    error = Signal(str)
    sets_ready = Signal(list)  # ids of the activation sets a finished extraction wrote

    def __init__(self, studio, parent: QWidget | None = None):
        super().__init__(parent)
        self.studio = studio
        self.model_id: str | None = None
        self.job_id: str | None = None
        self.set_ids: list[str] = []  # of the running (or last) extraction
        self._summary: dict | None = None
        self._token_counts: dict[str, int] = {}  # tokenization folder -> real tokens
        self._seq_lens: dict[str, int] = {}  # tokenization folder -> tokens per sequence
        self._toks: list = []  # ready tokenizations, as last read
        self._dataset_names: dict[str, str] = {}
        self._fingerprint = ""  # the chosen model's tokenizer
        self.calls = BackgroundCalls(self, name="extract-panel")
        lay = QVBoxLayout(self)
        trow = QHBoxLayout()
        self.template = QComboBox()
        self.template.setToolTip("Saved extraction settings; choosing one fills the form.")
        self.template.activated.connect(
            lambda i: i > 0 and self.apply_template(self.template.itemText(i)))
        save_btn = QPushButton("Save as template...")
        save_btn.clicked.connect(self._save_template_dialog)
        trow.addWidget(QLabel("Template"))
        trow.addWidget(self.template, 1)
        trow.addWidget(save_btn)
        lay.addLayout(trow)

        form = QFormLayout()
        tok_row = QHBoxLayout()
        self.tokenization = QComboBox()
        self.tokenization.setEditable(True)
        self.tokenization.setToolTip("A tokenization from the Datasets tab (made with this "
                                     "model's tokenizer), or a tokenization folder.")
        browse = QPushButton("Browse...")
        browse.clicked.connect(self._browse_tokenization)
        tok_row.addWidget(self.tokenization, 1)
        tok_row.addWidget(browse)
        form.addRow("Tokenized dataset", tok_row)
        self.layers = QLineEdit("middle")
        self.layers.setToolTip("Numbers, ranges (2-5), 'middle', 'last' or 'all', comma "
                               "separated.")
        self.layers_info = QLabel("")
        self.layers_info.setStyleSheet(css("text.secondary"))
        layers_row = QHBoxLayout()
        layers_row.addWidget(self.layers, 1)
        layers_row.addWidget(self.layers_info)
        form.addRow("Layers", layers_row)
        grid = QGridLayout()
        self.hook_boxes: dict[str, QCheckBox] = {}
        for i, t in enumerate(HOOK_TYPES):
            box = QCheckBox(t)
            box.setToolTip(HOOK_LABELS[t])
            box.setChecked(t == "resid_post")
            self.hook_boxes[t] = box
            grid.addWidget(box, i // 3, i % 3)
        form.addRow("Hook points", grid)
        self.extra_hooks = QLineEdit()
        self.extra_hooks.setPlaceholderText("optional: blocks.3.hook_mlp_out, module:<path>")
        form.addRow("Extra hook names", self.extra_hooks)
        self.max_tokens = QSpinBox()
        self.max_tokens.setRange(0, 2_000_000_000)
        self.max_tokens.setSingleStep(100_000)
        self.max_tokens.setValue(1_000_000)
        self.max_tokens.setSpecialValueText("all")
        self.max_tokens.setGroupSeparatorShown(True)
        form.addRow("Max tokens", self.max_tokens)
        self.batch = QSpinBox()
        self.batch.setRange(1, 4096)
        self.batch.setValue(16)
        self.batch.setToolTip("Sequences per forward pass; lower it if the GPU runs out of "
                              "memory.")
        form.addRow("Batch size", self.batch)
        self.store_dtype = QComboBox()
        self.store_dtype.addItems(["float32", "bfloat16", "float16"])
        self.store_dtype.setToolTip("bfloat16/float16 halve the disk use.")
        form.addRow("Store as", self.store_dtype)
        self.device = QComboBox()
        self.device.addItems(["auto", "cuda", "cpu"])
        form.addRow("Device", self.device)
        self.precision = PrecisionChooser(studio)
        form.addRow("Model precision", self.precision)
        self.device.currentTextChanged.connect(self.precision.set_device)
        self.skip_bos = QCheckBox("Skip BOS and padding positions")
        self.skip_bos.setChecked(True)
        self.skip_bos.setToolTip("BOS positions have outsized norms and would dominate SAE "
                                 "training.")
        form.addRow("", self.skip_bos)
        lay.addLayout(form)
        self.plan = QLabel("")
        self.plan.setWordWrap(True)
        self.plan.setStyleSheet(css("text"))
        lay.addWidget(self.plan)
        for box in self.hook_boxes.values():
            box.toggled.connect(self.update_plan)
        self.layers.textChanged.connect(self.update_plan)
        self.extra_hooks.textChanged.connect(self.update_plan)
        self.max_tokens.valueChanged.connect(self.update_plan)
        self.store_dtype.currentTextChanged.connect(self.update_plan)
        self.tokenization.currentTextChanged.connect(self.update_plan)
        self.batch.valueChanged.connect(self._update_batch_tokens)
        self.tokenization.currentTextChanged.connect(self._update_batch_tokens)
        srow = QHBoxLayout()
        self.start_btn = QPushButton("Extract")
        self.start_btn.clicked.connect(self.start)
        self.cancel_btn = QPushButton("Cancel")
        self.cancel_btn.setEnabled(False)
        self.cancel_btn.clicked.connect(self._cancel)
        srow.addWidget(self.start_btn)
        srow.addWidget(self.cancel_btn)
        srow.addStretch(1)
        lay.addLayout(srow)
        self.progress = QProgressBar()
        self.progress.setVisible(False)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        lay.addWidget(self.progress)
        lay.addWidget(self.status)
        lay.addStretch(1)
        self.reload_templates()
        self.reload_tokenizations()

    # ------------------------------------------------------------------ data

    def set_model(self, model_id: str | None) -> None:
        """Offer the form for this model: its row and summary are read in the background
        (the plan and the memory estimate follow when they arrive)."""
        self.model_id = model_id
        self.start_btn.setEnabled(bool(model_id))
        self._summary = None
        self._fingerprint = ""
        if model_id:
            self.precision.expect(model_id)
            studio = self.studio
            self.calls.call("model", lambda: read_model(studio, model_id), self._model_read)
        else:
            self.calls.cancel("model")
            self.precision.set_model(None)
        self._fill_tokenizations()
        self.update_plan()

    def _model_read(self, result) -> None:
        model_id, rec, summary = result
        if model_id != self.model_id:
            return
        self._summary = summary
        self._fingerprint = (rec.tokenizer_fingerprint or "") if rec is not None else ""
        self.precision.set_model(model_id, summary, record=rec)
        self._fill_tokenizations()
        self.update_plan()

    def is_ready(self) -> bool:
        """What the form shows about the model and the lists is read (tests, screenshots)."""
        return not self.calls.busy() and self.precision.is_ready()

    def refresh_precision(self) -> None:
        """Read the precision choices again (the settings or the model's saved copies
        changed)."""
        self.precision.set_model(self.model_id, self._summary)

    def _update_batch_tokens(self, *_args) -> None:
        """The memory estimate counts one batch's activations: sequences x their length."""
        folder = self.tokenization_value()
        seq = self._seq_lens.get(folder)
        if seq is None and folder:
            try:
                import json
                from pathlib import Path

                seq = int(json.loads((Path(folder) / "meta.json").read_text(
                    encoding="utf-8"))["seq_len"])
            except (OSError, ValueError, KeyError, TypeError):
                seq = 0
            self._seq_lens[folder] = seq
        self.precision.set_batch_tokens(self.batch.value() * (seq or 0))

    def reload_tokenizations(self) -> None:
        """Read the ready tokenizations again (in the background)."""
        studio = self.studio
        self.calls.call("tokenizations", lambda: read_tokenizations(studio),
                        self._tokenizations_read)

    def _tokenizations_read(self, result) -> None:
        self._toks, self._dataset_names = result
        self._fill_tokenizations()

    def _fill_tokenizations(self) -> None:
        """Ready tokenizations, those made with this model's tokenizer first."""
        current = self.tokenization.currentText()
        self.tokenization.blockSignals(True)
        self.tokenization.clear()
        toks, names, fingerprint = list(self._toks), self._dataset_names, self._fingerprint

        def matches(t) -> bool:
            return bool(self.model_id) and (t.model_id == self.model_id or bool(
                fingerprint and t.tokenizer_fingerprint == fingerprint))

        toks.sort(key=lambda t: not matches(t))
        for t in toks:
            note = "" if matches(t) or not self.model_id else "  (other tokenizer)"
            label = (f"{t.id}  {names.get(t.dataset_id, t.dataset_id)} · {t.tokenizer} · "
                     f"{t.seq_len} tokens × {t.n_seq or 0:,}{note}")
            self.tokenization.addItem(label, t.path)
            self.tokenization.setItemData(self.tokenization.count() - 1,
                                          f"{t.n_tokens or 0:,} tokens; folder {t.path}", 3)
            self._token_counts[t.path] = t.n_tokens
            self._seq_lens[t.path] = int(t.seq_len or 0)
        if current and self.tokenization.findText(current) < 0:
            self.tokenization.setEditText(current)  # a folder typed by the user
        elif current:
            self.tokenization.setCurrentIndex(self.tokenization.findText(current))
        self.tokenization.blockSignals(False)
        self.update_plan()
        self._update_batch_tokens()

    def update_plan(self, *_args) -> None:
        """What the form will extract, resolved for this model, and its size on disk."""
        from mistudio.activations.choices import expand_layers
        from mistudio.models.hooks import hook_width, parse_hook_name
        from mistudio.paths import human_bytes

        s = self._summary
        if s is None:
            self.layers_info.setText("")
            self.plan.setText("")
            return
        n_layers = s["n_layers"]
        types = [t for t, b in self.hook_boxes.items() if b.isChecked()]
        try:
            layers = expand_layers([x.strip() for x in self.layers.text().split(",")
                                    if x.strip()], n_layers) if types else []
            self.layers_info.setStyleSheet(css("text.secondary"))
            shown = ", ".join(map(str, layers[:8])) + (" …" if len(layers) > 8 else "")
            self.layers_info.setText(f"→ {shown or 'none'}  (the model has layers "
                                     f"0–{n_layers - 1})")
        except UserError as exc:
            self.layers_info.setStyleSheet(css("error"))
            self.layers_info.setText(exc.message)
            self.plan.setText("")
            return
        extra = [x for x in self.extra_hooks.text().split(",") if x.strip()]
        n_hooks = len(layers) * len(types) + len(extra)
        rows = self.max_tokens.value()
        tok = self._tokenization_tokens()
        if tok is not None:
            rows = min(rows, tok) if rows else tok
        if not n_hooks:
            self.plan.setText("Choose at least one layer and hook type, or a hook name.")
            return
        width = 2 if self.store_dtype.currentText() in ("bfloat16", "float16") else 4
        # mlp.hook_post is d_mlp wide (4x d_model on GPT-2), the other points d_model
        widths = [hook_width(t, s["d_model"], s.get("d_mlp")) for t in types] * len(layers)
        widths += [hook_width(parsed[1] if (parsed := parse_hook_name(x)) else "module",
                              s["d_model"], s.get("d_mlp")) for x in extra]
        size = rows * sum(widths) * width if rows else 0
        dims = sorted(set(widths))
        where = (f"the tokenization has {tok:,} tokens" if tok is not None else
                 "tokens: up to the max above")
        self.plan.setText(
            f"Will extract <b>{n_hooks}</b> hook point(s) × up to {rows:,} tokens × "
            f"d {' / '.join(map(str, dims))} ({self.store_dtype.currentText()}) ≈ "
            f"<b>{human_bytes(size)}</b> on disk; {where}. The forward pass stops after the "
            f"deepest chosen layer.")

    def _tokenization_tokens(self) -> int | None:
        return self._token_counts.get(self.tokenization_value())

    def reload_templates(self, select: str | None = None) -> None:
        """Read the extraction templates (in the background); ``select`` one once listed."""
        studio = self.studio
        self.calls.call("templates", lambda: studio.templates.list(kind="extraction"),
                        lambda templates: self._show_templates(templates, select))

    def _show_templates(self, templates: list, select: str | None) -> None:
        self.template.clear()
        self.template.addItem("Choose a template…")
        for t in templates:
            self.template.addItem(t.name)
            self.template.setItemData(self.template.count() - 1, t.description, 3)
        if select:
            self.template.setCurrentText(select)

    def tokenization_value(self) -> str:
        i = self.tokenization.currentIndex()
        text = self.tokenization.currentText().strip()
        if i >= 0 and self.tokenization.itemText(i) == text:
            return self.tokenization.itemData(i) or text
        return text

    def form_settings(self) -> dict:
        return {"layers": [x.strip() for x in self.layers.text().split(",") if x.strip()],
                "hook_types": [t for t, b in self.hook_boxes.items() if b.isChecked()],
                "max_tokens": self.max_tokens.value(), "batch_size": self.batch.value(),
                "store_dtype": self.store_dtype.currentText(),
                "skip_bos": self.skip_bos.isChecked()}

    def apply_template(self, name: str) -> None:
        try:
            s = self.studio.activations.apply_template(name, self.model_id)
        except UserError as exc:
            self.error.emit(str(exc))
            return
        self.layers.setText(", ".join(str(x) for x in s.get("layers") or ["middle"]))
        for t, box in self.hook_boxes.items():
            box.setChecked(t in s.get("hook_types", []))
        self.max_tokens.setValue(int(s.get("max_tokens", 0)))
        self.batch.setValue(int(s.get("batch_size", 16)))
        self.store_dtype.setCurrentText(s.get("store_dtype", "float32"))
        self.skip_bos.setChecked(bool(s.get("skip_bos", True)))

    def _save_template_dialog(self) -> None:
        name, ok = QInputDialog.getText(self, "Save extraction template", "Template name")
        if ok and name.strip():
            try:
                self.studio.templates.save(name, self.form_settings(), kind="extraction",
                                           overwrite=True)
            except UserError as exc:
                self.error.emit(str(exc))
                return
            self.reload_templates(select=name.strip())

    def _browse_tokenization(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Tokenization folder")
        if folder:
            self.tokenization.setEditText(folder)

    def choose_hook(self, name: str) -> None:
        """From the inspector: extract at this hook point."""
        self.extra_hooks.setText(name)
        self.layers.setText("")
        for box in self.hook_boxes.values():
            box.setChecked(False)

    # ------------------------------------------------------------------ run

    def start(self) -> None:
        if not self.model_id:
            self.error.emit("Choose a model first.")
            return
        s = self.form_settings()
        extra = [x.strip() for x in self.extra_hooks.text().split(",") if x.strip()]
        precision = self.precision.values()
        try:
            sets, job = self.studio.activations.start_extraction(
                self.model_id, self.tokenization_value(), hook_points=extra,
                layers=s["layers"] if s["hook_types"] else None, hook_types=s["hook_types"],
                max_tokens=s["max_tokens"], batch_size=s["batch_size"],
                store_dtype=s["store_dtype"], skip_bos=s["skip_bos"],
                device=self.device.currentText(), **precision)
        except Exception as exc:
            self.error.emit(describe_exception(exc))
            return
        self.job_id = job.id
        self.set_ids = [r.id for r in sets]
        self.progress.setVisible(True)
        self.progress.setRange(0, 0)
        self.status.setText(f"Extracting {len(sets)} hook point(s) from the model in "
                            f"{precision_label(**precision)}...")
        self.start_btn.setEnabled(False)
        self.cancel_btn.setEnabled(True)
        self.started.emit(job.id)

    def shutdown(self) -> None:
        """Stop this panel's background reads (the tab's shutdown)."""
        self.calls.close()
        self.precision.shutdown()

    def _cancel(self) -> None:
        if self.job_id:
            self.studio.cancel_job(self.job_id)

    def on_progress(self, job_id: str, payload: dict) -> None:
        if job_id != self.job_id:
            return
        total = payload.get("total")
        if total:
            self.progress.setRange(0, 1000)
            self.progress.setValue(int(1000 * min(1.0, payload["done"] / total)))
        eta = payload.get("eta_s")
        eta_text = f", ETA {int(eta // 60)}:{int(eta % 60):02d}" if eta is not None else ""
        self.status.setText(f"{payload['done']:,.0f} / {total or 0:,.0f} tokens — "
                            f"{payload.get('message') or ''}{eta_text}")

    def on_status(self, job_id: str, payload: dict) -> None:
        if job_id != self.job_id:
            return
        st = payload.get("status")
        if st in ("completed", "failed", "cancelled", "interrupted"):
            self.start_btn.setEnabled(bool(self.model_id))
            self.cancel_btn.setEnabled(False)
            self.progress.setVisible(False)
            res = payload.get("result") or {}
            if st == "completed":
                self.status.setText(f"Done: {res.get('tokens', 0):,} tokens at "
                                    f"{res.get('tokens_per_s', 0):,.0f} tokens/s. The new "
                                    f"set(s) are selected under Activation sets.")
                self.sets_ready.emit(list(self.set_ids))
            elif st == "failed":
                self.status.setText(f"Failed: {payload.get('error', '')}")
            else:
                self.status.setText(f"{st.capitalize()}: resume it from the activation sets "
                                    "list.")
