"""Which SAE and which of its analyses the tab shows; start an analysis, with its progress
shown in place."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (QComboBox, QHBoxLayout, QLabel, QProgressBar, QPushButton,
                               QSpinBox, QWidget)

from mistudio.ui.kit import palette

DEFAULT_MAX_TOKENS = 24_576 * 128  # Neuronpedia's default (24,576 contexts x 128)


class AnalysisPicker(QWidget):
    sae_changed = Signal(str)
    analysis_changed = Signal(str)
    analyze_requested = Signal(dict)  # start_analysis keyword arguments
    cancel_requested = Signal(str)  # job id

    def __init__(self, parent=None):
        super().__init__(parent)
        self.sae_box = QComboBox()
        self.sae_box.setMinimumWidth(260)
        self.analysis_box = QComboBox()
        self.analysis_box.setMinimumWidth(260)
        self.tok_box = QComboBox()
        self.tok_box.setMaximumWidth(220)
        self.tok_box.setToolTip("Text to analyse over (a tokenization made with the SAE's "
                                "model's tokenizer); automatic: the SAE's own")
        self.max_tokens = QSpinBox(minimum=0, maximum=2_000_000_000, singleStep=65_536,
                                   value=DEFAULT_MAX_TOKENS)
        self.max_tokens.setGroupSeparatorShown(True)
        self.max_tokens.setSpecialValueText("all tokens")
        self.max_tokens.setToolTip("Tokens to analyse (0: all the data has). Default: "
                                   "Neuronpedia's 24,576 x 128")
        self.analyze_btn = QPushButton("Analyze")
        self.analyze_btn.setToolTip("Run a feature analysis of this SAE (a background job)")
        self.analyze_btn.clicked.connect(self._analyze)
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(240)
        self.progress.setVisible(False)
        self.progress_text = QLabel()
        self.progress_text.setStyleSheet(palette.css("text.muted"))
        self.cancel_btn = QPushButton("Cancel")
        self.cancel_btn.setVisible(False)
        self.cancel_btn.clicked.connect(lambda: self.cancel_requested.emit(self.job_id or ""))
        self.job_id: str | None = None  # the analysis job shown in the bar
        self.sae_box.currentIndexChanged.connect(
            lambda _i: self.sae_changed.emit(self.sae_box.currentData() or ""))
        self.analysis_box.currentIndexChanged.connect(
            lambda _i: self.analysis_changed.emit(self.analysis_box.currentData() or ""))
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        for w in (QLabel("SAE"), self.sae_box, QLabel("Analysis"), self.analysis_box,
                  QLabel("over"), self.tok_box, self.max_tokens, self.analyze_btn,
                  self.progress, self.progress_text, self.cancel_btn):
            lay.addWidget(w)
        lay.addStretch(1)

    def set_saes(self, saes: list[tuple[str, str]], keep: str | None = None) -> None:
        self.sae_box.blockSignals(True)
        self.sae_box.clear()
        for sae_id, text in saes:
            self.sae_box.addItem(text, sae_id)
        i = self.sae_box.findData(keep) if keep else 0
        self.sae_box.setCurrentIndex(max(i, 0))
        self.sae_box.blockSignals(False)

    def set_tokenizations(self, items: list[tuple[str, str]]) -> None:
        keep = self.tok_box.currentData()
        self.tok_box.clear()
        self.tok_box.addItem("automatic", "")
        for value, text in items:
            self.tok_box.addItem(text, value)
        self.tok_box.setCurrentIndex(max(self.tok_box.findData(keep), 0))

    def set_analyses(self, analyses, keep: str | None = None) -> None:
        """``analyses``: AnalysisRecords, newest first; only completed ones can be opened."""
        self.analysis_box.blockSignals(True)
        self.analysis_box.clear()
        for rec in analyses:
            n = f"{rec.n_tokens:,} tokens" if rec.n_tokens else ""
            text = f"{rec.id} · {rec.status}" + (f" · {n}" if n else "") + \
                f" · {rec.created_at[:16].replace('T', ' ')}"
            self.analysis_box.addItem(text, rec.id)
            if rec.status != "completed":  # listed (so its state shows), not selectable
                item = self.analysis_box.model().item(self.analysis_box.count() - 1)
                item.setEnabled(False)
        done = [rec.id for rec in analyses if rec.status == "completed"]
        target = keep if keep in done else (done[0] if done else None)
        self.analysis_box.setCurrentIndex(self.analysis_box.findData(target) if target else -1)
        self.analysis_box.blockSignals(False)

    def current_sae(self) -> str | None:
        return self.sae_box.currentData()

    def current_analysis(self) -> str | None:
        return self.analysis_box.currentData()

    def _analyze(self) -> None:
        kw = {"max_tokens": self.max_tokens.value()}
        if self.tok_box.currentData():
            kw["tokenization"] = self.tok_box.currentData()
        self.analyze_requested.emit(kw)

    def show_job(self, job_id: str | None, done: float = 0, total: float | None = None,
                 message: str = "") -> None:
        self.job_id = job_id
        running = job_id is not None
        self.progress.setVisible(running)
        self.cancel_btn.setVisible(running)
        self.analyze_btn.setEnabled(not running)
        if running:
            if total:
                self.progress.setRange(0, 1000)
                self.progress.setValue(int(1000 * done / total))
            else:
                self.progress.setRange(0, 0)
        self.progress_text.setText(message)
