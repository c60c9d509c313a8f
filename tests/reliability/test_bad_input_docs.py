"""docs/reliability.md lists every catalogue entry with its recorded message: the table is
generated (scripts/bad_input_catalogue.py) and must equal what the catalogue gives now."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from tests.reliability.bad_input_catalogue import CATALOGUE, recorded_messages

ROOT = Path(__file__).resolve().parents[2]


def _script():
    spec = importlib.util.spec_from_file_location("bad_input_catalogue_script",
                                                  ROOT / "scripts" / "bad_input_catalogue.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_entry_has_a_recorded_message():
    assert set(recorded_messages()) == {e.id for e in CATALOGUE}


def test_docs_table_is_in_sync_with_the_catalogue():
    script = _script()
    doc = script.DOC.read_text(encoding="utf-8")
    assert script.docs_with_table(doc) == doc, (
        "docs/reliability.md is out of date: python scripts/bad_input_catalogue.py --write-docs")
    for e in CATALOGUE:  # and each entry is there with its message
        assert f"`{e.id}`" in doc
