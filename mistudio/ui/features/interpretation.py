"""Auto-interpretation in the feature panel: the stored explanation of the open feature, its
detection / fuzz scores beside the shuffled-explanation baseline, "Explain this feature"
(an ``autointerp.run`` job for this one feature, its progress shown in place), and "Explain
the selected features" from the table's context menu (one job, progress in the message line).

Reads go through ``studio.autointerp`` off the GUI thread (``load_interpretation``); the
job's progress comes from the existing job bridge.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import (QComboBox, QGroupBox, QHBoxLayout, QLabel, QMenu, QPushButton,
                               QVBoxLayout)

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
    """Runs auto-interpretation for the tab: "Explain this feature" (the box) and "Explain
    the selected features" (the table's context menu). Starting a run reads the analysis's
    live features, so it is started on the tab's worker thread; the job's progress shows in
    the box while one of its features is open, and in the tab's message line for a run of
    several; when it ends, the box and the table's Explanation column are refreshed."""

    finished = Signal(object)  # the features (list[int]) of an explanation job that completed

    def __init__(self, tab, box: InterpretationBox):
        super().__init__(tab)
        self.tab = tab
        self.box = box
        self.jobs: dict[str, list[int]] = {}  # job id (or "queued-N" while starting) -> features
        self._models: list[tuple[str, str]] | None = None
        self._serial = itertools.count()
        box.explain_requested.connect(self.explain)
        tab.bridge.status.connect(self._on_status)
        tab.bridge.progress.connect(self._on_progress)

    @property
    def models(self) -> list[tuple[str, str]]:
        """(id, name) of the models that can explain: from the last read (a feature's
        interpretation, else the table's)."""
        if self._models is not None:
            return self._models
        bundle = self.tab.bundle
        return list(getattr(bundle, "chat_models", []) or [])

    def running_for(self, feature: int) -> bool:
        return any(feature in feats for feats in self.jobs.values())

    def load(self, feature: int, keep_message: bool = False) -> None:
        st = self.tab.state
        sae_id, fa_id, studio = st.sae_id, st.analysis_id, self.tab.studio
        running = self.running_for(feature)
        if running or not keep_message:
            self.box.set_busy(running, "Explaining..." if running else "")
        self.tab.calls.call("interpretation",
                            lambda: load_interpretation(studio, sae_id, fa_id, feature),
                            self._loaded, self.tab.show_error)

    def _loaded(self, info: Interpretation) -> None:
        self._models = list(info.models)
        if info.feature == self.tab.state.feature:
            self.box.set_interpretation(info)
            if self.running_for(info.feature):
                self.box.set_busy(True, self.box.status.text() or "Explaining...")

    # ------------------------------------------------------------------ starting

    def explain(self, model_id: str) -> None:
        """The box's button: the open feature."""
        f = self.tab.state.feature
        if f is not None:
            self.explain_features([f], model_id)

    def explain_features(self, features, model_id: str) -> None:
        """Queue one explain-and-score (detection) job for ``features``."""
        st, tab = self.tab.state, self.tab
        feats = sorted({int(f) for f in features})
        if not feats or not st.sae_id:
            return
        sae_id, fa_id, ai = st.sae_id, st.analysis_id or "", tab.studio.autointerp
        key = f"queued-{next(self._serial)}"
        self.jobs[key] = feats
        if st.feature in feats:
            self.box.set_busy(True, "Queued: the model loads once, then explains and scores...")
        if len(feats) > 1:
            tab.show_message(f"Starting an explanation job for {len(feats):,} features...")

        def started(job):
            self.jobs[job.id] = self.jobs.pop(key, feats)
            if len(feats) > 1:
                tab.show_message(f"Explaining {len(feats):,} features (job {job.id}): queued.")

        def failed(msg):
            self.jobs.pop(key, None)
            if self.tab.state.feature in feats:
                self.box.set_busy(False, msg, "error")
            if len(feats) > 1 or self.tab.state.feature not in feats:
                tab.show_error(msg)

        tab.calls.call(key, lambda: ai.start(sae_id, features=",".join(map(str, feats)),
                                             model=model_id, analysis=fa_id,
                                             scorer="detection"), started, failed)

    def add_actions(self, menu: QMenu, features: list[int]) -> None:
        """"Explain the selected features" entries of the table's context menu."""
        n = len(features)
        if not n:
            act = menu.addAction("Explain the selected features (select rows first)")
            act.setEnabled(False)
            return
        models = self.models
        if not models:
            act = menu.addAction(f"Explain {n:,} selected feature{'s' * (n > 1)} "
                                 "(no instruct model)")
            act.setEnabled(False)
            act.setToolTip(NO_MODEL)
            menu.setToolTipsVisible(True)
            return
        sub = menu.addMenu(f"Explain and score {n:,} selected feature{'s' * (n > 1)} with")
        for mid, name in models:
            sub.addAction(name, lambda m=mid: self.explain_features(features, m))

    # ------------------------------------------------------------------ job events

    def _on_progress(self, job_id: str, payload: dict) -> None:
        feats = self.jobs.get(job_id)
        if feats is None:
            return
        done, total = payload.get("done"), payload.get("total")
        step = f" ({done}/{total})" if total else ""
        text = f"{payload.get('message') or 'Working'}{step}"
        if self.tab.state.feature in feats:
            self.box.set_busy(True, text)
        if len(feats) > 1:
            self.tab.show_message(f"Explaining {len(feats):,} features: {text}")

    def _on_status(self, job_id: str, payload: dict) -> None:
        status = payload.get("status")
        if job_id not in self.jobs or status not in ("completed", "failed", "cancelled",
                                                      "interrupted"):
            return
        feats = self.jobs.pop(job_id)
        ok = status == "completed"
        if ok:
            self.finished.emit(feats)
        if len(feats) > 1:
            if ok:
                self.tab.show_message(f"Explained and scored {len(feats):,} features.", "done")
            else:
                self.tab.show_error(f"The explanation job {status}: "
                                    f"{payload.get('error') or ''}".strip())
        f = self.tab.state.feature
        if f not in feats:
            return
        if ok:
            self.box.set_busy(False, "Explained.", "success")
        else:
            self.box.set_busy(False, f"The explanation job {status}: "
                              f"{payload.get('error') or ''}".strip(), "error")
        self.load(f, keep_message=True)
