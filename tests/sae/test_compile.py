"""The ``compile`` option on the CPU: a compiled dense step trains like the eager one, and a
compiler that fails (or is missing) falls back to eager with the reason in the log.

Inductor's C++ code generation takes one to two minutes cold on this 2-core machine, too
slow for a test; the ``aot_eager`` backend runs the same capture (TorchDynamo graph, AOT
autograd through the custom JumpReLU functions) without code generation.
"""

from __future__ import annotations

import pytest
import torch

from mistudio.jobs.context import JobContext
from mistudio.sae.data import TensorSource
from mistudio.sae.trainer import Trainer


def _train(cfg, x, logs=None):
    ctx = JobContext.standalone(None, on_event=lambda _j, kind, p: logs.append(p["message"])
                                if logs is not None and kind == "log" else None)
    tr = Trainer(cfg, TensorSource(x), None, ctx=ctx)
    tr.run()
    return tr


def test_compiled_dense_step_trains_like_eager(synthetic, small_config):
    """JumpReLU: its custom autograd functions are the part a compiler could get wrong
    (ReLU's step is plain tensor code)."""
    arch = "jumprelu"
    x, _ = synthetic
    cfg = small_config(architecture=arch, total_tokens=256 * 8, metrics_every_steps=4,
                       l1_warmup_fraction=0.5)  # a sparsity scale that changes every step
    eager = _train(cfg, x)
    logs = []
    compiled = _train(cfg.with_changes(compile=True, compile_backend="aot_eager"), x, logs)
    assert compiled.members[0].compiled_step is not None, logs  # still compiled at the end
    assert not [m for m in logs if "torch.compile" in m]
    for (name, p), q in zip(eager.members[0].sae.state_dict().items(),
                            compiled.members[0].sae.state_dict().values()):
        torch.testing.assert_close(q, p, rtol=1e-4, atol=1e-6, msg=name)


def test_failing_or_missing_compiler_falls_back_to_eager_with_the_reason(synthetic,
                                                                         small_config):
    from torch._dynamo import register_backend

    @register_backend(name="mistudio_test_no_toolchain")
    def _no_toolchain(gm, example_inputs):  # what inductor does without a C++ compiler
        raise RuntimeError("Compiler: cc is not found.")

    x, _ = synthetic
    cfg = small_config(architecture="relu", total_tokens=256 * 4, metrics_every_steps=2)
    eager = _train(cfg, x)
    for backend, expected in (("mistudio_test_no_toolchain",
                               "torch.compile failed (RuntimeError: Compiler: cc is not found.)"
                               "; continuing without it."),
                              ("no_such_backend", "torch.compile is not available")):
        logs = []
        tr = _train(cfg.with_changes(compile=True, compile_backend=backend), x, logs)
        assert tr.members[0].compiled_step is None
        assert any(expected in m for m in logs), logs
        for (name, p), q in zip(eager.members[0].sae.state_dict().items(),
                                tr.members[0].sae.state_dict().values()):
            torch.testing.assert_close(q, p, rtol=0, atol=0, msg=name)


def test_compile_is_skipped_for_topk_with_a_note(synthetic, small_config):
    x, _ = synthetic
    logs = []
    tr = _train(small_config(total_tokens=256 * 2, compile=True), x, logs)
    assert tr.members[0].compiled_step is None
    assert any("dense SAEs only" in m for m in logs)
