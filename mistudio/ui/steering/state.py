"""The Steering tab's state, Qt-free: what is chosen, what runs, what came back.

Tests drive this object directly; the tab renders it and forwards user actions to it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mistudio.errors import UserError
from mistudio.steering.interventions import Column, Intervention, parse_sweep, sweep_columns

DEFAULT_COEF = {"raw": 8.0, "max": 1.0, "norm": 0.5}
#: Slider ranges per unit (the spin box beside each slider accepts any finite number).
SLIDER_RANGE = {"raw": 100.0, "max": 10.0, "norm": 4.0}


@dataclass
class FeatureRow:
    """One intervention row in the tab (feature or vector)."""

    feature: int | None
    kind: str = "add"
    value: float = 8.0
    label: str = ""  # the analysis label, when known (a vector's name)
    positive: list[str] = field(default_factory=list)  # contrastive vector prompts
    negative: list[str] = field(default_factory=list)

    def intervention(self, units: str) -> Intervention:
        if self.kind == "vector":
            return Intervention("vector", None, float(self.value), units,
                                positive=list(self.positive), negative=list(self.negative),
                                name=self.label)
        return Intervention(self.kind, self.feature, float(self.value), units)

    @classmethod
    def of(cls, iv: Intervention) -> "FeatureRow":
        return cls(iv.feature, iv.kind, iv.value, iv.name, list(iv.positive),
                   list(iv.negative))


@dataclass
class SteeringState:
    model_id: str = ""
    sae_id: str = ""
    rows: list[FeatureRow] = field(default_factory=list)
    units: str = "raw"
    scope: str = "all"
    prompt: str = ""
    chat: bool = False
    sweep: str = ""
    sampling: dict = field(default_factory=lambda: {
        "max_new_tokens": 40, "greedy": True, "temperature": 1.0, "top_p": 1.0, "top_k": 0,
        "seed": 0})
    job_id: str = ""
    generation_id: str = ""
    live: dict | None = None
    result: dict | None = None
    error: str = ""

    # ------------------------------------------------------------------ editing

    def add_feature(self, index: int, kind: str = "add", label: str = "") -> FeatureRow:
        for row in self.rows:
            if row.feature == index:
                row.kind = kind
                return row
        value = 0.0 if kind != "add" else DEFAULT_COEF[self.units]
        row = FeatureRow(int(index), kind, value, label)
        self.rows.append(row)
        return row

    def add_contrast(self, name: str, positive: list[str], negative: list[str],
                     value: float = 4.0) -> FeatureRow:
        """A direction from the mean difference of two prompt sets (ActAdd / CAA)."""
        positive = [p for p in positive if p.strip()]
        negative = [n for n in negative if n.strip()]
        if not positive or not negative:
            raise UserError("Give at least one prompt on each side (one a line).")
        row = FeatureRow(None, "vector", value, name.strip() or "contrast", positive, negative)
        self.rows.append(row)
        return row

    def remove(self, i: int) -> None:
        del self.rows[i]

    def set_units(self, units: str) -> None:
        if units != self.units:
            for row in self.rows:
                if row.kind in ("add", "vector"):
                    row.value = DEFAULT_COEF[units]
            self.units = units

    def columns(self) -> list[Column]:
        base = [r.intervention(self.units) for r in self.rows]
        if self.sweep.strip():
            return sweep_columns(base, parse_sweep(self.sweep, self.units))
        return [Column(base)]

    def interventions(self) -> list[Intervention]:
        return [r.intervention(self.units) for r in self.rows]

    # ------------------------------------------------------------------ running

    @property
    def running(self) -> bool:
        return bool(self.job_id)

    def start(self, service) -> None:
        """Queue the comparison (raises UserError on bad input; nothing is lost)."""
        if not self.model_id or not self.sae_id:
            raise UserError("Pick a model and an SAE first.")
        rec, job = service.start(self.model_id, self.sae_id, self.columns(), self.prompt,
                                 sampling=dict(self.sampling), scope=self.scope,
                                 chat=self.chat)
        self.job_id, self.generation_id = job.id, rec.id
        self.live, self.result, self.error = None, None, ""

    def poll(self, service) -> bool:
        """Read the streamed tokens; True when they changed."""
        if not self.job_id:
            return False
        snap = service.live(self.job_id)
        if snap is None or (self.live and snap["version"] == self.live["version"]):
            return False
        self.live = snap
        return True

    def finish(self, service, status: str, error: str = "") -> None:
        self.poll(service)
        self.job_id = ""
        if status == "completed":
            self.result = service.result(self.generation_id)
        elif status == "cancelled":
            self.error = "Stopped."
        else:
            self.error = error or f"The generation {status}."

    def open(self, service, generation_id: str) -> None:
        """Show a past generation and put its settings back in the controls."""
        rec = service.get(generation_id)
        req = rec.request
        self.model_id, self.sae_id, self.prompt = req["model_id"], req["sae_id"], req["prompt"]
        self.scope, self.chat = req.get("scope", "all"), bool(req.get("chat"))
        self.sampling = {**self.sampling, **req.get("sampling", {})}
        first = Column.from_dict(req["columns"][0]).interventions if req["columns"] else []
        self.rows = [FeatureRow.of(iv) for iv in first if iv.feature is not None
                     or iv.positive]
        if first:
            self.units = first[0].units
        self.sweep = ""
        self.generation_id = rec.id
        self.live, self.error = None, ""
        self.result = service.result(rec.id) if rec.status == "completed" else None
        if rec.status != "completed":
            self.error = rec.error or f"This generation {rec.status}."

    def apply_preset(self, preset) -> None:
        self.rows = [FeatureRow.of(iv) for iv in preset.interventions
                     if iv.feature is not None or iv.positive]
        if preset.interventions:
            self.units = preset.interventions[0].units
        self.scope = preset.scope
