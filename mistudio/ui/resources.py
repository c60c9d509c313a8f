"""Paths of bundled resources (icon, images)."""

from __future__ import annotations

from pathlib import Path

_PKG_RES = Path(__file__).resolve().parent.parent / "resources"


def icon_path() -> Path:
    return _PKG_RES / "mistudio.png"
