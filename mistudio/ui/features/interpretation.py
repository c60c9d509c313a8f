"""Auto-interpretation in the feature panel: the stored explanation of the open feature, its
detection / fuzz scores beside the shuffled-explanation baseline, and "Explain this feature"
(an ``autointerp.run`` job for this one feature, its progress shown in place).

Reads go through ``studio.autointerp`` off the GUI thread (``load_interpretation``); the
job's progress comes from the existing job bridge.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import (QComboBox, QGroupBox, QHBoxLayout, QLabel, QPushButton,
                               QVBoxLayout)

from mistudio.errors import UserError
from mistudio.ui.kit import palette

KIND = "autointerp.run"
SCORERS = ("detection", "fuzz")
NO_MODEL = ("No registered model can explain features: explaining needs an instruct model "
            "whose tokenizer has a chat template. Add one in the Models tab (e.g. the "
            "SmolLM2-135M-Instruct demo model).")


@dataclass
class Interpretation:
    """What the panel shows of one feature (plain data, read off the GUI thread)."""

    feature: int
    explanation: object | None = None  # the newest Explanation, or None
    scores: dict = field(default_factory=dict)  # scorer -> newest ScoreRow
    models: list = field(default_factory=list)  # (model id, name) of chat models


def load_interpretation(studio, sae_id: str, analysis_id: str, feature: int) -> Interpretation:
    ai = studio.autointerp
    scores = {}
    for scorer in SCORERS:
        s = ai.score(sae_id, feature, analysis_id, scorer=scorer)
        if s is not None:
            scores[scorer] = s
    return Interpretation(int(feature), ai.explanation(sae_id, feature, analysis_id), scores,
                          [(m.id, m.name) for m in ai.chat_models()])


def score_line(scorer: str, s) -> str:
    """'detection 0.83 balanced accuracy (shuffled-explanation baseline 0.51)'."""
    base = ("—" if s.baseline_score is None else f"{s.baseline_score:.2f}")
    of = f", explanation of #{s.baseline_feature}" if s.baseline_feature is not None else ""
    line = (f"{scorer} {s.score:.2f} balanced accuracy "
            f"(shuffled-explanation baseline {base}{of}) · {s.tp + s.tn + s.fp + s.fn} answers")
    auroc = getattr(s, "auroc", None)
    if auroc is not None:
        shuffled = getattr(s, "baseline_auroc", None)
        line += f" · AUROC {auroc:.2f}" + ("" if shuffled is None else
                                             f" (shuffled {shuffled:.2f})")
    return line


class InterpretationBox(QGroupBox):
    explain_requested = Signal(str)  # model id

    def __init__(self, parent=None):
        super().__init__("Auto-interpretation", parent)
        self.info: Interpretation | None = None
        self.busy = False
        self.text = QLabel()
        self.text.setWordWrap(True)
        self.text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.scores = QLabel()
        self.scores.setWordWrap(True)
        self.scores.setTextFormat(Qt.TextFormat.PlainText)
        self.source = QLabel()
        self.source.setStyleSheet(palette.css("text.muted"))
        self.model_box = QComboBox()
        self.model_box.setToolTip("The instruct model that writes (and scores) the explanation")
        self.explain_btn = QPushButton("Explain this feature")
        self.explain_btn.clicked.connect(self._explain)
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.status.setStyleSheet(palette.css("text.muted"))
        row = QHBoxLayout()
        row.addWidget(QLabel("Model"))
        row.addWidget(self.model_box, 1)
        row.addWidget(self.explain_btn)
        lay = QVBoxLayout(self)
        for w in (self.text, self.scores, self.source):
            lay.addWidget(w)
        lay.addLayout(row)
        lay.addWidget(self.status)

    def set_interpretation(self, info: Interpretation) -> None:
        self.info = info
        e = info.explanation
        if e is None:
            self.text.setText("<i>Not explained yet.</i>")
            self.source.setText("")
        else:
            self.text.setText(f"<b>{_escape(e.explanation) or '(empty explanation)'}</b>")
            self.source.setText(f"explained by {e.model_name or e.model_id} · prompt "
                                f"{e.prompt_version} · seed {e.seed} · {e.created_at[:16]}")
        self.scores.setText("\n".join(score_line(k, s) for k, s in info.scores.items())
                            if info.scores else ("Not scored yet." if e is not None else ""))
        current = self.model_box.currentData()
        self.model_box.clear()
        for mid, name in info.models:
            self.model_box.addItem(name, mid)
        if current:
            i = self.model_box.findData(current)
            if i >= 0:
                self.model_box.setCurrentIndex(i)
        self._update_button()

    def set_busy(self, busy: bool, message: str = "", role: str = "text.muted") -> None:
        self.busy = busy
        self.status.setStyleSheet(palette.css(role))
        self.status.setText(message)
        self._update_button()

    def _update_button(self) -> None:
        has_model = self.model_box.count() > 0
        self.model_box.setEnabled(has_model)
        self.explain_btn.setEnabled(has_model and not self.busy)
        self.explain_btn.setToolTip(
            NO_MODEL if not has_model else "Explaining..." if self.busy else
            "Explain this feature and score the explanation (detection), as a background job")
        if not has_model and not self.busy:
            self.status.setStyleSheet(palette.css("text.muted"))
            self.status.setText(NO_MODEL)

    def _explain(self) -> None:
        mid = self.model_box.currentData()
        if mid:
            self.explain_requested.emit(mid)


def _escape(text: str) -> str:
    import html

    return html.escape(text)


class FeatureExplainer(QObject):
    """Runs "Explain this feature" for the tab: starts the job, shows its progress in the
    box while that feature is open, and refreshes the box and the table row when it ends."""

    finished = Signal(int)  # the feature whose explanation job ended (completed)

    def __init__(self, tab, box: InterpretationBox):
        super().__init__(tab)
        self.tab = tab
        self.box = box
        self.jobs: dict[str, int] = {}  # job id -> feature
        box.explain_requested.connect(self.explain)
        tab.bridge.status.connect(self._on_status)
        tab.bridge.progress.connect(self._on_progress)

    def load(self, feature: int, keep_message: bool = False) -> None:
        st = self.tab.state
        sae_id, fa_id, studio = st.sae_id, st.analysis_id, self.tab.studio
        running = feature in self.jobs.values()
        if running or not keep_message:
            self.box.set_busy(running, "Explaining..." if running else "")
        self.tab.calls.call("interpretation",
                            lambda: load_interpretation(studio, sae_id, fa_id, feature),
                            self._loaded, self.tab.show_error)

    def _loaded(self, info: Interpretation) -> None:
        if info.feature == self.tab.state.feature:
            self.box.set_interpretation(info)

    def explain(self, model_id: str) -> None:
        st = self.tab.state
        f = st.feature
        if f is None:
            return
        try:
            job = self.tab.studio.autointerp.start(st.sae_id, features=str(f), model=model_id,
                                                   analysis=st.analysis_id or "",
                                                   scorer="detection")
        except UserError as exc:
            self.box.set_busy(False, str(exc), "error")
            return
        self.jobs[job.id] = f
        self.box.set_busy(True, "Queued: the model loads once, then explains and scores...")

    def _on_progress(self, job_id: str, payload: dict) -> None:
        if self.jobs.get(job_id) == self.tab.state.feature:
            done, total = payload.get("done"), payload.get("total")
            step = f" ({done}/{total})" if total else ""
            self.box.set_busy(True, f"{payload.get('message') or 'Working'}{step}")

    def _on_status(self, job_id: str, payload: dict) -> None:
        status = payload.get("status")
        if job_id not in self.jobs or status not in ("completed", "failed", "cancelled",
                                                      "interrupted"):
            return
        f = self.jobs.pop(job_id)
        if f != self.tab.state.feature:
            if status == "completed":
                self.finished.emit(f)
            return
        if status == "completed":
            self.box.set_busy(False, "Explained.", "success")
            self.finished.emit(f)
        else:
            self.box.set_busy(False, f"The explanation job {status}: "
                              f"{payload.get('error') or ''}".strip(), "error")
        self.load(f, keep_message=True)
