"""The "Extract first" part of the New training page: model, tokenization, hook point, tokens.

Chosen instead of an activation set when there is none yet: Start then queues the
extraction and, when it completes, the training (``mistudio.app.workflows``). The width and
(at most) the number of tokens are known before extracting, so the form below validates
and estimates as it does for an existing activation set.
"""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QComboBox, QFormLayout, QGroupBox, QLineEdit, QWidget

from mistudio.models.hooks import HOOK_LABELS
from mistudio.paths import human_bytes
from mistudio.ui.training.form import parse_number
from mistudio.ui.kit.palette import span
from mistudio.ui.kit.labels import hint_label

DEFAULT_TOKENS = "1M"


class ExtractFirstBox(QGroupBox):
    """Emits ``changed()`` after any edit."""

    changed = Signal()

    def __init__(self, studio, parent: QWidget | None = None):
        super().__init__("Extract first", parent)
        self.studio = studio
        self._summary: dict | None = None
        self._tokens: dict[str, int] = {}  # tokenization id -> tokens
        self.model_combo = QComboBox()
        self.model_combo.setToolTip("A model from the Models tab")
        self.tok_combo = QComboBox()
        self.tok_combo.setToolTip("A tokenization made with this model's tokenizer "
                                  "(Datasets tab → Tokenize)")
        self.hook_combo = QComboBox()
        self.hook_combo.setToolTip("Where to read the activations the SAE learns from")
        self.tokens_edit = QLineEdit(DEFAULT_TOKENS)
        self.tokens_edit.setToolTip("How many tokens to extract (at most the tokenization's). "
                                    "Accepts 2e6, 2M, 500k; 0 takes all.")
        self.info = hint_label()
        form = QFormLayout(self)
        form.addRow("Model", self.model_combo)
        form.addRow("Tokenized dataset", self.tok_combo)
        form.addRow("Hook point", self.hook_combo)
        form.addRow("Tokens to extract", self.tokens_edit)
        form.addRow(self.info)
        self._form = form
        self.on_the_fly = False
        self.model_combo.currentIndexChanged.connect(self._on_model)
        self.tok_combo.currentIndexChanged.connect(self._emit)
        self.hook_combo.currentIndexChanged.connect(self._emit)
        self.tokens_edit.textEdited.connect(self._emit)
        self.reload()

    # ------------------------------------------------------------------ lists

    def reload(self) -> None:
        current = self.model_combo.currentData()
        self.model_combo.blockSignals(True)
        self.model_combo.clear()
        try:
            models = [m for m in self.studio.models.list() if m.status == "ready"]
        except Exception:  # the models area may be missing in a partial install
            models = []
        if not models:
            self.model_combo.addItem("— no model yet: add one in the Models tab —", "")
        for m in models:
            self.model_combo.addItem(f"{m.name} · {m.architecture or m.family}", m.id)
        i = self.model_combo.findData(current) if current else -1
        self.model_combo.setCurrentIndex(max(0, i))
        self.model_combo.blockSignals(False)
        self._on_model()

    def _on_model(self) -> None:
        model_id = self.model_combo.currentData() or ""
        self._summary = None
        hooks: list[dict] = []
        if model_id:
            try:  # config.json + safetensors headers: milliseconds
                self._summary = self.studio.models.inspect(model_id)
                hooks = self.studio.models.hook_points(model_id)
            except Exception as exc:  # noqa: BLE001 - shown under the form
                self.info.setText(span("error", str(exc)))
        self._fill_tokenizations(model_id)
        current = self.hook_combo.currentData()
        self.hook_combo.blockSignals(True)
        self.hook_combo.clear()
        for h in hooks:
            self.hook_combo.addItem(f"{h['name']}  ({HOOK_LABELS.get(h['type'], h['type'])})",
                                    h["name"])
        if hooks:
            n_layers = self._summary["n_layers"]
            default = f"blocks.{n_layers // 2}.hook_resid_post"
            i = self.hook_combo.findData(current) if current else -1
            self.hook_combo.setCurrentIndex(i if i >= 0 else
                                            max(0, self.hook_combo.findData(default)))
        self.hook_combo.blockSignals(False)
        self._emit()

    def _fill_tokenizations(self, model_id: str) -> None:
        current = self.tok_combo.currentData()
        self.tok_combo.blockSignals(True)
        self.tok_combo.clear()
        self._tokens.clear()
        toks, names = [], {}
        if model_id:
            try:
                fingerprint = self.studio.models.get(model_id).tokenizer_fingerprint
                names = {d.id: d.name for d in self.studio.datasets.list()}
                toks = [t for t in self.studio.datasets.tokenizations()
                        if t.status == "ready" and (t.model_id == model_id or bool(
                            fingerprint and t.tokenizer_fingerprint == fingerprint))]
            except Exception:  # the datasets area may be missing
                toks = []
        if model_id and not toks:
            self.tok_combo.addItem("— none with this model's tokenizer: tokenize a dataset "
                                   "in the Datasets tab —", "")
        for t in toks:
            self.tok_combo.addItem(f"{names.get(t.dataset_id, t.dataset_id)} · "
                                   f"{t.n_tokens or 0:,} tokens ({t.seq_len}/sequence)", t.id)
            self._tokens[t.id] = int(t.n_tokens or 0)
        i = self.tok_combo.findData(current) if current else -1
        self.tok_combo.setCurrentIndex(max(0, i))
        self.tok_combo.blockSignals(False)

    def select(self, *, model: str = "", tokenization: str = "", hook_name: str = "",
               tokens: int | str | None = None) -> None:
        """Choose values (tests, a duplicated workflow)."""
        if model:
            self.model_combo.setCurrentIndex(max(0, self.model_combo.findData(model)))
        if tokenization:
            self.tok_combo.setCurrentIndex(max(0, self.tok_combo.findData(tokenization)))
        if hook_name:
            self.hook_combo.setCurrentIndex(max(0, self.hook_combo.findData(hook_name)))
        if tokens is not None:
            self.tokens_edit.setText(str(tokens))
        self._emit()

    def set_on_the_fly(self, on: bool) -> None:
        """The same choices for training on the fly: no extraction, so no token count
        (every token of the tokenization; epochs run the model again)."""
        self.on_the_fly = bool(on)
        self.setTitle("Train on the fly" if on else "Extract first")
        self._form.setRowVisible(self.tokens_edit, not on)
        self._emit()

    # ------------------------------------------------------------------ values

    def _emit(self, *_args) -> None:
        self._update_info()
        self.changed.emit()

    def d_in(self) -> int | None:
        return int(self._summary["d_model"]) if self._summary else None

    def max_tokens(self) -> int | None:
        try:
            return int(parse_number(self.tokens_edit.text(), True))
        except ValueError:
            return None

    def expected_rows(self) -> int | None:
        """At most this many activation rows (the tokenization may hold fewer)."""
        available = self._tokens.get(self.tok_combo.currentData() or "")
        if self.on_the_fly:
            return available
        wanted = self.max_tokens()
        if available is None or wanted is None:
            return None
        return min(wanted, available) if wanted else available

    def settings(self) -> tuple[dict, list[str]]:
        """``{model, tokenization, hook_name, max_tokens}`` and what is missing or wrong."""
        problems = []
        values = {"model": self.model_combo.currentData() or "",
                  "tokenization": self.tok_combo.currentData() or "",
                  "hook_name": self.hook_combo.currentData() or "",
                  "max_tokens": self.max_tokens()}
        what = "Train on the fly" if self.on_the_fly else "Extract first"
        if not values["model"]:
            problems.append(f"{what}: choose a model (add one in the Models tab).")
        elif not values["tokenization"]:
            problems.append(f"{what}: tokenize a dataset with this model's tokenizer "
                            "in the Datasets tab.")
        elif not values["hook_name"]:
            problems.append(f"{what}: choose a hook point.")
        if self.on_the_fly:
            return values, problems
        if values["max_tokens"] is None:
            problems.append(f"Tokens to extract: '{self.tokens_edit.text()}' is not a whole "
                            "number (e.g. 500k, 2M; 0 takes all).")
        elif values["max_tokens"] < 0:
            problems.append("Tokens to extract cannot be negative (0 takes all).")
        return values, problems

    def _update_info(self) -> None:
        rows, d = self.expected_rows(), self.d_in()
        if not rows or not d:
            if self._summary is not None:
                self.info.setText("")
            return
        if self.on_the_fly:
            self.info.setText(f"{rows:,} tokens per epoch × width {d}, computed as training "
                              "goes: nothing on disk; memory holds the shuffle buffer "
                              "(about 2 × its size × the width).")
            return
        self.info.setText(f"Up to {rows:,} tokens × width {d} (float32) ≈ "
                          f"{human_bytes(rows * d * 4)} on disk; the training starts when "
                          "the extraction completes.")
