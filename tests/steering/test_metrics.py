"""Steering metrics against computations written out by hand (numpy, a hand-made hook)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mistudio.models import hooks
from mistudio.steering import engine
from mistudio.steering.generate import Sampling
from mistudio.steering.interventions import Column, Intervention
from mistudio.steering.metrics import token_diff
from tests.steering.conftest import HOOK, make_sae

PROMPT = [11, 45, 97, 203, 7, 64]


def _log_softmax(z):
    z = np.asarray(z, dtype=np.float64)
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def _forward(model, seq, add=None, capture=None):
    """Logits of one sequence; ``add(h)`` edits block 1's output by hand."""
    block = model.get_submodule("transformer.h.1")

    def hook(_m, _a, out):
        h = out[0] if isinstance(out, tuple) else out
        if capture is not None:
            capture.append(h[0].clone())
        if add is not None:
            h = add(h)
        return (h, *out[1:]) if isinstance(out, tuple) else h

    handle = block.register_forward_hook(hook)
    try:
        with torch.no_grad():
            return model(input_ids=torch.tensor([seq])).logits[0].numpy()
    finally:
        handle.remove()


@pytest.mark.parametrize("scope", ["all", "generated"])
def test_kl_perplexity_and_feature_changes_equal_hand_computations(gpt2, scope):
    model, tok = gpt2
    sae = make_sae("relu")
    feature, coef = 3, 12.0
    target = hooks.resolve(HOOK, "gpt2", 3)
    res = engine.run_comparison(model, tok, sae, target,
                                [Column([Intervention("add", feature, coef)])], PROMPT,
                                Sampling(max_new_tokens=8), scope=scope)
    base, steered = res["columns"]
    p = len(PROMPT)
    direction = (coef * sae.W_dec[feature]).detach()
    start = 0 if scope == "all" else p

    def add(h):
        h = h.clone()
        h[:, start:] += direction
        return h

    for col in (base, steered):
        seq = PROMPT + col["tokens"]
        lp = _log_softmax(_forward(model, seq))
        nll = [-lp[p - 1 + j, t] for j, t in enumerate(col["tokens"])]
        assert col["perplexity"] == pytest.approx(float(np.exp(np.mean(nll))), rel=1e-5)

    seq = PROMPT + steered["tokens"]
    xs = []
    lu = _log_softmax(_forward(model, seq, capture=xs))
    ls = _log_softmax(_forward(model, seq, add=add))
    kl = [float((np.exp(ls[i]) * (ls[i] - lu[i])).sum())
          for i in range(p - 1, p - 1 + len(steered["tokens"]))]
    assert steered["kl"] == pytest.approx(kl, abs=1e-6)
    assert steered["kl_mean"] == pytest.approx(float(np.mean(kl)), abs=1e-6)
    assert max(kl) > 1e-3
    if scope == "generated":
        assert steered["kl"][0] == pytest.approx(0.0, abs=1e-9)  # the first token is unsteered

    x = xs[0][start:]
    with torch.no_grad():
        before = sae.encode(x).double().mean(0).numpy()
        after = sae.encode(x + direction).double().mean(0).numpy()
    (t,) = steered["targets"]
    assert t["feature"] == feature
    assert t["before"] == pytest.approx(before[feature], abs=1e-5)
    assert t["after"] == pytest.approx(after[feature], abs=1e-5)
    change = np.abs(after - before)
    change[feature] = -1
    want = list(np.argsort(-change)[:len(steered["off_target"])])
    assert [o["feature"] for o in steered["off_target"]] == [int(w) for w in want]
    for o in steered["off_target"]:
        assert o["change"] == pytest.approx(after[o["feature"]] - before[o["feature"]], abs=1e-5)


def test_token_diff_marks_what_changed():
    a = ["The", " cat", " sat", " on", " the", " mat"]
    b = ["The", " dog", " sat", " on", " the", " mat", "."]
    ops = token_diff(a, b)
    assert [o["op"] for o in ops] == ["equal", "replace", "equal", "insert"]
    assert ops[1]["a_text"] == " cat" and ops[1]["b_text"] == " dog"
    assert ops[3]["b"] == [6, 7] and ops[3]["b_text"] == "."
