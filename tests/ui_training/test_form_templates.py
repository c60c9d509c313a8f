"""The new-training form says what its template says: choosing a template fills the fields,
an edit that departs from it shows "Custom (changed from ...)", the only activation set is
chosen by itself, and every field has a human label, its unit, what 0 means and its config
name in the tooltip (all generated from ``mistudio.sae.config``)."""

from __future__ import annotations

import dataclasses

import pytest

from mistudio.sae.config import SETTING_INFO, TrainingConfig


def _register_sets(studio, folder, n):
    from mistudio.activations.repository import ActivationSetRecord

    studio.activations.repo.insert_all([ActivationSetRecord(
        id=f"act_form{i}", hook_name="blocks.0.hook_resid_post", status="ready",
        name=f"set {i}", d_in=32, num_rows=20_000, folder=str(folder)) for i in range(n)])


def _panel(studio, qtbot):
    from mistudio.ui.training.new_training import NewTrainingPanel

    panel = NewTrainingPanel(studio)
    qtbot.addWidget(panel)
    return panel


def _type(editor, text):
    editor.setText(text)
    editor.textEdited.emit(text)  # as typing does


def test_every_setting_has_a_label_and_help():
    names = [f.name for f in dataclasses.fields(TrainingConfig)]
    assert sorted(SETTING_INFO) == sorted(names)
    for name, info in SETTING_INFO.items():
        assert info.label and info.help, name
    for name, info in SETTING_INFO.items():
        if info.auto:  # the automatic value it explains is the one a user finds there
            auto_value = info.auto.split(" = ")[0]
            assert auto_value in ("0", "-1", "empty"), name  # "empty": a list setting


def test_labels_units_automatic_values_and_config_names(qtbot):
    from mistudio.ui.training.form import TrainingForm

    form = TrainingForm()
    qtbot.addWidget(form)
    for name, editor in form.editors.items():
        label = form.rows[name][1].text()
        assert label == SETTING_INFO[name].label and label != name.replace("_", " ") or \
            name in ("k", "seed", "compile", "device", "architecture", "shuffle"), name
        assert f"Config name: {name}" in editor.toolTip()
    assert form.rows["d_sae"][1].text() == "SAE width"
    assert "0 = automatic: from expansion factor" in form.notes["d_sae"].text()
    assert "0 = automatic: from expansion factor" in form.editors["d_sae"].toolTip()
    assert form.notes["total_tokens"].text() == "tokens"
    assert "0 = automatic" in form.notes["aux_k"].text()
    assert form.rows["lr"][1].text() == "Learning rate"
    # With the data's width known, an automatic width says what it works out to.
    form.set_data_shape(64, 10_000)
    assert "(= 512 latents)" in form.notes["d_sae"].text()  # 8 x 64
    _type(form.editors["d_sae"], "1000")
    assert "(=" not in form.notes["d_sae"].text()
    _type(form.editors["batch_size"], "lots")
    assert form.config()[1] == ["Batch size: 'lots' is not a number."]
    assert [form.sweep_key.itemText(i) for i in range(1, 3)] == ["Architecture", "SAE width"]


def test_choosing_a_template_fills_the_form_and_edits_say_custom(studio, qtbot,
                                                                 tiny_activation_dir):
    _register_sets(studio, tiny_activation_dir, 1)
    panel = _panel(studio, qtbot)
    # The only activation set is chosen, so no red "no activation set" error.
    assert panel.data_combo.currentData() == "id:act_form0"
    assert panel.validate() == "" and panel.start_btn.isEnabled()
    # No template chosen yet: the list says so instead of naming one the form does not hold.
    assert panel.template_combo.currentData() == ""
    assert panel.template_combo.currentText() == "Default settings"

    fast = studio.templates.get("builtin:fast_prototype")
    panel.template_combo.setCurrentIndex(panel.template_combo.findData(fast.id))
    cfg, problems = panel.form.config()
    assert not problems
    for key, value in fast.settings.items():
        assert cfg[key] == pytest.approx(value) if isinstance(value, float) else \
            cfg[key] == value, key
    assert (cfg["expansion_factor"], cfg["total_tokens"], cfg["batch_size"], cfg["lr"]) == \
        (4, 5_000_000, 1024, 1e-3)
    assert panel.template_desc.text().startswith(fast.description)

    # Device and data stay; a setting the template does not set keeps the combo on it.
    _type(panel.form.editors["seed"], "7")
    assert panel.template_combo.currentData() == fast.id
    # Departing from the template's own values says so, and what changed.
    _type(panel.form.editors["expansion_factor"], "8")
    assert panel.template_combo.currentData() == ""
    assert panel.template_combo.currentText() == "Custom (changed from Fast prototype)"
    assert "Expansion factor 4 → 8" in panel.template_desc.text()
    assert panel.form.config()[0]["expansion_factor"] == 8  # the edit is kept
    # Choosing it again puts its settings back.
    panel.template_combo.setCurrentIndex(panel.template_combo.findData(fast.id))
    assert panel.form.config()[0]["expansion_factor"] == 4
    assert panel.template_combo.currentText().startswith("Fast prototype")


def test_template_settings_without_a_field_go_with_the_run(studio, qtbot, tiny_activation_dir):
    _register_sets(studio, tiny_activation_dir, 1)
    t = studio.templates.save("Seeded", {"architecture": "topk", "k": 8, "init_seed": 5,
                                         "compile_backend": "aot_eager"})
    panel = _panel(studio, qtbot)
    panel.reload_templates()
    panel.select_template(t.id)
    config, problems = panel.full_config()
    assert not problems and config["init_seed"] == 5 and config["compile_backend"] == "aot_eager"
    assert config["k"] == 8 and "init_seed = 5" in panel.template_desc.text()
    # Saved again under another name, the template keeps them.
    assert panel.save_template("Seeded copy").settings["init_seed"] == 5
    # Edited, the form is the template plus the edit: the settings without a field stay.
    _type(panel.form.editors["k"], "9")
    assert panel.template_combo.currentData() == ""
    assert panel.full_config()[0]["init_seed"] == 5
    assert "still set, without a field here:" in panel.template_desc.text()
    assert "init_seed = 5" in panel.template_desc.text()
    # Another template replaces them.
    panel.select_template("builtin:fast_prototype")
    assert "init_seed" not in panel.full_config()[0]


def test_several_activation_sets_are_not_chosen_for_the_user(studio, qtbot, tiny_activation_dir):
    _register_sets(studio, tiny_activation_dir, 2)
    panel = _panel(studio, qtbot)
    assert panel.data_combo.currentData() == ""
    assert "No activation set chosen" in panel.validate()


def test_last_used_settings_are_named_as_such(studio, qtbot, tiny_activation_dir):
    studio.templates.remember_last_used({"architecture": "relu", "l1_coefficient": 2.0,
                                         "activation_path": str(tiny_activation_dir)})
    panel = _panel(studio, qtbot)
    assert panel.template_combo.currentText() == "Last used settings"
    assert panel.form.config()[0]["architecture"] == "relu"
    assert panel.data_combo.currentData() == f"path:{tiny_activation_dir}"
