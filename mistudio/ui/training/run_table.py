"""How the Runs table shows its rows (``mistudio.app.runs`` computes them): the "diff only"
comparison of two runs' settings and the formatting of a setting. No Qt here (tested
directly)."""

from __future__ import annotations

import math


def diff_settings(a: dict, b: dict, *, only_differences: bool = True
                  ) -> list[tuple[str, object, object]]:
    """(setting, value in a, value in b), sorted by setting; by default only those that
    differ (a setting missing on one side counts as different)."""
    missing = object()
    out = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key, missing), b.get(key, missing)
        if only_differences and _same(va, vb):
            continue
        out.append((key, None if va is missing else va, None if vb is missing else vb))
    return out


def _same(a, b) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        try:
            return math.isclose(float(a), float(b), rel_tol=1e-12, abs_tol=0.0)
        except (TypeError, ValueError):
            return False
    return a == b


def format_setting(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items()) or "{}"
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value))
    return str(value)
