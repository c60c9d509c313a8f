"""The prompt view: type or paste text, see the features that fire on each token.

Runs ``studio.features.top_features`` off the GUI thread (the model stays loaded between
calls). Tokens are coloured by their strongest feature; click a token for its top-k
features as chips, click a chip to open that feature. "Highlight the open feature" colours
the same text by one feature's activation instead.
"""

from __future__ import annotations

import time

import numpy as np
from PySide6.QtCore import Signal
from PySide6.QtWidgets import (QCheckBox, QHBoxLayout, QLabel, QPlainTextEdit, QPushButton,
                               QScrollArea, QSpinBox, QVBoxLayout, QWidget)

from mistudio.ui.kit.background import BackgroundCalls
from mistudio.ui.kit.gc_freeze import freeze_long_lived
from mistudio.ui.kit.native_libraries import import_torch_quietly
from mistudio.ui.features.detail_parts import ChipList
from mistudio.ui.features.token_text import TokenExample, TokenTextView
from mistudio.ui.kit import palette

DEFAULT_PROMPT = "The Eiffel Tower is in Paris, the capital of France."


class PromptView(QWidget):
    feature_requested = Signal(int)

    def __init__(self, tab, parent=None):
        super().__init__(parent)
        self.tab = tab
        self.calls = BackgroundCalls(self, name="features-prompt")
        self.result = None  # PromptFeatures of the last run
        self.token = None  # the clicked token's position
        self.text = QPlainTextEdit(DEFAULT_PROMPT)
        self.text.setMaximumHeight(90)
        self.k = QSpinBox(minimum=1, maximum=50, value=5)
        self.k.setPrefix("top ")
        self.k.setToolTip("How many features to list per token")
        self.run_btn = QPushButton("Run")
        self.run_btn.setToolTip("Read the text through the model and the SAE")
        self.run_btn.clicked.connect(self.run)
        self.highlight = QCheckBox("Highlight the open feature")
        self.highlight.toggled.connect(lambda _on: self.render())
        self.status = QLabel()
        self.status.setStyleSheet(palette.css("text.muted"))
        self.tokens = TokenTextView()
        self.tokens.token_clicked.connect(self._token_clicked)
        self.token_title = QLabel("Click a token to list its features.")
        self.chips = ChipList()
        self.chips.setMaximumHeight(140)
        self.chips.feature_clicked.connect(self.feature_requested)
        bar = QHBoxLayout()
        for w in (self.k, self.run_btn, self.highlight, self.status):
            bar.addWidget(w)
        bar.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.tokens)
        lay = QVBoxLayout(self)
        lay.addWidget(QLabel("Text"))
        lay.addWidget(self.text)
        lay.addLayout(bar)
        lay.addWidget(scroll, 1)
        lay.addWidget(self.token_title)
        lay.addWidget(self.chips)

    def run(self) -> None:
        sae_id = self.tab.state.sae_id
        text, k = self.text.toPlainText(), self.k.value()
        if not sae_id:
            self.status.setText("Pick an SAE first.")
            return
        self.run_btn.setEnabled(False)
        self.status.setText("Running (the first run loads the model)...")

        def done(got):
            result, seconds = got
            freeze_long_lived()  # the model (torch with it) stays loaded: see kit/gc_freeze
            self.run_btn.setEnabled(True)
            self.result = result
            self.token = None
            self.chips.set_chips([])
            self.token_title.setText("Click a token to list its features.")
            self.status.setText(f"{len(result.tokens)} tokens · {seconds * 1000:.0f} ms")
            self.render()
            if self.tab.state.feature is not None:
                self.tab.detail.set_prompt_marker(self.value_of(self.tab.state.feature))

        def failed(msg):
            self.run_btn.setEnabled(True)
            self.status.setText(msg)

        features = self.tab.studio.features

        def work():
            import_torch_quietly()  # the first run imports torch: the GUI thread stays live
            t = time.perf_counter()
            result = features.top_features(sae_id, text, k=k)
            return result, time.perf_counter() - t

        self.calls.call("prompt", work, done, failed)

    # ------------------------------------------------------------------ values

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(feature ids [T, k], values [T, k]) of the last run; -1 / 0 where a token has
        fewer than k features (BOS has none)."""
        r = self.result
        k = max((len(f) for f in r.features), default=0)
        ids = np.full((len(r.tokens), k), -1, np.int64)
        vals = np.zeros((len(r.tokens), k), np.float64)
        for t, feats in enumerate(r.features):
            for j, (f, v) in enumerate(feats):
                ids[t, j], vals[t, j] = f, v
        return ids, vals

    def feature_values(self, feature: int) -> np.ndarray:
        """The feature's activation on each prompt token (0 where it is not among a
        token's top-k: the prompt API reports top-k features per token)."""
        ids, vals = self.arrays()
        if not ids.size:
            return np.zeros(len(self.result.tokens))
        return np.where(ids == feature, vals, 0.0).max(axis=1)

    def value_of(self, feature: int) -> float | None:
        """The feature's largest activation on the prompt (the histogram's marker)."""
        if self.result is None:
            return None
        v = self.feature_values(feature)
        return float(v.max()) if len(v) and v.max() > 0 else None

    def render(self) -> None:
        r = self.result
        if r is None:
            return
        ids, vals = self.arrays()
        f = self.tab.state.feature
        if self.highlight.isChecked() and f is not None:
            values = self.feature_values(f)
            caption = f"feature #{f} on each token"
            extra = [f"feature #{f}: {v:.4g}" for v in values]
        else:
            values = vals[:, 0] if vals.size else np.zeros(len(r.tokens))
            caption = "strongest feature on each token (click a token for its top features)"
            labels = self.tab.state.labels()
            extra = ["\n".join(f"#{int(i)} {v:.3g} {labels.get(int(i), '')}".rstrip()
                               for i, v in zip(ids[t], vals[t]) if i >= 0 and v > 0)
                     for t in range(len(r.tokens))]
        ex = TokenExample(tokens=list(r.tokens), values=[float(v) for v in values],
                          token_ids=list(r.token_ids), caption=caption, extra=extra)
        self.tokens.set_examples([ex])

    def _token_clicked(self, _example: int, position: int) -> None:
        r = self.result
        if r is None:
            return
        self.token = position
        labels = self.tab.state.labels()
        ids, vals = (a[position] for a in self.arrays())
        self.token_title.setText(f"Features on {r.tokens[position]!r} (token {position}):")
        self.chips.set_chips([(int(i), f"#{int(i)} {v:.3g}" + (f" {labels[int(i)][:24]}"
                                                               if int(i) in labels else ""),
                               labels.get(int(i), f"feature {int(i)}"))
                              for i, v in zip(ids, vals) if i >= 0 and v > 0])

    def shutdown(self) -> None:
        self.calls.close()
