"""The shared UI kit: colours from one module (light and dark), hint labels, status chips."""

import re
from pathlib import Path

import pytest

from mistudio.ui.kit import palette

UI = Path(__file__).resolve().parents[2] / "mistudio" / "ui"
HEX = re.compile(r"#[0-9a-fA-F]{6}\b|#[0-9a-fA-F]{3}\b")
# Modules allowed hex colours for a while (a tab landing while its colours move to the
# palette); empty now: every colour is a role in ui/kit/palette.py.
NOT_YET_CLEAN: set[str] = set()


def _not_yet_clean(rel: str) -> str | None:
    return next((n for n in NOT_YET_CLEAN if rel == n or (n.endswith("/") and
                                                         rel.startswith(n))), None)


def test_the_ui_takes_its_colours_from_the_palette():
    hits, clean = [], set(NOT_YET_CLEAN)
    for path in sorted(UI.rglob("*.py")):
        rel = path.relative_to(UI).as_posix()
        if rel == "kit/palette.py":
            continue
        for no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if HEX.search(line):
                pending = _not_yet_clean(rel)
                clean.discard(pending)
                if pending is None:
                    hits.append(f"{rel}:{no}: {line.strip()}")
    assert not hits, "colours outside mistudio/ui/kit/palette.py:\n" + "\n".join(hits)
    assert not clean, f"clean now, take them off NOT_YET_CLEAN: {sorted(clean)}"


def test_light_and_dark_name_the_same_roles():
    assert set(palette.LIGHT) == set(palette.DARK)
    assert set(palette.STATUS_LIGHT) == set(palette.STATUS_DARK)
    assert set(palette.BADGE_LIGHT) == set(palette.BADGE_DARK)
    assert len(palette.CHIPS_LIGHT) == len(palette.CHIPS_DARK)
    for table in (palette.LIGHT, palette.DARK, palette.STATUS_LIGHT, palette.STATUS_DARK):
        assert all(HEX.fullmatch(v) for v in table.values())


@pytest.fixture
def dark_app(qapp):
    from PySide6.QtGui import QColor, QPalette

    before = qapp.palette()
    dark = QPalette(before)
    dark.setColor(QPalette.ColorRole.Window, QColor(30, 30, 30))
    qapp.setPalette(dark)
    yield qapp
    qapp.setPalette(before)


def test_the_variant_follows_the_application_palette(qapp, dark_app):
    assert palette.is_dark()
    assert palette.colour("text") == palette.DARK["text"]
    assert palette.status_colour("failed") == palette.STATUS_DARK["failed"]
    assert palette.badge_colours("ready") == palette.BADGE_DARK["ready"]


def test_light_by_default_with_unknown_statuses_muted(qapp):
    assert not palette.is_dark()
    assert palette.colour("error") == palette.LIGHT["error"]
    assert palette.status_colour("no-such-status") == palette.STATUS_LIGHT["queued"]
    assert palette.badge_colours("no-such-status") == palette.BADGE_LIGHT[""]
    assert palette.verdict_colour("won't fit") == palette.LIGHT["error"]
    assert palette.css("text.muted", "font-size: 8pt") == \
        f"color: {palette.LIGHT['text.muted']}; font-size: 8pt"


def test_hint_label_and_status_chip(qtbot):
    from mistudio.ui.kit.labels import StatusChip, hint_label

    hint = hint_label("Accepts 2e6, 2M, 500k.")
    qtbot.addWidget(hint)
    assert hint.wordWrap() and palette.LIGHT["text.muted"] in hint.styleSheet()
    assert "font-size: 8pt" in hint.styleSheet()
    chip = StatusChip()
    qtbot.addWidget(chip)
    chip.set_status("interrupted", "interrupted — can resume")
    assert chip.text() == "interrupted — can resume" and chip.status == "interrupted"
    assert f"background: {palette.STATUS_LIGHT['interrupted']}" in chip.styleSheet()


def test_training_estimate_verdict_takes_the_palette_colour(qapp):
    """The Training form's memory verdict is coloured as the Models tab's (one role per verdict)."""
    from mistudio.templates.scaling import TrainingEstimate
    from mistudio.ui.training.form import describe_estimate

    est = TrainingEstimate(saes=1, d_sae=4096, params=1, weights_bytes=600, optimizer_bytes=200,
                           activations_bytes=200, total_bytes=1000, seconds=90.0,
                           tokens_per_s=None, checkpoint_bytes=10)
    for free, verdict, role in ((10_000, "fits", "success"), (1_200, "tight", "warning"),
                                (500, "won't fit", "error")):
        text, got = describe_estimate(est, free, "cpu")
        assert got == verdict
        assert f"color:{palette.LIGHT[role]}'>{verdict}</b>" in text
