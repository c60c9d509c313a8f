"""Sampling settings of a steered generation (no torch: the UI and CLI build them)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from mistudio.errors import UserError


@dataclass
class Sampling:
    max_new_tokens: int = 40
    greedy: bool = True
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int = 0

    def validate(self) -> "Sampling":
        import math

        if not 1 <= int(self.max_new_tokens) <= 4096:
            raise UserError(f"Max new tokens must be 1..4096 (got {self.max_new_tokens}).")
        if not (math.isfinite(float(self.temperature)) and float(self.temperature) > 0):
            raise UserError(f"The temperature must be a positive number (got "
                            f"{self.temperature}).", hint="Use greedy decoding for 'zero'.")
        if not (0 < float(self.top_p) <= 1):
            raise UserError(f"Top-p must be in (0, 1] (got {self.top_p}).")
        if int(self.top_k) < 0:
            raise UserError(f"Top-k must be 0 (off) or positive (got {self.top_k}).")
        self.max_new_tokens, self.top_k, self.seed = (int(self.max_new_tokens), int(self.top_k),
                                                      int(self.seed))
        return self

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict | None) -> "Sampling":
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in (data or {}).items() if k in known})

    def hf_kwargs(self) -> dict:
        """The same settings for ``model.generate`` (tests, the benchmark)."""
        if self.greedy:
            return {"do_sample": False, "max_new_tokens": self.max_new_tokens}
        return {"do_sample": True, "temperature": self.temperature, "top_p": self.top_p,
                "top_k": self.top_k, "max_new_tokens": self.max_new_tokens}
