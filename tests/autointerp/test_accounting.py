"""The scorers' accounting with a scripted stand-in model: balanced accuracy against a hand
computation, batching, held-out splits, resume."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mistudio.autointerp import examples, job, prompts, scoring
from mistudio.jobs.context import JobContext
from tests.autointerp.conftest import ScriptedModel
from tests.autointerp.conftest import alive_features as _alive


def test_balanced_accuracy_by_hand():
    truth = [True, True, True, False, False]
    pred = [True, False, True, True, False]
    acc, counts = scoring.balanced_accuracy(truth, pred)
    # TPR 2/3, TNR 1/2 -> (2/3 + 1/2) / 2
    assert acc == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert counts == {"tp": 2, "tn": 1, "fp": 1, "fn": 1}
    # always yes: 0.5 whatever the balance
    assert scoring.balanced_accuracy([True] * 9 + [False], [True] * 10)[0] == 0.5


def test_held_out_examples_are_disjoint_from_shown(res):
    for f in _alive(res, 6):
        sel = examples.select(res, f, n_train=5, n_test_per_group=2, n_negative=6, seed=1)
        assert sel.train and sel.test
        assert not sel.train_keys & sel.test_keys
        pos = [h for h in sel.test if h.activating]
        neg = [h for h in sel.test if not h.activating]
        assert len({h.group for h in pos}) >= 2  # several quantile groups
        assert all(h.example.value > 0 for h in pos)
        assert len(neg) == 6
        if sel.strict_negatives:
            assert all(max(h.example.values) == 0 for h in neg)
        assert all(h.example.value == 0 for h in neg)
        # reproducible with the seed
        again = examples.select(res, f, n_train=5, n_test_per_group=2, n_negative=6, seed=1)
        assert again.test_keys == sel.test_keys


def test_explainer_prompt_highlights_and_normalises(res):
    f = _alive(res, 1)[0]
    sel = examples.select(res, f, n_train=3)
    user = prompts.explainer_user(sel.train, sel.max_act, sel.logit_tokens,
                                  prompts.get_version("delphi-v1"))
    top = sel.train[0]
    # the top example's peak token is marked and scores 10 (it is the feature's max)
    assert f"<<" in user and "Example 3:" in user and "Example 4:" not in user
    assert prompts.normalised([sel.max_act, sel.max_act / 2, 0], sel.max_act) == [10, 5, 0]
    assert f"({top.tokens[top.centre]!r}, 10)" in user
    assert prompts.highlighted(["a", "b", "c", "d"], [False, True, True, False]) == "a<<bc>>d"


def test_detection_score_matches_hand_count_and_batches(res):
    f = _alive(res, 1)[0]
    sel = examples.select(res, f, n_train=5, n_test_per_group=2, n_negative=6, seed=0)
    # the scripted scorer says yes to texts holding the top activating token's string
    needle = sel.test[0].example.tokens[sel.test[0].example.centre]
    model = ScriptedModel(needle=needle)
    got = scoring.score(model, "detection", "anything", sel.test,
                        prompts.get_version(""), batch_size=3)
    assert [len(b) for b in model.batches] == \
        [3] * (len(sel.test) // 3) + ([len(sel.test) % 3] if len(sel.test) % 3 else [])
    truth = np.array([h.activating for h in sel.test])
    said = np.array([needle in "".join(h.example.tokens) for h in sel.test])
    tpr = (said & truth).sum() / truth.sum()
    tnr = (~said & ~truth).sum() / (~truth).sum()
    assert got.balanced_accuracy == pytest.approx((tpr + tnr) / 2)
    assert got.mean_answer_mass == pytest.approx(0.8)
    assert (got.tp, got.fn) == (int((said & truth).sum()), int((~said & truth).sum()))


def test_fuzz_marks_as_many_wrong_tokens(res):
    f = _alive(res, 1)[0]
    sel = examples.select(res, f, n_train=5, seed=0)
    qs = scoring.questions("fuzz", "x", sel.test, seed=0)
    pos = [h for h in sel.test if h.activating]
    assert len(qs) == len(pos) and {t for _, t, _ in qs} == {True, False}
    for (q, correct, _), h in zip(qs, pos):
        n_marked = q.count("<<")
        assert n_marked >= 1
        if correct:
            assert q.split("Text: ")[1].startswith(
                prompts.highlighted(h.example.tokens, [v > 0 for v in h.example.values])[:5])


def test_batch_run_caches_and_resumes(res, tmp_path):
    feats = _alive(res, 3)
    out = tmp_path / "results.jsonl"
    params = {"features": feats, "scorer": "detection", "results_file": str(out), "seed": 0,
              "n_train": 5, "batch_size": 4}
    model = ScriptedModel(explanation="words")
    ctx = JobContext.standalone(tmp_path / "j")
    # a crash after the first explanation: the line of the second is cut half-way
    first = job.explain(model, res, feats[0], prompts.get_version(""), params)
    out.write_text(json.dumps(first) + "\n" + '{"type": "explanation", "feat')
    model.generate_calls.clear()
    summary = job.run_batch(model, res, params, ctx)
    assert len(model.generate_calls) == 2  # the first feature was not explained again
    assert summary["explained"] == 3 and summary["scored"] == 3
    lines = job.read_results(out)
    scores = [d for d in lines if d["type"] == "score"]
    assert {d["feature"] for d in scores} == set(feats)
    assert all(d["baseline_feature"] != d["feature"] for d in scores)
    # a rerun does nothing
    model.generate_calls.clear()
    n_batches = len(model.batches)
    job.run_batch(model, res, params, ctx)
    assert not model.generate_calls and len(model.batches) == n_batches
    # the scorer never saw a shown example
    for f in feats:
        shown = {tuple(k) for k in next(d for d in lines if d["type"] == "explanation"
                                        and d["feature"] == f)["shown"]}
        scored = {tuple(i["key"]) for i in next(d for d in scores if d["feature"] == f)["items"]}
        assert not shown & scored


def test_derangement_never_pairs_a_feature_with_itself():
    for seed in range(20):
        d = scoring.derangement([1, 2, 3, 4], seed)
        assert sorted(d.values()) == [1, 2, 3, 4] and all(k != v for k, v in d.items())
    assert scoring.derangement([5]) == {}


def test_v2_prompt_hides_special_tokens_and_starts_the_answer(res, tmp_path):
    from types import SimpleNamespace

    ex = SimpleNamespace(tokens=["<|im_start|>", "The", " cat"], values=[0.0, 0.0, 2.0],
                         seq=0, pos=2)
    v1, v2 = prompts.get_version("delphi-v1"), prompts.get_version("delphi-v2")
    hidden = {"<|im_start|>"}
    assert "Example 1: <|im_start|>The<< cat>>" in prompts.explainer_user([ex], 2.0, [], v1,
                                                                           hidden)
    user = prompts.explainer_user([ex], 2.0, ["<|im_start|>", " dog"], v2, hidden)
    assert "Example 1: The<< cat>>" in user and "<|im_start|>" not in user
    assert "Activations" not in user and "' dog'" in user
    qs = scoring.questions("detection", "cats", [examples.HeldOut(ex, True, 0)], 0, hidden)
    assert "<|im_start|>" not in qs[0][0] and "Text: The cat" in qs[0][0]

    class Prefixed(ScriptedModel):
        special_tokens = hidden

        def generate_many(self, system, users, max_new_tokens=48, prefix=""):
            self.prefixes = [prefix] * len(users)
            self.generate_calls.extend(users)
            return [" small animals.\n"] * len(users)

    model = Prefixed()
    feats = _alive(res, 2)
    got = job.explain_many(model, res, feats, v2, {"n_train": 3})
    assert model.prefixes == [v2.explanation_prefix] * 2 and len(model.generate_calls) == 2
    assert got[0]["explanation"] == "small animals."
    assert got[0]["raw"] == v2.explanation_prefix + " small animals.\n"


def test_auroc_matches_sklearn_and_survives_a_no_sayer():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(1)
    truth = (rng.random(40) < 0.4).tolist()
    p_yes = np.round(rng.random(40), 1).tolist()  # rounded: ties count half
    assert scoring.auroc(truth, p_yes) == pytest.approx(roc_auc_score(truth, p_yes))
    # a model that always says "no" (P(yes) < 0.5) but ranks perfectly: balanced accuracy
    # 0.5, AUROC 1
    truth, p_yes = [True, True, False, False], [0.4, 0.3, 0.2, 0.1]
    acc, _ = scoring.balanced_accuracy(truth, [p > 0.5 for p in p_yes])
    assert acc == 0.5 and scoring.auroc(truth, p_yes) == 1.0
    assert scoring.auroc([True, True], [0.1, 0.2]) is None


def test_summary_means_leave_out_features_scored_on_one_kind_of_example():
    both = {"type": "score", "feature": 1, "balanced_accuracy": 0.5, "baseline": 0.25,
            "auroc": 0.75, "baseline_auroc": 0.5, "tp": 0, "fn": 4, "tn": 8, "fp": 0}
    other = dict(both, feature=2, balanced_accuracy=0.75, baseline=0.5, auroc=0.25,
                 baseline_auroc=None)
    # a rare feature: every activating example was shown, only negatives were asked about
    negatives_only = dict(both, feature=3, balanced_accuracy=1.0, baseline=1.0, auroc=None,
                          tp=0, fn=0)
    got = job.summarise([{"type": "explanation", "feature": 1}, both, other, negatives_only])
    assert got["scored"] == 3 and got["one_kind_only"] == 1 and got["explained"] == 1
    assert got["mean_score"] == pytest.approx(0.625)
    assert got["mean_baseline"] == pytest.approx(0.375)
    assert got["mean_auroc"] == pytest.approx(0.5)
    assert got["mean_baseline_auroc"] == pytest.approx(0.5)
