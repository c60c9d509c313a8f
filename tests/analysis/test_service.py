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


def _reference_hidden(model_dir, ids, layer):
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    with torch.no_grad():
        out = model(torch.tensor([ids]), output_hidden_states=True)
    return model, out.hidden_states[layer + 1][0], out.logits[0]


def test_prompt_features_per_token_match_the_sae_on_the_model(studio_analysis, tiny_gpt2_dir):
    studio, sae_id, _ = studio_analysis
    text = "Paris is the capital of France. The cat sat on the mat."
    got = studio.features.top_features(sae_id, text, k=3)
    assert got.excluded[0] and got.features[0] == []  # BOS
    sae = studio.trainings.load_sae(sae_id)
    _, hidden, _ = _reference_hidden(tiny_gpt2_dir, got.token_ids, 1)
    acts = sae.encode(hidden).detach().numpy()
    for t in range(1, len(got.token_ids)):
        want = np.argsort(-acts[t], kind="stable")[:3]
        want = [int(i) for i in want if acts[t, i] > 0]
        assert [f for f, _ in got.features[t]] == want
        np.testing.assert_allclose([v for _, v in got.features[t]], acts[t, want], rtol=1e-4)
    assert "".join(got.tokens[1:]) == text
    again = studio.features.top_features(sae_id, text, k=3)  # model and SAE stay loaded
    assert again.features == got.features


def test_ablation_unablated_splice_reproduces_the_model_and_removes_the_feature(
        studio_analysis, tiny_gpt2_dir):
    import torch

    studio, sae_id, fa_id = studio_analysis
    res = studio.features.results(sae_id)
    f = int(np.argmax(res.columns["firing_count"]))
    example = res.examples(f, "top")[0]
    ids = [int(t) for t in res.array("tokens")[example.seq, :example.pos + 3]]
    rec = studio.features.get_analysis(fa_id)
    analyzer = studio.features._prompt_analyzer()
    spliced, _ = analyzer.splice_logits(rec.params["sae_folder"], rec.params["model_folder"],
                                        rec.hook_name, ids, excluded_ids=(0, 1))
    model, hidden, logits = _reference_hidden(tiny_gpt2_dir, ids, 1)
    torch.testing.assert_close(spliced, logits, atol=1e-4, rtol=1e-4)
    # the ablated splice equals subtracting the feature's decoder contribution by hand
    sae = studio.trainings.load_sae(sae_id)
    act = sae.encode(hidden)[:, f].detach()
    act[torch.tensor(ids) == 0] = 0  # BOS keeps its activations

    def minus_feature(_m, _a, out):
        delta = act[None, :, None] * sae.W_dec[f].detach()
        if isinstance(out, tuple):
            return (out[0] - delta,) + tuple(out[1:])
        return out - delta

    h = model.transformer.h[1].register_forward_hook(minus_feature)
    with torch.no_grad():
        want = model(torch.tensor([ids])).logits[0]
    h.remove()
    results = studio.features.ablate(sae_id, f, n_examples=2)
    assert studio.features.ablate(sae_id, f, n_examples=2) is results  # cached
    first = results[0]
    assert (first.seq, first.pos) == (example.seq, example.pos)
    assert first.activation[example.pos] == pytest.approx(example.value, rel=1e-4)
    ablated, _ = analyzer.splice_logits(rec.params["sae_folder"], rec.params["model_folder"],
                                        rec.hook_name, ids, ablate=f, excluded_ids=(0, 1))
    torch.testing.assert_close(ablated, want, atol=1e-4, rtol=1e-4)
    logp_clean = torch.log_softmax(logits, -1)
    logp_abl = torch.log_softmax(want, -1)
    t = example.pos
    change = -(logp_abl[t, ids[t + 1]] - logp_clean[t, ids[t + 1]])
    assert first.loss_change[t] == pytest.approx(float(change), abs=1e-4)
    diff = want[t] - logits[t]
    assert first.logit_increase[t][0][0] == int(torch.argmax(diff))
    assert first.logit_decrease[t][0][0] == int(torch.argmin(diff))


def test_cancelled_analysis_is_recorded_and_resumes_to_completion(studio_analysis):
    studio, sae_id, fa_id = studio_analysis
    svc = studio.features
    tokenization = svc.get_analysis(fa_id).tokenization
    cancelled = []

    def cancel_at_first_checkpoint(job_id, kind, payload):
        if kind == "checkpoint" and not cancelled:
            cancelled.append(job_id)
            studio.cancel_job(job_id)

    studio.add_job_listener(cancel_at_first_checkpoint)
    job = svc.start_analysis(sae_id, tokenization=tokenization, max_tokens=0, device="cpu",
                             chunk_rows=50, batch_size=2, n_random=10)
    assert studio.jobs.wait(job.id, timeout=120).status == "cancelled"
    rec = svc.get_analysis(job.target)
    assert rec.status == "cancelled" and rec.finished_at
    assert svc.latest_analysis(sae_id).id == fa_id  # the completed one still answers
    with pytest.raises(UserError, match="cancelled, not completed"):
        svc.results(sae_id, analysis=rec.id)
    again = svc.resume_analysis(rec.id)
    done = studio.jobs.wait(again.id, timeout=120)
    assert done.status == "completed", done.error
    log = studio.job_log(again.id)
    assert "Resuming the streaming pass at token" in log
    assert svc.get_analysis(rec.id).status == "completed"
    assert svc.latest_analysis(sae_id).id == rec.id
    assert len(svc.feature_rows(sae_id)) == svc.results(sae_id).d_sae
