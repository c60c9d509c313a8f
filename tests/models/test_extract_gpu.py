"""The CUDA path of extraction (pinned buffers, non-blocking copies, background writer):
activations equal the model's own hidden states. Skipped without CUDA (marker ``gpu``)."""

from __future__ import annotations

import numpy as np
import pytest


def _cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:  # noqa: BLE001
        return False


pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not _cuda(), reason="needs a CUDA GPU")]


@pytest.mark.parametrize("store_dtype", ["float32", "bfloat16"])
def test_cuda_extraction_equals_hidden_states(studio, tiny_gpt2_dir, packed_tokenization,
                                              store_dtype):
    import torch
    from transformers import AutoModelForCausalLM

    from mistudio.data.tokenized import TokenizedDataset

    rec, job = studio.models.add_local(str(tiny_gpt2_dir))
    assert studio.jobs.wait(job.id, 120).status == "completed"
    # small shards and batches: every shard spans several batches and the buffer pool cycles
    sets, job = studio.activations.start_extraction(
        rec.id, str(packed_tokenization), layers=[1], max_tokens=300, batch_size=2,
        device="cuda", model_dtype="float32", store_dtype=store_dtype, shard_rows=100)
    done = studio.jobs.wait(job.id, 120)
    assert done.status == "completed", (done.error, done.traceback)
    reader = studio.activations.open(sets[0].id)
    pos = reader.positions()
    tok = TokenizedDataset(packed_tokenization)
    model = AutoModelForCausalLM.from_pretrained(tiny_gpt2_dir, dtype=torch.float32).eval()
    seqs = np.unique(pos[:, 0])
    ids = torch.from_numpy(np.asarray(tok.tokens[seqs[0]:seqs[-1] + 1]).astype(np.int64))
    with torch.no_grad():
        hidden = model(input_ids=ids, output_hidden_states=True).hidden_states[2].numpy()
    want = hidden[pos[:, 0] - seqs[0], pos[:, 1]]
    if store_dtype == "bfloat16":
        want = torch.from_numpy(want).to(torch.bfloat16).float().numpy()
    # GPU vs CPU float32 kernels (TF32 off by default for matmul in PyTorch)
    tol = 1e-3 if store_dtype == "float32" else 2e-2
    np.testing.assert_allclose(reader.rows(0, reader.num_rows), want, atol=tol, rtol=tol)
    assert reader.num_rows == 300
