"""What a steered output changes: interventions, the columns they form, and their text forms.

An :class:`Intervention` acts on the residual ``x`` at the SAE's hook point, at the positions
of a scope (``prompt``, ``generated`` or ``all``):

- ``add``: ``x += a * W_dec[f]`` (the feature's decoder direction).
- ``clamp``: encode, set latent ``f`` to ``a``, decode, add back the SAE's error term
  (``x - decode(encode(x))``). Because the decoder is linear this equals
  ``x += (a - f(x)) * W_dec[f]``, which is how it is computed (clamping to the original value
  leaves ``x`` unchanged, to the last bit of the arithmetic).
- ``ablate``: clamp to 0.
- ``vector``: ``x += a * v`` for a raw direction ``v`` (given, or the mean difference of two
  prompt sets: contrastive steering as in ActAdd / CAA).

``a`` is the coefficient converted from its *units*: ``raw`` (as given: an activation value
for features, a multiplier of ``v`` for vectors), ``max`` (times the feature's max activation
from its analysis) or ``norm`` (times the typical residual norm at the hook point, with the
direction normalised to length 1, so ``+1`` adds a vector as long as a typical residual).

A *column* is one steered output: a list of interventions applied together. Sweeps make
several columns. This module has no torch: it validates and parses only.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field

from mistudio.errors import UserError

KINDS = ("add", "clamp", "ablate", "vector")
UNITS = ("raw", "max", "norm")
SCOPES = ("all", "prompt", "generated")
UNIT_LABELS = {"raw": "raw", "max": "× max activation", "norm": "× residual norm"}


@dataclass
class Intervention:
    kind: str = "add"
    feature: int | None = None
    value: float = 0.0
    units: str = "raw"
    vector: list[float] | None = None  # kind "vector": a raw direction [d_in]
    positive: list[str] = field(default_factory=list)  # kind "vector": contrastive prompts
    negative: list[str] = field(default_factory=list)
    name: str = ""  # kind "vector": how to show it

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v not in (None, [], "")}

    @classmethod
    def from_dict(cls, data: dict) -> "Intervention":
        if not isinstance(data, dict):
            raise UserError(f"An intervention must be an object, got {data!r}.")
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise UserError(f"Unknown intervention field(s): {', '.join(sorted(unknown))}.",
                            hint=f"Known: {', '.join(sorted(known))}.")
        return cls(**data)

    @property
    def label(self) -> str:
        unit = "" if self.units == "raw" else f" {UNIT_LABELS[self.units]}"
        if self.kind == "ablate":
            return f"ablate #{self.feature}"
        if self.kind == "clamp":
            return f"#{self.feature} = {self.value:g}{unit}"
        if self.kind == "vector":
            return f"{self.name or 'vector'} {self.value:+g}{unit}"
        return f"#{self.feature} {self.value:+g}{unit}"

    def validate(self, d_sae: int | None = None, d_in: int | None = None) -> None:
        if self.kind not in KINDS:
            raise UserError(f"Unknown intervention {self.kind!r}.",
                            hint=f"Use one of {', '.join(KINDS)}.")
        if self.units not in UNITS:
            raise UserError(f"Unknown units {self.units!r}.", hint=f"Use one of {', '.join(UNITS)}.")
        try:
            value = float(self.value)
        except (TypeError, ValueError):
            raise UserError(f"The coefficient {self.value!r} is not a number.") from None
        if not math.isfinite(value):
            raise UserError(f"The coefficient of {self.label} is {value}; it must be a finite "
                            "number.", hint="Give a number such as 8, -4 or 0.5.")
        self.value = value
        if self.kind == "vector":
            if self.units == "max":
                raise UserError("A raw vector has no max activation.",
                                hint="Use raw or norm units for vectors.")
            if self.vector is None and not (self.positive and self.negative):
                raise UserError("A vector intervention needs a vector, or two prompt sets "
                                "(positive and negative) for a mean-difference direction.")
            if self.vector is not None:
                bad = [v for v in self.vector if not math.isfinite(float(v))]
                if bad:
                    raise UserError("The steering vector holds NaN or infinite values.")
                if d_in is not None and len(self.vector) != d_in:
                    raise UserError(f"The steering vector has {len(self.vector)} values but the "
                                    f"hook point has width {d_in}.",
                                    hint="Give one value per residual dimension.")
            if any(not str(p).strip() for p in self.positive + self.negative):
                raise UserError("A contrastive prompt is empty.", hint="Remove empty lines.")
            return
        if self.feature is None:
            raise UserError(f"A {self.kind} intervention needs a feature index.")
        try:
            self.feature = int(self.feature)
        except (TypeError, ValueError):
            raise UserError(f"Feature index {self.feature!r} is not a whole number.") from None
        if self.feature < 0 or (d_sae is not None and self.feature >= d_sae):
            raise UserError(f"Feature {self.feature} does not exist: this SAE has {d_sae} "
                            f"features (0..{(d_sae or 1) - 1}).",
                            hint="Pick an index from the feature list.")
        if self.kind == "ablate":
            self.value = 0.0


@dataclass
class Column:
    """One steered output: its interventions, applied together."""

    interventions: list[Intervention]
    label: str = ""

    def __post_init__(self):
        if not self.label:
            self.label = ", ".join(i.label for i in self.interventions) or "baseline"

    def to_dict(self) -> dict:
        return {"label": self.label, "interventions": [i.to_dict() for i in self.interventions]}

    @classmethod
    def from_dict(cls, data: dict) -> "Column":
        return cls([Intervention.from_dict(i) for i in data.get("interventions", [])],
                   label=data.get("label", ""))


# ---------------------------------------------------------------------- text forms (CLI)

_NUM = r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|[+-]?(?:nan|inf)"


def _number(text: str, what: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise UserError(f"{what}: {text!r} is not a number.") from None


def parse_feature(spec: str, kind: str = "add", units: str = "raw") -> Intervention:
    """``"123:+8"`` (add) or ``"45:0"`` (clamp); ``"45"`` alone for ablate."""
    text = spec.strip()
    if kind == "ablate":
        if not re.fullmatch(r"\d+", text):
            raise UserError(f"{spec!r}: write the feature index to ablate, e.g. 45.")
        return Intervention("ablate", int(text), 0.0, units)
    m = re.fullmatch(r"(-?\d+)\s*[:=]\s*(\S+)", text)
    if not m:
        raise UserError(f"{spec!r} is not FEATURE:VALUE.",
                        hint="For example 123:+8 (add 8 × the decoder direction of feature "
                             "123) or 45:0 with --clamp.")
    return Intervention(kind, int(m.group(1)), _number(m.group(2), spec), units)


def parse_sweep(spec: str, units: str = "raw") -> list[Intervention]:
    """A sweep: ``"123:-8..8:5"`` (5 coefficients from -8 to 8 on feature 123) or
    ``"10,20,30:+8"`` (the same coefficient on several features). One intervention a column."""
    text = spec.strip()
    m = re.fullmatch(rf"(\d+)\s*:\s*({_NUM})\s*\.\.\s*({_NUM})\s*:\s*(\d+)", text)
    if m:
        lo, hi = _number(m.group(2), spec), _number(m.group(3), spec)
        n = int(m.group(4))
        if n < 1 or n > 64:
            raise UserError(f"{spec!r}: a sweep has 1 to 64 values (got {n}).")
        values = [lo] if n == 1 else [lo + (hi - lo) * i / (n - 1) for i in range(n)]
        return [Intervention("add", int(m.group(1)), round(v, 6), units) for v in values]
    m = re.fullmatch(rf"(\d+(?:\s*,\s*\d+)+)\s*:\s*({_NUM})", text)
    if m:
        value = _number(m.group(2), spec)
        return [Intervention("add", int(f), value, units) for f in m.group(1).split(",")]
    raise UserError(f"{spec!r} is not a sweep.",
                    hint="Write FEATURE:FROM..TO:COUNT (e.g. 123:-8..8:5) to sweep a "
                         "coefficient, or F1,F2,F3:VALUE to sweep features.")


def sweep_columns(base: list[Intervention], sweep: list[Intervention]) -> list[Column]:
    """One column per swept intervention, each with the base interventions too (a base
    intervention on the swept feature is replaced by the swept one)."""
    columns = []
    for s in sweep:
        kept = [b for b in base if not (b.feature is not None and b.feature == s.feature
                                        and b.kind in ("add", "clamp", "ablate"))]
        columns.append(Column(kept + [s]))
    return columns
