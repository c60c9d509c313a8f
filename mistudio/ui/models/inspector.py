"""The architecture inspector: summary, memory estimate, module tree, hook points.

Three background reads per model, in this order on the inspector's one worker thread, each
shown as it arrives: the summary and hook points (config.json and safetensors headers:
milliseconds), then, once those are drawn, the memory badge (needs torch to see the device)
and the module tree (a meta-device model). Showing another model makes the reads of the last one stale (skipped if
not started, their results dropped), so switching models never mixes two models' details.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, Qt, Signal
from PySide6.QtWidgets import (QComboBox, QFormLayout, QHBoxLayout, QLabel, QLineEdit,
                               QPushButton, QSplitter, QTreeWidget, QTreeWidgetItem,
                               QVBoxLayout, QWidget)

from mistudio.errors import describe_exception
from mistudio.paths import human_bytes
from mistudio.ui.kit.background import BackgroundCalls
from mistudio.ui.kit.elided_label import ElidedLabel
from mistudio.ui.kit.labels import hint_label
from mistudio.ui.kit.native_libraries import import_torch_quietly
from mistudio.ui.kit.palette import verdict_colour

DTYPES = ("float32", "bfloat16", "float16")
QUANTS = ("none", "8bit", "4bit")


def _tagged(model_id: str, part: str, fn):
    """Run ``fn`` and label its result (or its exception) with the model and the part."""
    def run():
        try:
            return model_id, part, fn()
        except Exception as exc:  # shown in the inspector, never raised into Qt
            return model_id, part, exc
    return run


class ArchitectureInspector(QWidget):
    """Shows one model; ``hook_chosen(name)`` when a hook point is double-clicked."""

    hook_chosen = Signal(str)
    loaded = Signal(str)  # model id whose details arrived (tests wait on it)
    save_variant = Signal(str, str, str)  # model id, quantization, dtype of the other parts

    def __init__(self, studio, parent: QWidget | None = None):
        super().__init__(parent)
        self.studio = studio
        self.model_id: str | None = None
        lay = QVBoxLayout(self)
        top = QHBoxLayout()
        self.form = QFormLayout()
        self.fields: dict[str, QLabel] = {}
        for key, label in (("family", "Family"), ("n_layers", "Layers"), ("d_model", "d_model"),
                           ("heads", "Heads (KV)"), ("d_mlp", "MLP width"),
                           ("vocab_size", "Vocabulary"), ("context_length", "Context length"),
                           ("n_params", "Parameters"), ("dtype", "Weights dtype"),
                           ("weights_bytes", "On disk"), ("source", "Source")):
            # a long source path must not widen the window: shortened in the middle (the
            # folder's start and the file name stay), in full in its tooltip
            self.fields[key] = ElidedLabel("-") if key == "source" else QLabel("-")
            self.fields[key].setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            self.form.addRow(label, self.fields[key])
        top.addLayout(self.form, 1)
        mem = QVBoxLayout()
        row = QHBoxLayout()
        row.addWidget(QLabel("Load as"))
        self.dtype = QComboBox()
        self.dtype.addItems(DTYPES)
        self.quant = QComboBox()
        self.quant.addItems(QUANTS)
        row.addWidget(self.dtype)
        row.addWidget(self.quant)
        self.save_quant = QPushButton("Save quantized copy")
        self.save_quant.setToolTip("Quantize once and save the copy beside the model, so it "
                                   "loads faster and smaller next time.")
        self.save_quant.setEnabled(False)
        self.save_quant.clicked.connect(self._save_variant)
        row.addWidget(self.save_quant)
        mem.addLayout(row)
        self.quant_note = hint_label()
        mem.addWidget(self.quant_note)
        self.memory = QLabel("")
        self.memory.setWordWrap(True)
        mem.addWidget(self.memory)
        mem.addStretch(1)
        top.addLayout(mem, 1)
        lay.addLayout(top)
        split = QSplitter(Qt.Orientation.Horizontal)
        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(["Module", "Type", "Parameters"])
        self.hooks = QTreeWidget()
        self.hooks.setRootIsDecorated(False)
        self.hooks.setHeaderLabels(["Hook point", "Module", "Reads", "Shape"])
        self.hooks.itemDoubleClicked.connect(lambda it, _c: self.hook_chosen.emit(it.text(0)))
        self.hook_filter = QLineEdit()
        self.hook_filter.setPlaceholderText("Filter hook points: e.g. 'resid_post' or "
                                            "'blocks.15'")
        self.hook_filter.setClearButtonEnabled(True)
        self.hook_filter.textChanged.connect(self._filter_hooks)
        hooks_box = QWidget()
        hl = QVBoxLayout(hooks_box)
        hl.setContentsMargins(0, 0, 0, 0)
        hl.addWidget(self.hook_filter)
        hl.addWidget(self.hooks, 1)
        hint = hint_label("Double-click a hook point to extract there.", small=False, wrap=False)
        hl.addWidget(hint)
        split.addWidget(self.tree)
        split.addWidget(hooks_box)
        split.setSizes([420, 580])  # the hook list has more columns to show
        lay.addWidget(split, 1)
        self.dtype.currentTextChanged.connect(lambda _t: self._update_memory())
        self.quant.currentTextChanged.connect(lambda _t: self._update_memory())
        self._quant_reasons: dict[str, str] = {}
        self._quant_setting: bool | None = None  # the CPU opt-in the choices were made with
        self._summary: dict | None = None
        self._estimates: dict = {}
        self._pending: set[str] = set()
        self.calls = BackgroundCalls(self, name="inspector")
        self._shown_ready = False  # the current model was shown in its ready state
        self.shown_status: str | None = None

    def show_model(self, model_id: str | None, record=None) -> None:
        """Show a model: the summary and hook points arrive at once (config.json and the
        safetensors headers), the memory badge and module tree when torch has loaded.
        ``record``: the model's row as the caller read it (else it is read here)."""
        self.model_id = model_id
        self.tree.clear()
        self.hooks.clear()
        for f in self.fields.values():
            f.setText("-")
        self.memory.setText("")
        self._summary = None
        self._estimates = {}
        self._pending = set()
        self._quant_reasons = {}
        self.save_quant.setEnabled(False)
        for part in ("summary", "memory", "tree"):  # the last model's reads are stale
            self.calls.cancel(part)
        if not model_id:
            return
        rec = record if record is not None else self.studio.models.get(model_id)
        self.fields["source"].setText(f"{rec.source}: {rec.source_ref}")
        self.shown_status = rec.status  # what the view shows (the tab compares it later)
        self._shown_ready = rec.status == "ready"
        if rec.status != "ready":
            self.memory.setText(f"{rec.status}. {rec.error}")
            return
        self.memory.setText("Estimating memory...")
        waiting = QTreeWidgetItem(self.tree, ["Building the module tree...", "", ""])
        waiting.setFirstColumnSpanned(True)
        studio = self.studio

        def summary():
            return studio.models.inspect(model_id), studio.models.hook_points(model_id)

        self._pending = {"summary", "memory", "tree"}
        self.calls.call("summary", _tagged(model_id, "summary", summary), self._deliver)

    def _read_the_rest(self, model_id: str) -> None:
        """Once the summary and hook points are on screen: the memory badge and the module
        tree (both import torch, ~1-2 s of Python on the worker the first time; while it
        runs every Qt call of the GUI thread waits for the GIL, so the hook list is filled
        before, not during, that import)."""
        studio = self.studio

        def tree():
            import_torch_quietly()
            return studio.models.module_tree(model_id)

        for part, fn in (("memory", self._memory_reader(model_id)), ("tree", tree)):
            self.calls.call(part, _tagged(model_id, part, fn), self._deliver)

    def _memory_reader(self, model_id: str):
        studio = self.studio
        self._quant_setting = bool(studio.settings.allow_cpu_quantization)

        def memory():
            import_torch_quietly()  # the GUI thread stays live while torch loads
            quant = studio.models.quantization_options()
            estimates = {(dtype, q): studio.models.memory_estimate(
                model_id, dtype=dtype, quantization=q, device="auto")
                for dtype in DTYPES for q in QUANTS}
            return quant, estimates
        return memory

    def refresh_quantization(self) -> None:
        """Read the quantization choices again (e.g. after the CPU opt-in changed)."""
        if not self.model_id or self._summary is None or "memory" in self._pending:
            return
        self._pending.add("memory")
        self.calls.call("memory", _tagged(self.model_id, "memory",
                                          self._memory_reader(self.model_id)), self._deliver)

    def event(self, e) -> bool:
        # back from File > Settings: offer what the CPU opt-in now allows
        if e.type() == QEvent.Type.WindowActivate and self._quant_setting is not None and \
                self._quant_setting != bool(self.studio.settings.allow_cpu_quantization):
            self.refresh_quantization()
        return super().event(e)

    def shutdown(self) -> None:
        self.calls.close()

    def _save_variant(self) -> None:
        q = self.quant.currentText()
        if self.model_id and q != "none" and not self._quant_reasons.get(q, "?"):
            self.save_variant.emit(self.model_id, q, self.dtype.currentText())

    def is_filled(self) -> bool:
        """Everything about the current model is on screen (or there is nothing to show).
        A model shown while it was still importing is not filled once it is ready: the
        tab's reload shows it again."""
        if self._pending:
            return False
        if self.model_id is None:
            return True
        rec = self.studio.models.find(self.model_id)
        return rec is None or rec.status != "ready" or self._shown_ready

    def _deliver(self, result) -> None:
        model_id, part, value = result
        if model_id != self.model_id or part not in self._pending:
            return  # the user moved on: never mix two models' details
        self._pending.discard(part)
        if isinstance(value, Exception):
            where = {"summary": self.memory, "memory": self.memory}.get(part)
            text = f"Could not read the model: {describe_exception(value)}"
            if where is None:
                self.tree.clear()
                item = QTreeWidgetItem(self.tree, [text, "", ""])
                item.setFirstColumnSpanned(True)
                item.setToolTip(0, text)
            else:
                where.setText(text)
        else:
            {"summary": self._show_summary, "memory": self._show_memory,
             "tree": self._show_tree}[part](value)
        if part == "summary":
            self._read_the_rest(model_id)
        if not self._pending:
            self.loaded.emit(model_id)

    def _show_summary(self, value) -> None:
        summary, hook_points = value
        self._summary = s = summary
        self.fields["family"].setText(f"{s['family_label']} ({s['architecture']})")
        for key in ("n_layers", "d_model", "d_mlp", "vocab_size", "context_length", "dtype"):
            value = s.get(key)
            self.fields[key].setText(f"{value:,}" if isinstance(value, int) else str(value))
        self.fields["heads"].setText(f"{s['n_heads']} ({s['n_kv_heads']})")
        self.fields["n_params"].setText(f"{s['n_params']:,} ({s['n_params'] / 1e6:.1f}M)")
        self.fields["weights_bytes"].setText(human_bytes(s["weights_bytes"]))
        for h in hook_points:
            item = QTreeWidgetItem(self.hooks, [h["name"], h["module"], h["io"],
                                                f"[tokens, {h['d']}]"])
            item.setToolTip(0, h["label"] + " — double-click to extract here")
        if not hook_points:
            QTreeWidgetItem(self.hooks, ["(family not mapped: use module:<path>)", "", ""])
        for col in range(3):
            self.hooks.resizeColumnToContents(col)
        self._filter_hooks(self.hook_filter.text())
        self._update_memory()

    def _show_memory(self, value) -> None:
        quant, estimates = value
        self._estimates = estimates
        self._quant_reasons = dict(quant)
        for i, q in enumerate(QUANTS):
            item = self.quant.model().item(i)
            item.setEnabled(not quant.get(q))
            item.setToolTip(quant.get(q) or "")
        if quant.get(self.quant.currentText()):
            self.quant.setCurrentText("none")
        self.quant.setToolTip(quant.get("4bit") or "8-bit/4-bit through bitsandbytes")
        self.quant_note.setText(quant.get("4bit") or "")
        self._update_memory()

    def _show_tree(self, tree) -> None:
        self.tree.clear()
        self._fill_tree(tree)

    def _filter_hooks(self, text: str) -> None:
        words = text.lower().split()
        for i in range(self.hooks.topLevelItemCount()):
            item = self.hooks.topLevelItem(i)
            hay = f"{item.text(0)} {item.text(1)}".lower()
            item.setHidden(not all(w in hay for w in words))

    def _fill_tree(self, root: dict) -> None:
        def add(parent, node):
            rep = f" ×{node['repeat']}" if node["repeat"] > 1 else ""
            item = QTreeWidgetItem([node["name"] + rep, node["type"], f"{node['params']:,}"])
            item.setToolTip(0, node["path"])
            if parent is None:
                self.tree.addTopLevelItem(item)
            else:
                parent.addChild(item)
            for c in node["children"]:
                add(item, c)
            return item

        top = add(None, root)
        self.tree.expandToDepth(2)
        top.setExpanded(True)
        for col in range(2):
            self.tree.resizeColumnToContents(col)

    def _update_memory(self) -> None:
        q = self.quant.currentText()
        self.save_quant.setEnabled(bool(self.model_id) and q != "none" and
                                   not self._quant_reasons.get(q, "?"))
        if not self.model_id:
            return
        est = self._estimates.get((self.dtype.currentText(), self.quant.currentText()))
        if est is None:
            return  # still estimating (needs torch to see the device)
        colour = verdict_colour(est["verdict"])
        self.memory.setText(
            f"Weights {human_bytes(est['weights'])} + overhead {human_bytes(est['overhead'])}"
            f" = <b>{human_bytes(est['total'])}</b> on {est['device']}<br>"
            f"{human_bytes(est['available'])} {est['available_what']}: "
            f"<b style='color:{colour}'>{est['verdict']}</b>"
            + (f"<br>Models this app holds in memory now: "
               f"{human_bytes(est['already_loaded_bytes'])} (Release memory frees them)"
               if est.get("already_loaded_bytes") else ""))
