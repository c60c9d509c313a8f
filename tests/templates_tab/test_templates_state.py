"""The Templates tab's state without Qt: cards, editor, duplicate/rename/delete, import/export,
favourites and use counts for the three kinds."""

import json

import pytest

from mistudio.errors import UserError
from mistudio.sae.config import setting_names
from mistudio.templates.builtin import BUILTIN_TEMPLATES
from mistudio.templates.extraction_builtin import BUILTIN_EXTRACTION_TEMPLATES
from mistudio.ui.templates.state import DATA_SETTINGS, TemplatesState


@pytest.fixture
def state(studio):
    return TemplatesState(studio.templates, studio.steering)


def test_cards_list_builtins_locked_and_saved_ones(studio, state):
    studio.templates.save("Mine", {"architecture": "topk", "k": 8}, description="d")
    cards = state.load("training")
    assert [c.name for c in cards if c.builtin] == [b.name for b in BUILTIN_TEMPLATES]
    mine = next(c for c in cards if c.name == "Mine")
    assert not mine.locked and mine.description == "d" and mine.use_count == 0
    assert "k 8" in mine.summary
    ext = state.load("extraction")
    assert {c.name for c in ext} == {b.name for b in BUILTIN_EXTRACTION_TEMPLATES}
    assert all(c.locked for c in ext)


def test_builtin_is_locked_but_duplicate_is_editable(studio, state):
    state.load("training")
    builtin = next(c for c in state.cards if c.builtin)
    with pytest.raises(UserError, match="locked"):
        state.save_edit({"k": "4"}, ref=builtin.ref)
    new_ref = state.duplicate(builtin.ref)
    copy = state.card(new_ref)
    assert copy.name == f"{builtin.name} copy" and not copy.builtin
    assert studio.templates.get(new_ref).settings == studio.templates.get(builtin.ref).settings
    state.duplicate(builtin.ref)  # a second copy gets a free name
    assert f"{builtin.name} copy (2)" in [c.name for c in state.cards]


def test_editor_fields_come_from_the_training_schema(studio, state):
    t = studio.templates.save("Mine", {"architecture": "topk", "k": 8})
    state.load("training")
    fields = {f.key: f for f in state.editor_fields(t.id)}
    assert set(fields) == set(setting_names()) - DATA_SETTINGS
    assert fields["k"].text == "8" and fields["lr"].text == ""
    assert fields["lr"].label == "Learning rate"
    assert fields["total_tokens"].label.endswith("(tokens)")


def test_save_edit_validates_like_a_save_and_names_the_key(studio, state):
    t = studio.templates.save("Mine", {"architecture": "topk", "k": 8})
    state.load("training")
    with pytest.raises(UserError, match="'k'"):
        state.save_edit({"architecture": "topk", "k": "eight"}, ref=t.id)
    assert studio.templates.get(t.id).settings == {"architecture": "topk", "k": 8}
    state.save_edit({"architecture": "topk", "k": "16", "lr": "", "batch_size": "2048"},
                    description="wider", ref=t.id)
    saved = studio.templates.get(t.id)
    assert saved.settings == {"architecture": "topk", "k": 16, "batch_size": 2048}
    assert saved.description == "wider"


def test_extraction_editor_round_trip(studio, state):
    t = studio.templates.save("Two layers", {"layers": [1, 2]}, kind="extraction")
    state.load("extraction")
    fields = {f.key: f for f in state.editor_fields(t.id)}
    assert fields["layers"].text == "[1, 2]"
    with pytest.raises(UserError, match="store_dtype"):
        state.save_edit({"layers": "[1]", "store_dtype": "float7"}, ref=t.id)
    state.save_edit({"layers": '["middle"]', "max_tokens": "5000"}, ref=t.id)
    assert studio.templates.get(t.id, kind="extraction").settings["max_tokens"] == 5000


def test_rename_delete_and_favourite(studio, state):
    t = studio.templates.save("Mine", {"k": 8, "architecture": "topk"})
    state.load("training")
    state.rename("Renamed", ref=t.id)
    assert "Renamed" in [c.name for c in state.cards]
    with pytest.raises(UserError, match="already exists"):
        state.rename(BUILTIN_TEMPLATES[0].name, ref=t.id)
    assert state.toggle_favourite(t.id) is True
    assert state.cards[0].ref == t.id  # favourites first
    state.delete(t.id)
    assert t.id not in [c.ref for c in state.cards]
    with pytest.raises(UserError):
        studio.templates.get(t.id)


def test_use_counts_a_training_use(studio, state):
    state.load("training")
    ref = state.cards[0].ref
    assert state.use(ref) == ("training", ref)
    assert state.card(ref).use_count == 1 and state.card(ref).last_used_at


def test_export_bundle_and_import_round_trip(studio, state, tmp_path):
    a = studio.templates.save("A", {"architecture": "topk", "k": 8})
    b = studio.templates.save("B", {"architecture": "relu", "l1_coefficient": 2.0})
    state.load("training")
    path = state.export(tmp_path / "bundle.json", [a.id, b.id])
    doc = json.loads(path.read_text())
    assert [t["name"] for t in doc["templates"]] == ["A", "B"]
    names = state.import_file(path)
    imported = [studio.templates.get(i) for i in names]
    assert [t.name for t in imported] == ["A (2)", "B (2)"]
    assert [t.settings for t in imported] == [a.settings, b.settings]


def test_bad_file_imports_nothing_and_names_the_key(studio, state, tmp_path):
    state.load("training")
    before = [c.ref for c in state.cards]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"templates": [
        {"name": "good", "config": {"architecture": "topk", "k": 8}},
        {"name": "bad", "config": {"architecture": "topk", "kk": 8}}]}))
    with pytest.raises(UserError, match="kk"):
        state.import_file(bad)
    assert [c.ref for c in state.load()] == before
    # an extraction file is not a training file
    state.load("extraction")
    path = state.export(tmp_path / "ext.json", [state.cards[0].ref])
    state.load("training")
    with pytest.raises(UserError, match="extraction"):
        state.import_file(path)
    state.load("extraction")
    assert len(state.import_file(path)) == 1


def test_presets_as_cards_with_usage(studio, state, preset, tmp_path):
    cards = state.load("steering")
    assert [c.name for c in cards] == ["Calm tone"]
    assert "1 intervention" in cards[0].summary and "features 3" in cards[0].summary
    state.use("Calm tone")
    state.toggle_favourite("Calm tone")
    card = state.card("Calm tone")
    assert card.use_count == 1 and card.favourite
    copy = state.duplicate("Calm tone")
    assert copy == "Calm tone copy"
    assert studio.steering.preset(copy).interventions == preset.interventions
    state.rename("Quiet tone", ref="Calm tone")
    card = state.card("Quiet tone")
    assert card.use_count == 1 and card.favourite  # the usage moved with the name
    out = state.export(tmp_path / "p.json", ["Quiet tone"])
    state.delete("Quiet tone")
    assert [c.name for c in state.cards] == ["Calm tone copy"]
    assert state.import_file(out) == ["Quiet tone"]
    with pytest.raises(UserError):
        state.editor_fields("Quiet tone")
