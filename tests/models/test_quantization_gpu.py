"""The CUDA path of 8-/4-bit (bitsandbytes): load, extract, save and reload a variant.

Skipped without CUDA; a GPU session runs them all with ``pytest -m gpu tests/models``.
Same references as the CPU tests (tests/models/quant_support.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.models.quant_support import (add_model as _add, bnb_available, bnb_layers,
                                         dequantized_reference, wait_completed as _wait)


def _cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:  # noqa: BLE001
        return False


pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not _cuda(), reason="needs a CUDA GPU"),
              pytest.mark.skipif(not bnb_available(), reason="bitsandbytes does not import")]


def test_cuda_load_8bit_and_4bit_against_dequantized_reference(studio, tiny_llama_dir):
    import torch

    m = _add(studio, tiny_llama_dir)
    assert studio.models.quantization_options("cuda") == {"none": "", "8bit": "", "4bit": ""}
    ids = torch.randint(0, 512, (4, 24), generator=torch.Generator().manual_seed(1))
    for q, kind in (("8bit", "Linear8bitLt"), ("4bit", "Linear4bit")):
        loaded = studio.models.load(m.id, quantization=q, device="cuda", dtype="float16")
        assert loaded.quantization == q and bnb_layers(loaded.model)[kind] == 21
        assert next(loaded.model.parameters()).device.type == "cuda"
        ref, _ = dequantized_reference(loaded.model, tiny_llama_dir)
        with torch.no_grad():
            got = loaded.model(ids.cuda()).logits.float().cpu()
            want = ref(ids).logits
        scale = want.abs().max().item()
        # float16 compute (and int8 activations for 8-bit) against a float32 reference
        assert (got - want).abs().max().item() < 0.03 * scale
        est = studio.models.memory_estimate(m.id, dtype="float16", quantization=q,
                                            device="cuda")["weights"]
        footprint = loaded.model.get_memory_footprint()
        assert abs(est - footprint) / footprint < 0.10, (q, est, footprint)
    studio.models.release(m.id)


def test_cuda_extract_from_4bit_equals_its_hidden_states(studio, tiny_llama_dir,
                                                         packed_tokenization):
    import torch

    from mistudio.data.tokenized import TokenizedDataset

    m = _add(studio, tiny_llama_dir)
    sets, job = studio.activations.start_extraction(
        m.id, str(packed_tokenization), layers=[1], hook_types=["resid_post"], max_tokens=150,
        batch_size=4, device="cuda", model_dtype="float16", quantization="4bit",
        store_dtype="float32")
    _wait(studio, job)
    loaded = studio.models.load(m.id, quantization="4bit", device="cuda", dtype="float16")
    reader = studio.activations.open(sets[0].id)
    pos = reader.positions()
    tok = TokenizedDataset(packed_tokenization)
    seqs = np.unique(pos[:, 0])
    ids = torch.from_numpy(np.asarray(tok.tokens[seqs[0]:seqs[-1] + 1]).astype(np.int64))
    with torch.no_grad():
        hidden = loaded.model(input_ids=ids.cuda(), output_hidden_states=True
                              ).hidden_states[2].float().cpu().numpy()
    want = hidden[pos[:, 0] - seqs[0], pos[:, 1]]
    # float16 on the GPU; batches of 4 vs one batch may pick other kernels
    np.testing.assert_allclose(reader.rows(0, 150), want, atol=2e-2, rtol=1e-2)


def test_cuda_save_variant_and_reload(studio, tiny_llama_dir):
    import torch

    from mistudio.models.loading import load_model_uncached

    m = _add(studio, tiny_llama_dir)
    _wait(studio, studio.models.save_quantized(m.id, "4bit", dtype="float16", device="cuda"))
    v = studio.models.get(m.id).variants["4bit"]
    folder = Path(v["folder"])
    assert json.loads((folder / "config.json").read_text())["quantization_config"][
        "load_in_4bit"]
    assert (folder / "model.safetensors").stat().st_size < \
        0.75 * (tiny_llama_dir / "model.safetensors").stat().st_size
    reloaded = studio.models.load(m.id, variant="4bit", device="cuda")
    fresh, _ = load_model_uncached(tiny_llama_dir, dtype="float16", device="cuda",
                                   quantization="4bit")
    ids = torch.randint(0, 512, (2, 16), generator=torch.Generator().manual_seed(2)).cuda()
    with torch.no_grad():
        assert torch.equal(reloaded.model(ids).logits, fresh(ids).logits)
    studio.models.delete(m.id)
    assert not folder.exists()
