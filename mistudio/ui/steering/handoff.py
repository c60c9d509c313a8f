"""A feature opened from the Features tab ("Steer with this feature"), part of the Steering
tab: it shows at once, as pending, while the worker reads its model's SAEs (~50 ms in a large
data folder, which froze the window when read on the click).

While pending: the SAE combo holds that SAE alone ("reading…"), the table the feature's row;
Generate waits for the read; a newer request supersedes an older one (one ``choices`` key);
choosing another model drops it; an SAE that fits no registered model puts back what was
chosen before, with the reason.
"""

from __future__ import annotations

from mistudio.errors import UserError, describe_exception


class FeatureHandoff:
    """Mixed into ``SteeringTab`` (its combos, state, ``_calls`` and reads)."""

    _handoff: tuple | None  # (sae_id, feature, (previous sae_id, previous rows))
    _generate_when_ready: bool

    def steer_feature(self, sae_id: str, feature_index: int) -> None:
        """Open a feature for steering (the Features tab calls this via the main window): at
        once when its SAE is listed; else shown as pending (its SAE in the combo, its row in
        the table) while its model and SAEs are read on the worker (a newer request wins)."""
        index = int(feature_index)
        self._calls.cancel("saes")  # a model chosen just before must not undo this
        if self.loaded and self._handoff is None and self.sae_combo.findData(sae_id) >= 0:
            self._calls.cancel("choices")
            self._take_feature(sae_id, index)
            return
        previous = self._handoff[2] if self._handoff else (self.state.sae_id,
                                                           list(self.state.rows))
        self._handoff = (sae_id, index, previous)
        self._syncing = True
        self.sae_combo.clear()
        self.sae_combo.addItem(f"reading the SAE {sae_id}…", sae_id)
        self.sae_combo.setCurrentIndex(0)
        self._syncing = False
        if sae_id != self.state.sae_id:
            self.state.rows = []
        self.state.sae_id = sae_id
        self.state.add_feature(index, "add", "")
        self._render_rows()
        self._calls.cancel("features")
        self.feature_list.clear()
        self._say(f"Opening feature {index}: reading its SAE…")

        def read():  # worker: the SAE's model, the models, that model's SAEs
            service = self._steering()
            choices = self._read_choices(service.sae_model(sae_id))
            if not any(rec.id == sae_id for rec in choices[3]):
                rec = service.saes.get_sae(sae_id)
                raise UserError(f"No registered model fits the SAE {rec.name or rec.id}.",
                                hint="Add the model it was trained on in the Models tab.")
            return choices

        self._calls.call("choices", read, lambda c: self._handoff_arrived(sae_id, index, c),
                         self._handoff_failed, errors="exception")

    def _handoff_arrived(self, sae_id: str, index: int, choices: tuple) -> None:
        self._handoff = None
        self._show_choices(choices)  # keeps the pending SAE chosen, and its rows
        self._take_feature(sae_id, index)
        if self._generate_when_ready:
            self._generate_when_ready = False
            self.generate()

    def _handoff_failed(self, exc: Exception) -> None:
        """The SAE fits no registered model (or could not be read): back to what was
        chosen before, with the reason."""
        if self._handoff is not None:
            _sae, _index, (sae_id, rows) = self._handoff
            self._drop_handoff()
            self.state.sae_id, self.state.rows = sae_id, rows
            self._render_rows()
            self.reload_models()
        self._say(str(exc) if isinstance(exc, UserError) else describe_exception(exc),
                  error=True)

    def _drop_handoff(self) -> None:
        self._handoff = None
        self._generate_when_ready = False

    def _take_feature(self, sae_id: str, index: int) -> None:
        """Choose the SAE (listed now) and add the feature; its label follows."""
        self.sae_combo.setCurrentIndex(self.sae_combo.findData(sae_id))
        self.state.add_feature(index, "add", "")
        self._render_rows()
        # its label follows from the worker (an index search through a large analysis)
        self._calls.call(f"label:{sae_id}:{index}",
                         lambda: self._steering().feature_info(sae_id, str(index), 1),
                         lambda rows: self._set_label(sae_id, index, rows))
        self._say(f"Feature {index} added: set its coefficient, write a prompt and "
                  "press Generate.")
        self.prompt.setFocus()

    def _set_label(self, sae_id: str, index: int, rows: list) -> None:
        label = next((r.get("label", "") for r in rows if r.get("index") == index), "")
        if not label or sae_id != self.state.sae_id:
            return
        for row in self.state.rows:
            if row.feature == index and row.kind != "vector" and not row.label:
                row.label = label
        self._render_rows()
