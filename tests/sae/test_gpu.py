"""GPU-only checks of the training engine (skipped without CUDA): ``pytest -m gpu``.

- bf16 autocast keeps fp32 master weights (parameters, gradients and Adam state stay fp32),
  the loss stays finite and the SAE reaches about the explained variance of an fp32 run on
  the same batches;
- ``torch.compile`` (inductor, Triton kernels) of the dense steps trains like eager on CUDA.
"""

from __future__ import annotations

import pytest
import torch

from mistudio.jobs.context import JobContext
from mistudio.sae.data import TensorSource
from mistudio.sae.trainer import Trainer

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def _train(cfg, x, device="cuda"):
    reports = []
    ctx = JobContext.standalone(None, on_event=lambda _j, kind, p: reports.append(p["values"])
                                if kind == "metric" else None)
    tr = Trainer(cfg, TensorSource(x), None, ctx=ctx, device=device)
    tr.run()
    return tr, reports


@pytest.mark.parametrize("arch", ["topk", "batchtopk", "relu", "jumprelu"])
def test_bf16_autocast_keeps_fp32_master_weights_and_matches_fp32(arch, synthetic,
                                                                   small_config):
    if not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    x, _ = synthetic
    cfg = small_config(architecture=arch, total_tokens=256 * 150, lr=1e-2, device="cuda",
                       metrics_every_steps=50, k=4, l1_coefficient=1.0,
                       l0_coefficient=0.5, jumprelu_init_threshold=0.1,
                       jumprelu_bandwidth=0.1)
    bf16, bf16_reports = _train(cfg.with_changes(dtype="bfloat16"), x)
    fp32, fp32_reports = _train(cfg.with_changes(dtype="float32"), x)
    assert bf16.matmul_dtype == torch.bfloat16 and fp32.matmul_dtype is None
    m = bf16.members[0]
    for name, p in m.sae.named_parameters():
        assert p.dtype == torch.float32 and p.device.type == "cuda", name
        assert p.grad is None or p.grad.dtype == torch.float32, name
    for state in m.optimizer.state.values():
        for key in ("exp_avg", "exp_avg_sq"):
            assert state[key].dtype == torch.float32
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in bf16_reports)
    ev_bf16 = bf16_reports[-1]["explained_variance"]
    ev_fp32 = fp32_reports[-1]["explained_variance"]
    assert ev_fp32 > 0.7, ev_fp32
    assert abs(ev_bf16 - ev_fp32) < 0.03, (ev_bf16, ev_fp32)


@pytest.mark.parametrize("arch", ["relu", "jumprelu"])
def test_compile_on_cuda_trains_like_eager(arch, synthetic, small_config):
    x, _ = synthetic
    cfg = small_config(architecture=arch, total_tokens=256 * 8, metrics_every_steps=2,
                       device="cuda", dtype="float32", l1_coefficient=1.0,
                       l1_warmup_fraction=0.5)
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False  # compare like with like
    try:
        eager, eager_reports = _train(cfg, x)
        compiled, compiled_reports = _train(cfg.with_changes(compile=True), x)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before
    assert compiled.members[0].compiled_step is not None  # it really ran compiled
    assert [r["loss"] for r in compiled_reports] == pytest.approx(
        [r["loss"] for r in eager_reports], rel=1e-4)
    for (name, p), q in zip(eager.members[0].sae.state_dict().items(),
                            compiled.members[0].sae.state_dict().values()):
        torch.testing.assert_close(q, p, rtol=1e-3, atol=1e-5, msg=name)
