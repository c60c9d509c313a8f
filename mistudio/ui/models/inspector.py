"""The architecture inspector: summary, memory estimate, module tree, hook points."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QComboBox, QFormLayout, QHBoxLayout, QLabel, QSplitter,
                               QTreeWidget, QTreeWidgetItem, QVBoxLayout, QWidget)

from mistudio.paths import human_bytes
from mistudio.ui.models.background import BackgroundCall

_VERDICT_COLOURS = {"fits": "#15803d", "tight": "#b45309", "won't fit": "#b91c1c"}


class ArchitectureInspector(QWidget):
    """Shows one model; ``hook_chosen(name)`` when a hook point is double-clicked."""

    hook_chosen = Signal(str)
    loaded = Signal(str)  # model id whose details arrived (tests wait on it)

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
            self.fields[key] = QLabel("-")
            self.fields[key].setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            self.form.addRow(label, self.fields[key])
        top.addLayout(self.form, 1)
        mem = QVBoxLayout()
        row = QHBoxLayout()
        row.addWidget(QLabel("Load as"))
        self.dtype = QComboBox()
        self.dtype.addItems(["float32", "bfloat16", "float16"])
        self.quant = QComboBox()
        self.quant.addItems(["none", "8bit", "4bit"])
        row.addWidget(self.dtype)
        row.addWidget(self.quant)
        mem.addLayout(row)
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
        self.hooks.setHeaderLabels(["Hook point", "Module", "Reads"])
        self.hooks.itemDoubleClicked.connect(lambda it, _c: self.hook_chosen.emit(it.text(0)))
        split.addWidget(self.tree)
        split.addWidget(self.hooks)
        lay.addWidget(split, 1)
        self.dtype.currentTextChanged.connect(lambda _t: self._update_memory())
        self.quant.currentTextChanged.connect(lambda _t: self._update_memory())
        self._summary: dict | None = None
        self._calls: list[BackgroundCall] = []  # kept alive until they report

    def show_model(self, model_id: str | None) -> None:
        self.model_id = model_id
        self.tree.clear()
        self.hooks.clear()
        for f in self.fields.values():
            f.setText("-")
        self.memory.setText("")
        self._summary = None
        if not model_id:
            return
        rec = self.studio.models.get(model_id)
        self.fields["source"].setText(f"{rec.source}: {rec.source_ref}")
        if rec.status != "ready":
            self.memory.setText(f"{rec.status}. {rec.error}")
            return
        self.memory.setText("Reading the model...")
        studio = self.studio

        def work():
            return (model_id, studio.models.inspect(model_id),
                    studio.models.module_tree(model_id), studio.models.hook_points(model_id),
                    studio.models.quantization_options())

        # bound methods of this widget (not lambdas): Qt then delivers on the GUI thread
        self._calls = [c for c in self._calls if c.running()]
        self._calls.append(BackgroundCall(work, self._show, self._failed))

    def _failed(self, exc) -> None:
        self.memory.setText(f"Could not read the model: {exc}")

    def _show(self, result) -> None:
        model_id, summary, tree, hook_points, quant = result
        if model_id != self.model_id:
            return  # the user moved on
        self._summary = summary
        s = summary
        self.fields["family"].setText(f"{s['family_label']} ({s['architecture']})")
        for key in ("n_layers", "d_model", "d_mlp", "vocab_size", "context_length", "dtype"):
            self.fields[key].setText(str(s.get(key)))
        self.fields["heads"].setText(f"{s['n_heads']} ({s['n_kv_heads']})")
        self.fields["n_params"].setText(f"{s['n_params']:,} ({s['n_params'] / 1e6:.1f}M)")
        self.fields["weights_bytes"].setText(human_bytes(s["weights_bytes"]))
        for i, q in enumerate(("none", "8bit", "4bit")):
            item = self.quant.model().item(i)
            item.setEnabled(not quant.get(q))
            item.setToolTip(quant.get(q) or "")
        self.quant.setToolTip(quant.get("4bit") or "8-bit/4-bit through bitsandbytes")
        self._fill_tree(tree)
        for h in hook_points:
            QTreeWidgetItem(self.hooks, [h["name"], h["module"], h["io"]]).setToolTip(
                0, h["label"] + " — double-click to extract here")
        if not hook_points:
            QTreeWidgetItem(self.hooks, ["(family not mapped: use module:<path>)", "", ""])
        self._update_memory()
        self.loaded.emit(model_id)

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
        self.tree.resizeColumnToContents(0)

    def _update_memory(self) -> None:
        if not self._summary or not self.model_id:
            return
        try:
            est = self.studio.models.memory_estimate(
                self.model_id, dtype=self.dtype.currentText(),
                quantization=self.quant.currentText(), device="auto")
        except Exception as exc:  # shown inline, never a crash
            self.memory.setText(str(exc))
            return
        colour = _VERDICT_COLOURS[est["verdict"]]
        self.memory.setText(
            f"Weights {human_bytes(est['weights'])} + overhead {human_bytes(est['overhead'])}"
            f" = <b>{human_bytes(est['total'])}</b> on {est['device']}<br>"
            f"{human_bytes(est['available'])} {est['available_what']}: "
            f"<b style='color:{colour}'>{est['verdict']}</b>")
