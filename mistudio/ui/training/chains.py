"""Cards of extract-then-train workflows in the Training tab (``mistudio.app.workflows``).

A workflow has a card of its own while it extracts (progress of the extraction job), and
when it stops short of training (failed, cancelled, interrupted: the card says which step
and why, and offers Resume). When its training starts, the card gives way to the
training's card, which is selected if the workflow's card was.

Workflow changes arrive from the job threads through a Qt signal, so the cards are only
touched on the GUI thread.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal

from mistudio.ui.training.cards import JobCard
from mistudio.app.workflows import (CANCELLED, EXTRACTING, FAILED, INTERRUPTED, ExtractThenTrain,
                                workflows_of)

CARD_STATUS = {EXTRACTING: "extracting", FAILED: "failed", CANCELLED: "cancelled",
               INTERRUPTED: "interrupted"}


def card_message(text: str, limit: int = 160) -> str:
    """A message that fits a card: long paths may wrap, very long text is cut (the full
    text is the tooltip)."""
    if len(text) > limit:
        text = text[:limit - 1].rstrip() + "…"
    return text.replace("/", "/\u200b")


class ChainCards(QObject):
    changed = Signal(str)  # chain id; emitted on any thread, handled on the GUI thread

    def __init__(self, tab):
        super().__init__(tab)
        self.tab = tab
        self.studio = tab.studio
        self.workflows = workflows_of(tab.studio)
        self.chains: dict[str, ExtractThenTrain] = {}
        self.changed.connect(self.refresh)
        self.workflows.add_listener(self._from_any_thread)

    def close(self) -> None:
        self.workflows.remove_listener(self._from_any_thread)

    def _from_any_thread(self, chain: ExtractThenTrain) -> None:
        try:
            self.changed.emit(chain.id)
        except RuntimeError:  # the tab is gone
            self.workflows.remove_listener(self._from_any_thread)

    # ------------------------------------------------------------------ cards

    def reload(self) -> None:
        open_chains = {c.id: c for c in self.workflows.list(open_only=True)}
        for chain_id in list(self.chains):
            if chain_id not in open_chains:
                self._drop(chain_id)
        for chain in open_chains.values():
            self._show(chain)

    def refresh(self, chain_id: str) -> None:
        chain = self.workflows.find(chain_id)
        if chain is None or not chain.open:
            was_selected = self.tab.selected == chain_id
            self._drop(chain_id)
            if chain is not None and chain.training_job_id:
                key = self.tab._training_key(chain.training_job_id, fetch=True)
                if was_selected and key:
                    self.tab.select(key)
                    self.tab.pages.setCurrentWidget(self.tab.charts)
            elif was_selected:
                self.tab.select(None)
            return
        self._show(chain)

    def _show(self, chain: ExtractThenTrain) -> None:
        self.chains[chain.id] = chain
        card = self.tab.cards.card(chain.id)
        if card is None:
            card = JobCard(chain.id, chain.title)
            card.compare_box.setVisible(False)  # nothing to chart yet
            card.export_act.setVisible(False)
            card.action.connect(self.on_action)
            card.selected.connect(self.tab.select)
            self.tab.cards.add_card(card)
            self.tab.empty.setVisible(False)
        job = self.studio.jobs.find(chain.extraction_job_id) if chain.extraction_job_id \
            else None
        if chain.status == EXTRACTING:
            message = (f"Step 1 of 2: extracting {chain.hook_name} of {chain.model_name}. "
                       "The training starts when the extraction completes.")
            if job is not None and job.status == "completed":
                message = "Extraction done; starting the training…"
        else:
            message = chain.error
        card.set_status(CARD_STATUS.get(chain.status, chain.status),
                        can_resume=chain.can_resume, message=card_message(message),
                        pausable=False)
        card.message.setToolTip(message)
        fraction = job.fraction if job is not None and job.total else None
        card.set_progress(fraction, step=job.progress if job else None,
                          total=job.total if job else None, eta_s=job.eta_s if job else None)
        card.stats.setText(("Extracting · " + card.stats.text()) if chain.status == EXTRACTING
                           else "Extract first, then train")

    def _drop(self, chain_id: str) -> None:
        self.chains.pop(chain_id, None)
        self.tab.cards.remove_card(chain_id)

    # ------------------------------------------------------------------ events

    def chain_of_job(self, job_id: str) -> ExtractThenTrain | None:
        for chain in self.chains.values():
            if chain.extraction_job_id == job_id:
                return chain
        return None

    def on_status(self, job_id: str) -> bool:
        """True if the job is a workflow's extraction (its card is refreshed)."""
        chain = self.chain_of_job(job_id)
        if chain is None:
            return False
        self.refresh(chain.id)
        if self.tab.selected == chain.id and chain.id in self.chains:
            self.tab.select(chain.id)  # re-reads the log: the job's end is only in its file
        return True

    def on_progress(self, job_id: str, payload: dict) -> bool:
        chain = self.chain_of_job(job_id)
        card = self.tab.cards.card(chain.id) if chain else None
        if card is None:
            return chain is not None
        total = payload.get("total")
        card.set_progress(payload["done"] / total if total else None, step=payload["done"],
                          total=total, eta_s=payload.get("eta_s"))
        card.stats.setText("Extracting · " + card.stats.text())
        return True

    # ------------------------------------------------------------------ actions

    def on_action(self, action: str, chain_id: str) -> None:
        tab = self.tab
        if action == "cancel":
            tab._guard(self.workflows.cancel, chain_id)
        elif action == "resume_checkpoint":
            if tab._guard(self.workflows.resume, chain_id) is not None:
                self.refresh(chain_id)
        elif action == "duplicate":
            self.duplicate(chain_id)
        elif action == "delete":
            self.delete(chain_id, confirm=True)

    def duplicate(self, chain_id: str) -> None:
        chain = self.workflows.get(chain_id)
        tab = self.tab
        tab.pages.setCurrentWidget(tab.new_page)
        panel = tab.new_training
        panel.load_config({**chain.config, "name": f"{chain.title} copy"})
        panel.extract_first().select(model=chain.model_id, tokenization=chain.tokenization,
                                     hook_name=chain.hook_name,
                                     tokens=chain.extraction.get("max_tokens", 0))

    def delete(self, chain_id: str, *, confirm: bool = False) -> bool:
        from PySide6.QtWidgets import QMessageBox

        if confirm and QMessageBox.question(
                self.tab, "Delete workflow?",
                "Forget this extract-then-train workflow? Its activations (complete or not) "
                "stay in the Models tab.") != QMessageBox.Yes:
            return False
        if self.tab._guard(lambda: self.workflows.delete(chain_id) or True) is None:
            return False
        if self.tab.selected == chain_id:
            self.tab.select(None)
        self._drop(chain_id)
        self.tab.empty.setVisible(not self.tab.jobs and not self.chains)
        return True
