"""Steering with a feature analysis: 'max' units and the feature picker's search."""

from __future__ import annotations

import pytest

from mistudio.errors import UserError
from mistudio.steering.interventions import Column, Intervention
from tests.models.conftest import write_tokenization
from tests.steering.conftest import make_sae


@pytest.fixture
def analysed(steer_studio, tmp_path, tiny_tokenizer_dir):
    studio, model, sae = steer_studio
    tok = write_tokenization(tmp_path / "tok", tiny_tokenizer_dir, seq_len=32)
    job = studio.features.start_analysis(sae.id, tokenization=str(tok), max_tokens=0,
                                         device="cpu", n_random=10)
    done = studio.jobs.wait(job.id, timeout=120)
    assert done.status == "completed", done.error
    return studio, model, sae


def test_max_units_multiply_by_the_analysed_max_activation(analysed):
    studio, model, sae = analysed
    svc = studio.steering
    column = studio.features.results(sae.id).columns["max_act"]
    fired = [f for f in range(sae.d_sae) if column[f] > 0]
    f = fired[0]
    s = {"max_new_tokens": 6}
    by_max = svc.run(model.id, sae.id, [Column([Intervention("add", f, 3.0, "max")])], "The cat",
                     sampling=s)
    assert by_max["max_acts"] == {str(f): pytest.approx(float(column[f]))}
    raw = svc.run(model.id, sae.id,
                  [Column([Intervention("add", f, 3.0 * float(column[f]), "raw")])], "The cat",
                  sampling=s)
    assert by_max["columns"][1]["tokens"] == raw["columns"][1]["tokens"]
    assert by_max["columns"][1]["kl"] == pytest.approx(raw["columns"][1]["kl"], abs=1e-6)
    dead = [g for g in range(sae.d_sae) if column[g] <= 0]
    if dead:
        with pytest.raises(UserError, match=f"Feature {dead[0]} never fired"):
            svc.prepare(model.id, sae.id, [Column([Intervention("add", dead[0], 1, "max")])], "x")


def test_feature_picker_searches_the_analysis(analysed):
    studio, model, sae = analysed
    svc = studio.steering
    assert svc.has_analysis(sae.id)
    top = svc.feature_info(sae.id, "", 10)
    assert len(top) == 10 and all(r["top_tokens"] for r in top)
    assert [r["density"] for r in top] == sorted((r["density"] for r in top), reverse=True)
    word = top[0]["top_tokens"][0].strip()
    assert top[0]["index"] in [r["index"] for r in svc.feature_info(sae.id, word, 500)]
    assert svc.feature_info(sae.id, str(top[0]["index"]))[0]["max_activation"] == \
        pytest.approx(top[0]["max_activation"])
    assert svc.feature_info(sae.id, str(sae.d_sae)) == []
