"""Packed linear weights (oneDNN) for CPU decoding: same results, this thread only."""

from __future__ import annotations

import threading

import pytest
import torch

from mistudio.steering import engine, packed
from mistudio.steering.generate import Sampling, generate_rows
from mistudio.steering.interventions import Column, Intervention
from tests.steering.conftest import make_sae
from tests.steering.test_engine import PROMPT, _columns, _target

# numerics: oneDNN picks its kernels by the CPU's instruction set, and these tests assume
# how they round (batch independence, rounding apart from MKL); CI reruns them with AVX2
pytestmark = [pytest.mark.skipif(not torch.backends.mkldnn.is_available(),
                                 reason="torch built without oneDNN"),
              pytest.mark.numerics]


def _net(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(96, 160), torch.nn.Linear(160, 48, bias=False)
                               ).eval().requires_grad_(False)


def _plain(net, x):
    return torch.nn.functional.linear(x, net[0].weight, net[0].bias)


@pytest.mark.parametrize("which", ["gpt2", "llama"])
def test_every_linear_layer_is_packed_and_generation_is_unchanged(request, which):
    """GPT-2's Conv1D and Llama's nn.Linear: the packed kernels run, and a batched
    comparison gives the tokens the plain F.linear loop gives (greedy and sampled)."""
    model, tok = request.getfixturevalue(which)
    sae = make_sae("topk")
    kinds = {type(m).__name__ for m in model.modules() if packed._linear_weight(m) is not None}
    assert kinds == ({"Conv1D", "Linear"} if which == "gpt2" else {"Linear"})
    x = torch.randn(3, 2, model.config.hidden_size)
    with torch.inference_mode(), packed.packed_linears(model) as on:
        assert on
        head = model.get_output_embeddings()
        assert "forward" in head.__dict__
        got = head(x)
    assert "forward" not in head.__dict__  # uninstalled on leaving
    assert torch.allclose(got, torch.nn.functional.linear(x, head.weight), atol=1e-5)
    for s in (Sampling(max_new_tokens=10),
              Sampling(max_new_tokens=10, greedy=False, temperature=0.8, top_p=0.9, seed=3)):
        runs = {}
        for use in (True, False):
            runs[use] = [c["tokens"] for c in engine.run_comparison(
                model, tok, sae, _target(model), _columns(), PROMPT, s, with_metrics=False,
                packed=use)["columns"]]
        assert runs[True] == runs[False]


def test_packed_results_match_f_linear_and_do_not_depend_on_the_other_rows():
    net = _net()
    x = torch.randn(4, 7, 96)
    with torch.inference_mode(), packed.packed_linears(net):
        full = net[0](x)
        alone = net[0](x[1:2])
        strided = net[0](x.transpose(0, 1))          # a non-contiguous input
        out = net(x)
    assert torch.allclose(full, _plain(net, x), atol=1e-5)
    assert torch.equal(alone, full[1:2])                 # bit for bit, whatever the batch
    assert torch.allclose(strided, _plain(net, x.transpose(0, 1)), atol=1e-5)
    assert torch.allclose(out, torch.nn.functional.linear(_plain(net, x), net[1].weight),
                          atol=1e-5)


def test_another_thread_running_the_same_model_gets_the_plain_forward():
    net = _net(1)
    x = torch.randn(2, 96)
    with torch.inference_mode():
        plain = _plain(net, x)
        with packed.packed_linears(net):
            mine = net[0](x)
        assert not torch.equal(mine, plain), "choose inputs where the kernels round apart"
    inside, done = threading.Event(), threading.Event()
    seen = {}

    def other():
        inside.wait(10)
        with torch.inference_mode():
            seen["y"] = net[0](x)
        done.set()

    t = threading.Thread(target=other)
    t.start()
    with torch.inference_mode(), packed.packed_linears(net):
        inside.set()
        assert done.wait(10)
        again = net[0](x)
    t.join()
    assert torch.equal(seen["y"], plain)
    assert torch.equal(again, mine)


def test_a_changed_weight_is_repacked():
    net = _net(2)
    x = torch.randn(3, 96)
    with torch.inference_mode(), packed.packed_linears(net):
        net[0](x)
    with torch.no_grad():
        net[0].weight.mul_(-2.0)
    with torch.inference_mode(), packed.packed_linears(net):
        y = net[0](x)
    assert torch.allclose(y, _plain(net, x), atol=1e-5)


def test_a_model_built_under_inference_mode_is_packed():
    with torch.inference_mode():
        net = _net(6)
        x = torch.randn(2, 96)
        with packed.packed_linears(net) as on:
            y = net[0](x)
    assert on and torch.allclose(y, _plain(net, x), atol=1e-5)


def test_no_packing_without_the_memory_or_when_switched_off(gpt2, monkeypatch):
    model, tok = gpt2
    s = Sampling(max_new_tokens=6)
    want = generate_rows(model, PROMPT, 2, s, packed=False)
    net = _net(3)
    monkeypatch.setattr(packed, "MEMORY_SHARE", 0.0)
    with packed.packed_linears(net) as on:
        assert not on and "forward" not in net[0].__dict__
    assert not packed.is_packed(net)
    monkeypatch.setattr(packed, "MEMORY_SHARE", 0.5)
    monkeypatch.setenv(packed.ENV_SWITCH, "0")
    with packed.packed_linears(net) as on:
        assert not on
    assert generate_rows(model, PROMPT, 2, s) == want
    monkeypatch.delenv(packed.ENV_SWITCH)
    with packed.packed_linears(net) as on:
        assert on


def test_a_float64_model_or_layer_is_left_alone():
    net = _net(4).double()
    with packed.packed_linears(net) as on:
        assert not on
    assert not packed.prepare(net)
    mixed = _net(5)
    mixed[1].double()
    x = torch.randn(2, 96)
    with torch.inference_mode(), packed.packed_linears(mixed) as on:
        assert on and "forward" in mixed[0].__dict__ and "forward" not in mixed[1].__dict__
        y = mixed[1](mixed[0](x).double())
    assert y.dtype == torch.float64



def test_the_steering_job_generates_with_the_packed_weights(steer_studio, monkeypatch):
    """The app's path (service -> job thread -> engine) packs the pooled model's weights
    and its generating thread runs the packed kernels."""
    from mistudio.models.pool import MODEL_POOL

    studio, model, sae = steer_studio
    calls = []
    real = packed._packed_forward

    def counting(module, weight, plain):
        fwd = real(module, weight, plain)

        def forward(x, *a, **kw):
            calls.append(bool(getattr(packed._LOCAL, "depth", 0)))
            return fwd(x, *a, **kw)
        return forward

    monkeypatch.setattr(packed, "_packed_forward", counting)
    for loaded in MODEL_POOL.loaded():
        packed.drop(loaded.model)  # built by an earlier test with the real forward
    rec, _ = studio.steering.start(model.id, sae.id, [Column([Intervention("add", 3, 40.0)])],
                                   "The cat sat", sampling={"max_new_tokens": 4})
    result = studio.steering.wait(rec.id)
    assert len(result["columns"]) == 2
    assert any(packed.is_packed(e.model) for e in MODEL_POOL.loaded())
    assert calls and all(calls)  # every call of an installed forward came from the job thread
