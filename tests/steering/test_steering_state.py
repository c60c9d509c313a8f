"""The Steering tab's state without Qt: the intervention rows, units, sweeps into columns,
contrast vectors, presets."""

from __future__ import annotations

import pytest

from mistudio.errors import UserError
from mistudio.steering.interventions import Intervention
from mistudio.steering.presets import Preset, SAEIdentity
from mistudio.ui.steering.state import DEFAULT_COEF, SteeringState


def test_a_feature_is_added_once_with_the_unit_default():
    state = SteeringState()
    row = state.add_feature(12, label="dates")
    assert (row.feature, row.kind, row.value, row.label) == (12, "add", DEFAULT_COEF["raw"],
                                                              "dates")
    again = state.add_feature(12, kind="ablate")
    assert again is row and row.kind == "ablate" and len(state.rows) == 1
    assert state.add_feature(5, kind="clamp").value == 0.0
    state.remove(0)
    assert [r.feature for r in state.rows] == [5]


def test_changing_units_resets_steering_strengths_but_not_clamps():
    state = SteeringState()
    state.add_feature(1)
    state.add_feature(2, kind="clamp").value = 3.5
    state.set_units("max")
    assert [r.value for r in state.rows] == [DEFAULT_COEF["max"], 3.5]
    assert all(iv.units == "max" for iv in state.interventions())
    state.rows[0].value = 2.0
    state.set_units("max")  # the same units: the user's value stays
    assert state.rows[0].value == 2.0


def test_a_sweep_makes_one_column_per_value_replacing_the_base_on_its_feature():
    state = SteeringState()
    state.add_feature(7)
    state.add_feature(9, kind="ablate")
    assert [c.label for c in state.columns()] == [
        ", ".join(iv.label for iv in state.interventions())]  # no sweep: one column
    state.sweep = "7:-4..4:3"
    cols = state.columns()
    assert len(cols) == 3
    for col, value in zip(cols, (-4.0, 0.0, 4.0)):
        on_7 = [iv for iv in col.interventions if iv.feature == 7]
        assert [iv.value for iv in on_7] == [value]  # the swept value replaced the base row
        assert any(iv.feature == 9 and iv.kind == "ablate" for iv in col.interventions)
    state.sweep = "7:1..2:0"
    with pytest.raises(UserError, match="1 to 64 values"):
        state.columns()


def test_a_contrast_vector_needs_prompts_on_both_sides():
    state = SteeringState()
    with pytest.raises(UserError, match="each side"):
        state.add_contrast("love", ["I love it"], ["  "])
    assert state.rows == []
    row = state.add_contrast("  ", ["I love it", ""], ["I hate it"])
    iv = row.intervention("raw")
    assert (iv.kind, iv.feature, iv.name) == ("vector", None, "contrast")
    assert iv.positive == ["I love it"] and iv.negative == ["I hate it"]


def test_a_preset_replaces_rows_units_and_scope():
    state = SteeringState()
    state.add_feature(1)
    preset = Preset(name="calm", sae=SAEIdentity("blocks.0.hook_resid_post", 64, "abc"),
                    interventions=[Intervention("add", 4, 0.5, "norm"),
                                                Intervention("ablate", 8, 0.0, "norm")],
                    scope="prompt")
    state.apply_preset(preset)
    assert [(r.feature, r.kind, r.value) for r in state.rows] == [(4, "add", 0.5),
                                                                 (8, "ablate", 0.0)]
    assert state.units == "norm" and state.scope == "prompt"
    assert not state.running
