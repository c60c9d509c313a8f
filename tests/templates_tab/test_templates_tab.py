"""The Templates tab (pytest-qt): cards, editor errors, duplicate of a built-in, import,
and "Use" routed through the main window into the Training and Steering tabs."""

import json

import pytest

from mistudio.templates.builtin import BUILTIN_TEMPLATES


@pytest.fixture
def tab(studio, qtbot):
    from mistudio.ui.templates.tab import TemplatesTab

    w = TemplatesTab(studio)
    qtbot.addWidget(w)
    return w


def test_cards_editor_and_lock(studio, tab):
    assert tab.card_names()[:len(BUILTIN_TEMPLATES)] == [b.name for b in BUILTIN_TEMPLATES]
    tab.select(BUILTIN_TEMPLATES[0].id)
    assert not tab.save_btn.isEnabled() and not tab.delete_btn.isEnabled()
    assert tab.editors["k"].isReadOnly()
    tab.duplicate()
    copy = tab.state.card()
    assert copy.name == f"{BUILTIN_TEMPLATES[0].name} copy"
    assert tab.save_btn.isEnabled() and not tab.editors["k"].isReadOnly()
    tab.editors["k"].setText("lots")
    assert not tab.save_edit()
    assert "'k'" in tab.error.text()
    tab.editors["k"].setText("24")
    assert tab.save_edit()
    assert studio.templates.get(copy.ref).settings["k"] == 24


def test_import_bad_file_shows_error_and_imports_nothing(studio, tab, tmp_path):
    n = len(tab.card_names())
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"name": "x", "config": {"lerning_rate": 1}}))
    tab.import_dialog(str(bad))
    assert "lerning_rate" in tab.error.text()
    assert len(tab.card_names()) == n


def test_delete_asks_first(studio, tab, monkeypatch):
    t = studio.templates.save("Mine", {"architecture": "topk", "k": 8})
    tab.reload()
    tab.select(t.id)
    monkeypatch.setattr(tab, "_confirm", lambda *a: False)
    tab.delete()
    assert "Mine" in tab.card_names()
    monkeypatch.setattr(tab, "_confirm", lambda *a: True)
    tab.delete()
    assert "Mine" not in tab.card_names()


def test_use_opens_training_prefilled(studio, qtbot):
    from mistudio.ui.main_window import MainWindow

    t = studio.templates.save("Wide topk", {"architecture": "topk", "k": 24,
                                            "expansion_factor": 4})
    win = MainWindow(studio, remember_layout=False)
    win.skip_close_confirmation = True
    qtbot.addWidget(win)
    tab = win.show_tab("Templates")
    tab.select(t.id)
    tab.use()
    assert win.tabs.tabText(win.tabs.currentIndex()) == "Training"
    training = win.lazy_tabs["Training"].inner
    assert training.pages.currentWidget() is training.new_page
    config, _ = training.new_training.form.config()
    assert config["k"] == 24 and config["expansion_factor"] == 4
    assert studio.templates.get(t.id).use_count == 1


def test_use_opens_extraction_panel_prefilled(studio, qtbot):
    from mistudio.ui.main_window import MainWindow

    t = studio.templates.save("Mid mlp", {"layers": ["middle"], "hook_types": ["mlp_out"],
                                          "max_tokens": 4321}, kind="extraction")
    win = MainWindow(studio, remember_layout=False)
    win.skip_close_confirmation = True
    qtbot.addWidget(win)
    tab = win.show_tab("Templates")
    tab.set_kind("extraction")
    tab.select(t.id)
    tab.use()
    models = win.lazy_tabs["Models"].inner
    assert win.tabs.currentWidget() is win.lazy_tabs["Models"]
    assert models.tabs.currentWidget() is models.extract
    s = models.extract.form_settings()
    assert s["hook_types"] == ["mlp_out"] and s["max_tokens"] == 4321
    assert studio.templates.get(t.id, kind="extraction").use_count == 1


def test_use_opens_steering_with_the_preset(studio, qtbot, preset):
    from mistudio.ui.main_window import MainWindow

    win = MainWindow(studio, remember_layout=False)
    win.skip_close_confirmation = True
    qtbot.addWidget(win)
    tab = win.show_tab("Templates")
    tab.set_kind("steering")
    assert tab.card_names() == ["Calm tone"]
    assert tab.preset_view.isVisibleTo(tab) and not tab.save_btn.isEnabled()
    tab.use()
    steering = win.lazy_tabs["Steering"].inner
    assert win.tabs.currentWidget() is win.lazy_tabs["Steering"]
    assert [(r.feature, r.kind, r.value) for r in steering.state.rows] == [(3, "add", 2.0)]
    assert "tiny sae" in steering.status.text()  # its SAE is not registered: said so
