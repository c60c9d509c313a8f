"""Which of a template's settings a form no longer holds (the Training form's "modified"
marker and Reapply). Pure functions over settings dicts."""

from __future__ import annotations

import math
from typing import Iterable

from mistudio.templates.repository import Template


def _same_setting(a, b) -> bool:
    """Equal as settings: numbers within the precision a form field shows (6 digits)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b if isinstance(a, bool) and isinstance(b, bool) else False
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-12)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same_setting(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same_setting(x, y) for x, y in zip(a, b))
    return a == b


def template_differences(settings: dict, template: Template | dict,
                         compared: Iterable[str] | None = None) -> list[tuple[str, object, object]]:
    """The template's settings that ``settings`` no longer hold: (name, template's value,
    current value), in the template's order. Only names in ``compared`` (default: all of
    ``settings``, plus ``sweep``) are looked at; a missing sweep counts as no sweep."""
    config = template.settings if isinstance(template, Template) else template
    names = set(compared) if compared is not None else set(settings) | {"sweep"}
    out = []
    for key, value in config.items():
        if key not in names:
            continue
        current = settings.get(key, {} if key == "sweep" else None)
        if not _same_setting(value, current):
            out.append((key, value, current))
    return out
