"""The steering engine on tiny models: hooks, generation, clamping, the KV cache."""

from __future__ import annotations

import pytest
import torch

from mistudio.models import hooks
from mistudio.steering import engine
from mistudio.steering.generate import Sampling
from mistudio.steering.hook import LatentReader, RowPlan, SteeringHook
from mistudio.steering.interventions import Column, Intervention
from tests.steering.conftest import HOOK, make_sae

PROMPT = [11, 45, 97, 203, 7, 64]
TEXT = PROMPT + [300, 12, 88, 150]


def _target(model, name=HOOK):
    cfg = model.config
    return hooks.resolve(name, cfg.model_type, cfg.num_hidden_layers)


def _capture_after(model, target, hook):
    """Record the hook point's tensor as the next layer sees it (registered after ``hook``)."""
    seen = {}
    module = hooks.get_module(model, target.module_path)
    if target.io == "output":
        h = module.register_forward_hook(lambda m, a, out: seen.update(x=hooks.first_tensor(out)))
    else:
        h = module.register_forward_pre_hook(
            lambda m, a, kw: seen.update(x=hooks.input_tensor(a, kw)), with_kwargs=True)
    return seen, h


@pytest.mark.parametrize("hook_name", [HOOK, "blocks.1.hook_resid_pre", "blocks.0.hook_mlp_out"])
@pytest.mark.parametrize("scope", ["all", "prompt", "generated"])
def test_hooks_change_exactly_the_intended_positions(gpt2, hook_name, scope):
    model, _ = gpt2
    sae = make_sae("topk")
    target = _target(model, hook_name)
    direction = 5.0 * sae.W_dec[3]
    hook = SteeringHook(target, [None, RowPlan(add=direction)], sae=sae, scope=scope,
                        prompt_len=len(PROMPT))
    ids = torch.tensor([TEXT, TEXT])
    with torch.no_grad():
        plain = model(input_ids=ids, output_hidden_states=True).hidden_states
        with hook.attached(model):
            seen, h = _capture_after(model, target, hook)
            try:
                steered = model(input_ids=ids, output_hidden_states=True).hidden_states
            finally:
                h.remove()
        seen_plain, h = _capture_after(model, target, hook)
        try:
            model(input_ids=ids)
        finally:
            h.remove()
    pos = torch.arange(len(TEXT))
    want = {"all": pos >= 0, "prompt": pos < len(PROMPT), "generated": pos >= len(PROMPT)}[scope]
    before, after = seen_plain["x"], seen["x"]
    # the baseline row is untouched, bit for bit, in every layer
    assert torch.equal(after[0], before[0])
    for a, b in zip(steered, plain):
        assert torch.equal(a[0], b[0])
    # the steered row: exactly the direction added at the positions in scope, nothing elsewhere
    diff = after[1] - before[1]
    assert torch.allclose(diff[want], direction.expand(int(want.sum()), -1), atol=1e-5)
    assert torch.equal(after[1][~want], before[1][~want])
    # later layers: causal attention keeps every position before the first steered one
    first = int(want.nonzero()[0])
    for a, b in zip(steered, plain):
        assert torch.equal(a[1, :first], b[1, :first])
    assert not torch.allclose(steered[-1][1, first:], plain[-1][1, first:])


@pytest.mark.parametrize("arch", ["topk", "relu", "jumprelu", "batchtopk"])
def test_clamped_latents_are_read_as_the_sae_encodes_them(arch):
    sae = make_sae(arch)
    x = torch.randn(2, 5, 64) * 2
    feats = [0, 3, 17, 90, 127]
    full = sae.encode(x)
    assert (full[..., feats] > 0).any()
    got = LatentReader(sae, feats, torch.float32, "cpu")(x)
    assert torch.allclose(got, full[..., feats], atol=1e-5)


