"""The features service through the app: analyses, queries, search, per-feature rows."""

from __future__ import annotations

import numpy as np
import pytest

from mistudio.errors import UserError


def test_analysis_through_the_app_records_rows_and_answers_queries(studio_analysis):
    studio, sae_id, fa_id = studio_analysis
    svc = studio.features
    rec = svc.get_analysis(fa_id)
    assert rec.status == "completed" and rec.n_tokens > 0 and rec.sae_id == sae_id
    assert svc.latest_analysis(sae_id).id == fa_id
    assert [a.id for a in svc.list_analyses(sae_id)] == [fa_id]
    res = svc.results(sae_id)
    assert res.analysis_id == fa_id and res.meta["sae_id"] == sae_id
    # one SQLite row per feature, the same numbers as the arrays
    rows = svc.feature_rows(sae_id, sort="density", descending=True)
    assert len(rows) == res.d_sae
    assert [r.density for r in rows] == sorted(res.columns["density"], reverse=True)
    r0 = rows[0]
    assert r0.firing_count == res.columns["firing_count"][r0.feature]
    assert not any(r.dead for r in svc.feature_rows(sae_id, include_dead=False))
    detail = svc.feature(sae_id, r0.feature)
    assert detail.firing_count == r0.firing_count and detail.top_examples
    assert detail.top_examples[0].value == pytest.approx(detail.max_act)
    assert set(detail.logit_lens) == {"raw", "folded"}
    # search: by a token at the top examples, and by index
    word = r0.top_tokens.split(" | ")[0].strip()
    hits = svc.search(sae_id, word)
    assert r0.feature in [h.feature for h in hits]
    assert [h.feature for h in svc.search(sae_id, "7")] == [7]
    with pytest.raises(UserError, match="does not exist"):
        svc.feature(sae_id, res.d_sae)


def test_mismatched_inputs_fail_before_anything_is_saved(studio_analysis, tmp_path,
                                                         tiny_tokenizer_dir):
    from tests.analysis.conftest import random_sae
    from mistudio.sae.formats import save_saelens

    studio, sae_id, fa_id = studio_analysis
    before = sorted(p.name for p in (studio.paths.root / "features").iterdir())
    # the SAE reads width 32, the hook point has width 64
    save_saelens(tmp_path / "narrow", random_sae(d_in=32), model_name="tiny-gpt2",
                 hook_name="blocks.1.hook_resid_post")
    narrow = studio.trainings.import_sae(str(tmp_path / "narrow"))
    with pytest.raises(UserError, match="width 32.*width 64"):
        studio.features.start_analysis(narrow.id, tokenization=studio.features.get_analysis(
            fa_id).tokenization)
    # a hook point the model does not have
    save_saelens(tmp_path / "deep", random_sae(), model_name="tiny-gpt2",
                 hook_name="blocks.9.hook_resid_post")
    deep = studio.trainings.import_sae(str(tmp_path / "deep"))
    with pytest.raises(UserError, match="layer 9"):
        studio.features.start_analysis(deep.id, tokenization=studio.features.get_analysis(
            fa_id).tokenization)
    assert studio.features.list_analyses(narrow.id) == []
    assert studio.features.list_analyses(deep.id) == []
    assert sorted(p.name for p in (studio.paths.root / "features").iterdir()) == before
    with pytest.raises(UserError, match="no completed feature analysis"):
        studio.features.results(narrow.id)
