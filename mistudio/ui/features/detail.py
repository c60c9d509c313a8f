"""The feature detail panel: what one feature does, and what the user writes about it.

Filled from ``studio.features.feature(...)`` (a ``FeatureDetail``, read off the GUI thread
by the tab) plus the user's annotation. Emits requests; the tab talks to the services.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (QCheckBox, QComboBox, QFormLayout, QGroupBox, QHBoxLayout,
                               QLabel, QLineEdit, QMenu, QPlainTextEdit, QPushButton,
                               QScrollArea, QToolButton, QVBoxLayout, QWidget)

from mistudio.ui.features.detail_parts import ChipList, HistogramPlot, LogitLensView, density_title
from mistudio.ui.features.interpretation import InterpretationBox
from mistudio.ui.features.table_model import format_density
from mistudio.ui.features.token_text import TokenExample, TokenTextView
from mistudio.ui.kit import palette

CONTEXTS = (("±5 tokens", 5), ("±10 tokens", 10), ("±20 tokens", 20), ("whole window", None))
SCHEMES = (("equal-width intervals (sae_vis)", "interval"), ("rank quantiles (delphi)", "quantile"))


def example_view(ex, caption: str = "", extra=None) -> TokenExample:
    return TokenExample(tokens=list(ex.tokens), values=list(ex.values),
                        token_ids=list(ex.token_ids), caption=caption, max_pos=ex.centre,
                        extra=extra)


class FeatureDetailPanel(QWidget):
    feature_requested = Signal(int)
    back_requested = Signal()
    forward_requested = Signal()
    label_edited = Signal(str)
    notes_edited = Signal(str)
    favourite_toggled = Signal(bool)
    add_to_list_requested = Signal(str)  # a list id, or "" for a new list
    steer_requested = Signal()
    ablate_requested = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.detail = None
        self.n_tokens = 0
        self.ablation: dict[tuple[int, int], str] = {}  # (seq, pos) -> hover line
        self.context = 10
        self.scheme = "interval"
        self.convention = "raw"
        self.source_note = ""  # e.g. the Wikipedia attribution of demo text
        self.topics: dict[tuple[int, int], str] = {}  # (seq, pos) -> "topic · title"

        # ---- header
        self.back_btn = QToolButton(text="◀")
        self.back_btn.setToolTip("Back (Alt+Left)")
        self.back_btn.clicked.connect(self.back_requested)
        self.fwd_btn = QToolButton(text="▶")
        self.fwd_btn.setToolTip("Forward (Alt+Right)")
        self.fwd_btn.clicked.connect(self.forward_requested)
        QShortcut(QKeySequence("Alt+Left"), self, activated=self.back_requested.emit)
        QShortcut(QKeySequence("Alt+Right"), self, activated=self.forward_requested.emit)
        self.title = QLabel()
        self.title.setStyleSheet("font-size: 15pt; font-weight: 600")
        self.fav = QCheckBox("★ Favourite")
        self.fav.toggled.connect(self.favourite_toggled)
        self.list_btn = QPushButton("Add to list")
        self.list_menu = QMenu(self)
        self.list_btn.setMenu(self.list_menu)
        self.steer_btn = QPushButton("Steer with this feature")
        self.steer_btn.setToolTip("Open the Steering tab with this feature chosen")
        self.steer_btn.clicked.connect(self.steer_requested)
        head = QHBoxLayout()
        for w in (self.back_btn, self.fwd_btn, self.title):
            head.addWidget(w)
        head.addStretch(1)
        for w in (self.fav, self.list_btn, self.steer_btn):
            head.addWidget(w)

        self.stats = QLabel()
        self.stats.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.in_lists = QLabel()
        self.in_lists.setStyleSheet(palette.css("text.muted"))

        # ---- label & notes (saved as you type, debounced)
        self.label_edit = QLineEdit()
        self.label_edit.setPlaceholderText("Label: what does this feature fire on?")
        self.notes_edit = QPlainTextEdit()
        self.notes_edit.setPlaceholderText("Notes")
        self.notes_edit.setMaximumHeight(70)
        self._save_timer = QTimer(self, singleShot=True, interval=600)
        self._save_timer.timeout.connect(self.flush_edits)
        self.label_edit.textEdited.connect(lambda _t: self._save_timer.start())
        self.label_edit.editingFinished.connect(self.flush_edits)
        self.notes_edit.textChanged.connect(self._notes_changed)
        self._loading = False
        self._saved = ("", "")
        form = QFormLayout()
        form.addRow("Label", self.label_edit)
        form.addRow("Notes", self.notes_edit)

        # ---- auto-interpretation (filled by the tab's FeatureExplainer)
        self.interp = InterpretationBox()

        # ---- histogram
        self.hist = HistogramPlot()

        # ---- examples
        self.context_box = QComboBox()
        for text, n in CONTEXTS:
            self.context_box.addItem(text, n)
        self.context_box.setCurrentIndex(1)
        self.context_box.currentIndexChanged.connect(self._context_changed)
        self.ablate_btn = QPushButton("Ablate on top examples")
        self.ablate_btn.setToolTip("Remove this feature from the SAE output spliced into the "
                                   "model; the hover then shows each token's loss change")
        self.ablate_btn.clicked.connect(self.ablate_requested)
        self.ablation_note = QLabel()
        self.ablation_note.setStyleSheet(palette.css("text.muted"))
        ex_bar = QHBoxLayout()
        ex_bar.addWidget(QLabel("Context"))
        ex_bar.addWidget(self.context_box)
        ex_bar.addStretch(1)
        ex_bar.addWidget(self.ablation_note)
        ex_bar.addWidget(self.ablate_btn)
        self.top_view = TokenTextView()
        self.source_label = QLabel()
        self.source_label.setStyleSheet(palette.css("text.muted", "font-size: 8pt"))
        self.source_label.setOpenExternalLinks(True)

        self.scheme_box = QComboBox()
        for text, key in SCHEMES:
            self.scheme_box.addItem(text, key)
        self.scheme_box.currentIndexChanged.connect(self._scheme_changed)
        self.interval_view = TokenTextView()
        interval_box = QGroupBox("Interval samples")
        ib = QVBoxLayout(interval_box)
        row = QHBoxLayout()
        row.addWidget(QLabel("Sampling"))
        row.addWidget(self.scheme_box)
        row.addStretch(1)
        ib.addLayout(row)
        ib.addWidget(self.interval_view)

        # ---- logit lens
        self.lens = LogitLensView()
        self.convention_box = QComboBox()
        self.convention_box.addItem("raw W_U (sae_vis)", "raw")
        self.convention_box.addItem("final-norm gain folded (TransformerLens)", "folded")
        self.convention_box.currentIndexChanged.connect(self._convention_changed)
        lens_box = QGroupBox("Logit lens")
        lb = QVBoxLayout(lens_box)
        lb.addWidget(self.convention_box)
        lb.addWidget(self.lens)

        # ---- neighbours
        self.correlated = ChipList()
        self.neighbours = ChipList()
        self.neurons = QLabel()
        self.neurons.setWordWrap(True)
        for chips in (self.correlated, self.neighbours):
            chips.feature_clicked.connect(self.feature_requested)
        nb_box = QGroupBox("Related features")
        nb = QFormLayout(nb_box)
        nb.addRow("Correlated (Pearson r)", self.correlated)
        nb.addRow("Decoder cosine", self.neighbours)
        nb.addRow("MLP neurons", self.neurons)

        top_box = QGroupBox("Top activations")
        tb = QVBoxLayout(top_box)
        tb.addLayout(ex_bar)
        tb.addWidget(self.top_view)
        tb.addWidget(self.source_label)

        body = QWidget()
        col = QVBoxLayout(body)
        col.addLayout(head)
        col.addWidget(self.stats)
        col.addWidget(self.in_lists)
        col.addLayout(form)
        col.addWidget(self.interp)
        col.addWidget(self.hist)
        col.addWidget(top_box)
        col.addWidget(interval_box)
        col.addWidget(lens_box)
        col.addWidget(nb_box)
        col.addStretch(1)
        self.scroll = QScrollArea()
        self.scroll.setWidgetResizable(True)
        self.scroll.setWidget(body)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.scroll)

    def deferred_parts(self) -> list:
        """The plots, built one per idle turn after the panel (see kit.lazy_pages)."""
        return [self.hist.ensure, self.lens.hist.ensure]

    # ------------------------------------------------------------------ filling

    def set_history(self, can_back: bool, can_forward: bool) -> None:
        self.back_btn.setEnabled(can_back)
        self.fwd_btn.setEnabled(can_forward)

    def set_lists(self, lists, member_of: set[str]) -> None:
        """The "Add to list" menu: every list of the SAE, and a new one."""
        self.list_menu.clear()
        for rec in lists:
            act = self.list_menu.addAction(f"{rec.name} ({rec.size})")
            act.setEnabled(rec.id not in member_of)
            act.triggered.connect(lambda _=False, i=rec.id: self.add_to_list_requested.emit(i))
        self.list_menu.addSeparator()
        new = self.list_menu.addAction("New list...")
        new.triggered.connect(lambda: self.add_to_list_requested.emit(""))
        names = [rec.name for rec in lists if rec.id in member_of]
        self.in_lists.setText(("In lists: " + ", ".join(names)) if names else "")

    def set_annotation(self, ann) -> None:
        self._loading = True
        self.label_edit.setText(ann.label)
        self.notes_edit.setPlainText(ann.notes)
        self.fav.blockSignals(True)
        self.fav.setChecked(ann.favourite)
        self.fav.blockSignals(False)
        self._saved = (ann.label, ann.notes)
        self._loading = False

    def set_detail(self, detail, n_tokens: int, labels: dict[int, str]) -> None:
        self.detail = detail
        self.n_tokens = n_tokens
        self.ablation = {}
        self.ablation_note.setText("")
        f = detail.feature
        self.title.setText(f"Feature #{f}")
        dead = " · <b>dead</b> (never fired on the analysed tokens)" if detail.dead else ""
        self.stats.setText(
            f"density {format_density(detail.density)} · max {detail.max_act:.4g} · "
            f"mean (non-zero) {detail.mean_act:.4g} · fired on {detail.firing_count:,} of "
            f"{n_tokens:,} tokens{dead}")
        counts, edges = detail.histogram
        self.hist.set_histogram(counts, edges, density_title(detail.density, detail.firing_count,
                                                             n_tokens))
        self.ablate_btn.setEnabled(not detail.dead)
        self._fill_examples()
        self._fill_intervals()
        self.lens.set_lens(detail.logit_lens[self.convention])

        def chip(i, v, kind):
            label = labels.get(i, "")
            text = f"#{i} {v:+.2f}" + (f" {label[:24]}" if label else "")
            return (i, text, f"feature {i}: {kind} {v:+.4f}" + (f"\n{label}" if label else ""))

        self.correlated.set_chips([chip(i, v, "Pearson r") for i, v in detail.correlated])
        self.neighbours.set_chips([chip(i, v, "decoder cosine")
                                   for i, v in detail.decoder_neighbours])
        self.neurons.setText(", ".join(f"n{i} {v:+.3f} ({p:.0f}% of L1)"
                                       for i, v, p in detail.neurons) or
                             "(not an MLP-neuron hook)")
        self.scroll.verticalScrollBar().setValue(0)

    def _caption(self, ex, prefix: str = "") -> str:
        topic = self.topics.get((ex.seq, ex.pos), "")
        where = f"row {ex.seq}, token {ex.pos}" + (f" · {topic}" if topic else "")
        return f"{prefix}{ex.value:.3g}  ({where})"

    def _fill_examples(self) -> None:
        if self.detail is None:
            return
        views = []
        for ex in self.detail.top_examples:
            extra = None
            if self.ablation:
                base = ex.pos - ex.centre
                extra = [self.ablation.get((ex.seq, base + i), "") for i in range(len(ex.tokens))]
            views.append(example_view(ex, self._caption(ex), extra))
        self.top_view.set_context(self.context)
        self.top_view.set_examples(views, scale=self.detail.max_act or None)
        self.source_label.setText(self.source_note)
        self.source_label.setVisible(bool(self.source_note))

    def _fill_intervals(self) -> None:
        if self.detail is None:
            return
        groups = self.detail.intervals if self.scheme == "interval" else self.detail.quantiles
        views = []
        for g in reversed(groups):  # highest first, under the top group
            head = (f"Interval {g.lo:.3g}–{g.hi:.3g}, contains {g.share * 100:.1f}% of active "
                    f"tokens · ")
            for j, ex in enumerate(g.examples):
                views.append(example_view(ex, self._caption(ex, head if j == 0 else "")))
        self.interval_view.set_context(self.context)
        self.interval_view.set_examples(views, scale=self.detail.max_act or None)

    def set_ablation(self, lines: dict[tuple[int, int], str], summary: str) -> None:
        self.ablation = lines
        self.ablation_note.setText(summary)
        self._fill_examples()

    def set_prompt_marker(self, value: float | None) -> None:
        self.hist.set_marker(value)

    # ------------------------------------------------------------------ edits

    def _notes_changed(self) -> None:
        if not self._loading:
            self._save_timer.start()

    def flush_edits(self) -> None:
        """Emit label/notes edits not yet saved (also on feature change and close)."""
        self._save_timer.stop()
        label, notes = self.label_edit.text(), self.notes_edit.toPlainText()
        if label != self._saved[0]:
            self.label_edited.emit(label)
        if notes != self._saved[1]:
            self.notes_edited.emit(notes)
        self._saved = (label, notes)

    def _context_changed(self) -> None:
        self.context = self.context_box.currentData()
        self.top_view.set_context(self.context)
        self.interval_view.set_context(self.context)

    def _scheme_changed(self) -> None:
        self.scheme = self.scheme_box.currentData()
        self._fill_intervals()

    def _convention_changed(self) -> None:
        self.convention = self.convention_box.currentData()
        if self.detail is not None:
            self.lens.set_lens(self.detail.logit_lens[self.convention])