def test_clamp_to_the_original_value_with_the_error_term_reproduces_the_baseline(gpt2):
    model, _ = gpt2
    sae = make_sae("topk")
    target = _target(model)
    ids = torch.tensor([TEXT, TEXT])
    with torch.no_grad():
        x = engine.hook_inputs(model, target, [TEXT])[0][0]       # [T, d]
        f = sae.encode(x)
        inactive = int((f.abs().sum(0) == 0).nonzero()[0])
        active = int(f[-1].argmax())
        base = model(input_ids=ids).logits
        # ablating a feature that never fires here changes nothing (the error term is kept)
        hook = SteeringHook(target, [None, RowPlan(clamps={inactive: 0.0})], sae=sae)
        with hook.attached(model):
            clamped = model(input_ids=ids).logits
        assert torch.allclose(clamped[1], base[1], atol=1e-5)
        # clamping an active feature to its own value: the hook adds exactly nothing
        one = SteeringHook(target, [RowPlan(clamps={active: float(f[-1, active])})], sae=sae)
        assert one.delta(x[None, -1:])[0].abs().max() < 1e-5
        # ...whereas splicing the plain reconstruction in (no error term) moves the logits
        def splice(_m, _a, out):
            h = hooks.first_tensor(out)
            new = sae.decode(sae.encode(h))
            return (new, *out[1:]) if isinstance(out, tuple) else new
        handle = hooks.get_module(model, target.module_path).register_forward_hook(splice)
        try:
            spliced = model(input_ids=ids).logits
        finally:
            handle.remove()
        assert (spliced[1] - base[1]).abs().max() > 1e-3
        # and clamping an active feature to something else does change the output
        hook = SteeringHook(target, [None, RowPlan(clamps={active: 50.0})], sae=sae)
        with hook.attached(model):
            moved = model(input_ids=ids).logits
        assert (moved[1] - base[1]).abs().max() > 1e-3


def _columns():
    return [Column([Intervention("add", 3, 40.0)]),
            Column([Intervention("clamp", 7, 30.0), Intervention("ablate", 11)]),
            Column([Intervention("add", 5, -25.0), Intervention("clamp", 9, 15.0)])]


@pytest.mark.parametrize("which", ["gpt2", "llama"])
@pytest.mark.parametrize("scope", ["all", "generated", "prompt"])
def test_cached_and_uncached_steered_generation_agree_token_by_token(request, which, scope):
    model, tok = request.getfixturevalue(which)
    sae = make_sae("topk")
    target = _target(model)
    s = Sampling(max_new_tokens=10)
    kw = dict(scope=scope, with_metrics=False)
    cached = engine.run_comparison(model, tok, sae, target, _columns(), PROMPT, s, **kw)
    uncached = engine.run_comparison(model, tok, sae, target, _columns(), PROMPT, s,
                                     use_cache=False, **kw)
    for a, b in zip(cached["columns"], uncached["columns"]):
        assert a["tokens"] == b["tokens"], a["label"]
    assert any(c["tokens"] != cached["columns"][0]["tokens"] for c in cached["columns"][1:])


@pytest.mark.parametrize("n_columns", [1, 2])
def test_padded_batches_agree_with_uncached_generation(gpt2, n_columns):
    """2-3 rows run as 4 on the CPU (padding rows copy row 0's prompt cache): the same
    tokens as the uncached loop, which runs every row at every step."""
    from mistudio.steering.generate import batch_rows

    model, tok = gpt2
    assert batch_rows(1 + n_columns, "cpu") == 4
    sae = make_sae("topk")
    s = Sampling(max_new_tokens=8)
    cols = _columns()[:n_columns]
    cached = engine.run_comparison(model, tok, sae, _target(model), cols, PROMPT, s,
                                   with_metrics=False)
    uncached = engine.run_comparison(model, tok, sae, _target(model), cols, PROMPT, s,
                                     use_cache=False, with_metrics=False)
    assert [c["tokens"] for c in cached["columns"]] == [c["tokens"] for c in uncached["columns"]]
    assert cached["columns"][1]["tokens"] != cached["columns"][0]["tokens"]


@pytest.mark.parametrize("sampling", [
    Sampling(max_new_tokens=12),
    Sampling(max_new_tokens=12, greedy=False, temperature=0.7, top_p=0.9, seed=5),
    Sampling(max_new_tokens=12, greedy=False, temperature=1.3, top_k=40, seed=11),
], ids=["greedy", "top-p", "top-k"])
def test_baseline_column_equals_plain_generate_and_steering_changes_the_output(gpt2, sampling):
    model, tok = gpt2
    sae = make_sae("topk")
    out = engine.run_comparison(model, tok, sae, _target(model),
                                [Column([Intervention("add", 3, 60.0)])], PROMPT, sampling,
                                with_metrics=False)
    torch.manual_seed(sampling.seed)
    with torch.no_grad():
        ref = model.generate(torch.tensor([PROMPT]), attention_mask=torch.ones(1, len(PROMPT),
                             dtype=torch.long), pad_token_id=1, eos_token_id=None,
                             **sampling.hf_kwargs())
    assert out["columns"][0]["tokens"] == ref[0, len(PROMPT):].tolist()
    assert out["columns"][1]["tokens"] != out["columns"][0]["tokens"]


def test_a_steered_row_does_not_change_the_baseline_row(gpt2):
    """The same seed and prompt alone or beside any columns: the same baseline."""
    model, tok = gpt2
    sae = make_sae("topk")
    s = Sampling(max_new_tokens=10, greedy=False, seed=2)
    alone = engine.run_comparison(model, tok, sae, _target(model), [Column([])], PROMPT, s,
                                  with_metrics=False)
    many = engine.run_comparison(model, tok, sae, _target(model), _columns(), PROMPT, s,
                                 with_metrics=False)
    assert alone["columns"][0]["tokens"] == many["columns"][0]["tokens"]


@pytest.mark.numerics  # the int8/float16 kernels' accumulation differs by instruction set
@pytest.mark.parametrize("kind", ["int8", "float16"])
def test_topk_latents_screened_on_a_cheap_encoder_copy_are_exact(kind):
    """The int8 / float16 screen of a TopK SAE's pre-activations decides membership of the
    top k exactly: checked against the SAE's own encode on the features at the boundary (the
    k-th and the (k+1)-th largest) for 1..4 rows a pass (decoding steps), at scales from
    tiny to beyond float16's range, and that the bound it relies on holds."""
    from mistudio.sae.architectures import TopKSAE
    from mistudio.steering.topk_screen import TopKScreen, _int8_kernel

    if kind == "int8" and not _int8_kernel():
        pytest.skip("this torch build has no int8 weight-only matmul on the CPU")
    sae = TopKSAE(64, 4096, k=32, seed=3).eval().requires_grad_(False)
    with torch.no_grad():
        sae.b_enc.normal_(0, 0.05)
    W, b = sae.W_enc_t.detach(), sae.b_enc.detach()
    screen = TopKScreen(W, b, 32, kind)
    g = torch.Generator().manual_seed(5)
    for scale in (1e-3, 1.0, 30.0, 2e5):
        for rows in (1, 2, 4):
            x = torch.randn(rows, 1, 64, generator=g) * scale
            xin = x - sae.b_dec.detach()
            got_bound = screen.approximate(xin.reshape(rows, 64))
            if got_bound is not None:  # the bound holds (float16 refuses 2e5: overflow)
                approx, err = got_bound
                exact = torch.nn.functional.linear(xin.reshape(rows, 64), W, b)
                assert ((approx - exact).abs() <= err).all()
            pre = sae.pre_acts(x)
            order = pre[-1, 0].argsort(descending=True)
            feats = sorted({int(order[0]), int(order[31]), int(order[32]), int(order[-1])})
            reader = LatentReader(sae, feats, torch.float32, "cpu")
            reader.screen = screen
            got = reader(x)
            want = sae.encode(x)[..., feats]
            assert torch.allclose(got, want, atol=1e-5 * scale)
            row = dict(zip(feats, got[-1, 0].tolist()))
            assert row[int(order[31])] != 0 or pre[-1, 0, order[31]] <= 0
            assert row[int(order[32])] == 0 and row[int(order[-1])] == 0
    # many inputs, the features around the k-th largest (where the bounds straddle k and
    # the screen computes the latents in between exactly) and a positive bias so the
    # screen runs rather than the shortcut for pre-activations <= 0
    with torch.no_grad():
        sae.b_enc += 0.5
    screen = TopKScreen(sae.W_enc_t.detach(), sae.b_enc.detach(), 32, kind)
    for _ in range(40):
        x = torch.randn(2, 64, generator=g)
        order = sae.pre_acts(x)[-1].argsort(descending=True)
        feats = torch.tensor(sorted({int(order[i]) for i in (0, 30, 31, 32, 33, 200)}))
        got = screen.latents(x - sae.b_dec.detach(), feats)
        assert torch.allclose(got, sae.encode(x)[..., feats], atol=1e-5)
    assert screen.counts["resolved"] >= 30 and screen.counts["skipped"] == 0
    # a longer pass (a prompt) runs the plain float32 product, also exact
    x = torch.randn(2, 9, 64, generator=g)
    assert screen.latents(x - sae.b_dec.detach(), torch.tensor([0, 5])) is None
    reader = LatentReader(sae, [0, 5], torch.float32, "cpu")
    assert torch.allclose(reader(x), sae.encode(x)[..., [0, 5]], atol=1e-5)


@pytest.mark.numerics
def test_the_screen_is_built_with_the_cheapest_kind_whose_bound_holds():
    from mistudio.sae.architectures import TopKSAE
    from mistudio.steering.topk_screen import TopKScreen, _int8_kernel

    sae = TopKSAE(64, 4096, k=32, seed=3).eval().requires_grad_(False)
    reader = LatentReader(sae, [1, 2], torch.float32, "cpu")
    assert isinstance(reader.screen, TopKScreen)
    assert reader.screen.kind == ("int8" if _int8_kernel() else "float16")
    # not on other dtypes (the plain product is used)
    assert LatentReader(sae, [1], torch.float64, "cpu").screen is None
