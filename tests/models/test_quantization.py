"""8-bit and 4-bit (bitsandbytes) on the CPU with the real bitsandbytes: the opt-in setting,
loading through the service, extraction from a quantized model, saved variants.

Numbers are checked against independent references: a float32 forward with each quantized
layer's weight dequantized by hand (tests/models/quant_support.py), and the quantized
model's own ``output_hidden_states``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mistudio.errors import UserError
from tests.models.quant_support import (add_model as _add, bnb_available, bnb_layers,
                                         check_4bit_layers, dequantized_reference,
                                         dequantized_weight, perturb_block,
                                         wait_completed as _wait)

pytestmark = pytest.mark.skipif(not bnb_available(), reason="bitsandbytes does not import")

SETTING = "Allow 8-/4-bit quantization on the CPU"


def _ids(n=4, seq=24, seed=1):
    import torch

    return torch.randint(0, 512, (n, seq), generator=torch.Generator().manual_seed(seed))


def test_refused_on_cpu_without_the_setting(studio, tiny_llama_dir, packed_tokenization):
    m = _add(studio, tiny_llama_dir)
    opts = studio.models.quantization_options("cpu")
    assert opts["none"] == ""
    for q in ("8bit", "4bit"):
        assert SETTING in opts[q] and "CUDA" in opts[q]
    with pytest.raises(UserError, match="File > Settings") as err:
        studio.models.load(m.id, quantization="4bit", device="cpu")
    assert SETTING in str(err.value)
    with pytest.raises(UserError, match=SETTING):
        studio.models.save_quantized(m.id, "4bit", device="cpu")
    with pytest.raises(UserError, match=SETTING):
        studio.activations.start_extraction(m.id, str(packed_tokenization), layers=[1],
                                            quantization="8bit", device="cpu")
    assert studio.activations.list() == [] and studio.list_jobs(kind="models.quantize") == []
    studio.update_settings(allow_cpu_quantization=True)
    assert studio.models.quantization_options("cpu") == {"none": "", "8bit": "", "4bit": ""}


@pytest.mark.numerics  # bitsandbytes' CPU paths depend on the instruction set
@pytest.mark.parametrize("family_dir", ["tiny_llama_dir", "tiny_gpt2_dir"])
def test_load_8bit_and_4bit_on_cpu_against_dequantized_reference(studio, family_dir, request):
    import bitsandbytes as bnb
    import torch
    from transformers import AutoModelForCausalLM

    from mistudio.models.pool import model_memory_bytes

    folder = request.getfixturevalue(family_dir)
    m = _add(studio, folder)
    studio.models.release(m.id)  # the process cache may hold it from an earlier test
    studio.update_settings(allow_cpu_quantization=True)
    fp = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    ids = _ids()
    with torch.no_grad():
        logits_fp = fp(ids).logits
    scale = logits_fp.abs().max().item()
    for q, kind in (("8bit", "Linear8bitLt"), ("4bit", "Linear4bit")):
        loaded = studio.models.load(m.id, quantization=q, device="cpu", dtype="float32")
        assert loaded.quantization == q and loaded.device == "cpu"
        counts = bnb_layers(loaded.model)
        # every Linear/Conv1D in the blocks (GPT-2: 4 a block, Llama: 7); lm_head stays
        assert counts[kind] == m.n_layers * (4 if m.family == "gpt2" else 7), counts
        # the memory estimate made before loading vs what the loaded model holds (before a
        # forward: bitsandbytes' fused bf16 CPU path repacks the 4-bit weights then): within
        # 10% (bnb's code tables and row scales are a larger share on a tiny model)
        est = studio.models.memory_estimate(m.id, dtype="float32", quantization=q,
                                            device="cpu")["weights"]
        footprint = loaded.model.get_memory_footprint()
        assert abs(est - footprint) / footprint < 0.10, (q, est, footprint)
        assert loaded.memory_bytes == model_memory_bytes(loaded.model) >= footprint
        ref, _ = dequantized_reference(loaded.model, folder)
        if q == "4bit":
            # each layer against its own input times the dequantized weight, computed the way
            # bitsandbytes computes on this CPU (fused bf16 kernel with AVX512-BF16, float32
            # otherwise) with a bound derived from that dtype: see quant_support.py
            weights = {n: dequantized_weight(mod) for n, mod in loaded.model.named_modules()
                       if isinstance(mod, bnb.nn.Linear4bit)}  # before the first forward
            worst = check_4bit_layers(loaded.model, ids, weights)
            fused = worst.pop("_fused_bf16")
            assert max(worst.values()) <= 1, worst
        with torch.no_grad():
            got = loaded.model(ids).logits.float()
            want = ref(ids).logits
        if q == "4bit" and not fused:
            # float32 compute on dequantized NF4 weights: the same arithmetic as the reference
            assert torch.allclose(got, want, atol=1e-4), (got - want).abs().max()
        elif q == "8bit":
            # LLM.int8 also rounds each activation row to int8 (step absmax/127): <= 0.4%
            # a layer; through 3 blocks and the head, bounded by 3% of the logit scale
            assert (got - want).abs().max().item() < 0.03 * scale
        # and the quantized model is a close stand-in for the fp32 one (NF4: 16 levels)
        assert (got - logits_fp).abs().max().item() < (0.05 if q == "8bit" else 0.35) * scale
        held = {(e["quantization"], e["device"]) for e in studio.models.loaded()}
        assert (q, "cpu") in held
    assert studio.models.release(m.id) == 2
    assert not [e for e in studio.models.loaded() if e["folder"] == str(Path(folder).resolve())]


def _bnb_cpu_paths() -> list[str]:
    if not bnb_available():
        return []
    from bitsandbytes.functional import has_avx512bf16

    return (["fused_bf16"] if has_avx512bf16() else []) + ["dequantize_fp32"]


@pytest.mark.numerics
@pytest.mark.parametrize("path", _bnb_cpu_paths())
def test_4bit_check_catches_one_block_off_by_one_step(tiny_llama_dir, path):
    """The per-layer check is loose enough for bf16 arithmetic yet fails when a single
    quantization block (64 weights) of one layer is off by one NF4 step, on both of
    bitsandbytes' CPU paths (the fused bf16 one only exists on AVX512-BF16 CPUs)."""
    import bitsandbytes as bnb
    import torch
    from transformers import AutoModelForCausalLM

    from mistudio.models.loading import quantization_config

    def load():
        model = AutoModelForCausalLM.from_pretrained(
            tiny_llama_dir, quantization_config=quantization_config("4bit", "float32"),
            dtype=torch.float32, device_map="cpu").eval()
        layers = {n: m for n, m in model.named_modules() if isinstance(m, bnb.nn.Linear4bit)}
        for m in layers.values():  # off: bitsandbytes dequantizes and calls F.linear
            m.support_avx512bf16_for_cpu = m.support_avx512bf16_for_cpu and path == "fused_bf16"
        return model, layers, {n: dequantized_weight(m) for n, m in layers.items()}

    model, layers, weights = load()
    clean = check_4bit_layers(model, _ids(), weights)
    assert bool(clean.pop("_fused_bf16")) == (path == "fused_bf16")
    assert max(clean.values()) <= 1, clean
    model, layers, weights = load()
    name = "model.layers.1.mlp.down_proj"
    perturb_block(layers[name], block=1)  # after the reference weights were taken
    broken = check_4bit_layers(model, _ids(), weights)
    broken.pop("_fused_bf16")
    assert broken[name] > 1, broken[name]
    assert max(v for k, v in broken.items() if k != name) <= 1  # and only that layer


def test_extract_from_4bit_model_equals_its_hidden_states(studio, tiny_llama_dir,
                                                          packed_tokenization):
    import torch

    from mistudio.data.tokenized import TokenizedDataset

    m = _add(studio, tiny_llama_dir)
    studio.update_settings(allow_cpu_quantization=True)
    sets, job = studio.activations.start_extraction(
        m.id, str(packed_tokenization), layers=[1], hook_types=["resid_post", "mlp_in"],
        max_tokens=150, batch_size=4, device="cpu", model_dtype="float32",
        quantization="4bit")
    _wait(studio, job)
    loaded = studio.models.load(m.id, quantization="4bit", device="cpu", dtype="float32")
    assert bnb_layers(loaded.model)["Linear4bit"] == 21  # the cached model the job used
    tok = TokenizedDataset(packed_tokenization)
    by_hook = {s.hook_name: studio.activations.open(s.id) for s in sets}
    reader = by_hook["blocks.1.hook_resid_post"]
    pos = reader.positions()
    assert reader.num_rows == 150 and reader.meta["model_dtype"] == "float32"
    seqs = np.unique(pos[:, 0])
    ids = torch.from_numpy(np.asarray(tok.tokens[seqs[0]:seqs[-1] + 1]).astype(np.int64))
    captured = {}
    mlp_norm = loaded.model.model.layers[1].post_attention_layernorm
    handle = mlp_norm.register_forward_hook(lambda _m, _a, out: captured.update(x=out))
    try:
        with torch.no_grad():
            out = loaded.model(input_ids=ids, output_hidden_states=True)
    finally:
        handle.remove()
    hidden = out.hidden_states[2].numpy()  # after block 1 (index 0 is the embeddings)
    want = hidden[pos[:, 0] - seqs[0], pos[:, 1]]
    np.testing.assert_allclose(reader.rows(0, 150), want, atol=1e-4, rtol=1e-4)
    mlp_in = captured["x"].numpy()[pos[:, 0] - seqs[0], pos[:, 1]]
    np.testing.assert_allclose(by_hook["blocks.1.hook_mlp_in"].rows(0, 150), mlp_in,
                               atol=1e-4, rtol=1e-4)


def test_save_variant_job_reload_and_delete(studio, tiny_llama_dir):
    import torch

    from mistudio.models.loading import load_model_uncached
    from mistudio.models.pool import MODEL_POOL

    m = _add(studio, tiny_llama_dir)
    assert m.linked
    studio.update_settings(allow_cpu_quantization=True)
    job = studio.models.save_quantized(m.id, "4bit", dtype="float32", device="cpu")
    assert job.params["device"] == "cpu" and job.params["allow_cpu_quantization"] is True
    _wait(studio, job)
    m = studio.models.get(m.id)
    v = m.variants["4bit"]
    folder = Path(v["folder"])
    # in the model's own data folder, never written into the user's linked folder
    assert folder == studio.models.folder(m.id) / "variants" / "4bit"
    assert not (tiny_llama_dir / "variants").exists()
    names = {p.name for p in folder.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= names
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # no .partial
    qc = json.loads((folder / "config.json").read_text())["quantization_config"]
    assert qc["load_in_4bit"] and qc["bnb_4bit_quant_type"] == "nf4"
    original = (tiny_llama_dir / "model.safetensors").stat().st_size
    assert (folder / "model.safetensors").stat().st_size < 0.75 * original
    assert v["bytes"] > 0 and v["dtype"] == "float32" and v["device"] == "cpu"

    # reload: the saved config carries the quantization (no new config is passed)
    reloaded = studio.models.load(m.id, variant="4bit", device="cpu")
    assert reloaded.folder == str(folder.resolve()) and reloaded.quantization == "4bit"
    assert bnb_layers(reloaded.model)["Linear4bit"] == 21
    fresh, _ = load_model_uncached(tiny_llama_dir, dtype="float32", device="cpu",
                                   quantization="4bit", allow_cpu_quantization=True)
    ids = _ids()
    with torch.no_grad():
        assert torch.equal(reloaded.model(ids).logits, fresh(ids).logits)
    with pytest.raises(UserError, match="saved in 4bit"):
        load_model_uncached(folder, device="cpu", quantization="8bit",
                            allow_cpu_quantization=True)
    with pytest.raises(UserError, match="already quantized"):
        from mistudio.models.loading import save_quantized_variant

        save_quantized_variant(folder, "8bit", device="cpu", allow_cpu_quantization=True)
    # without the opt-in a variant does not load on the CPU either
    studio.models.release(m.id)
    studio.update_settings(allow_cpu_quantization=False)
    with pytest.raises(UserError, match=SETTING):
        studio.models.load(m.id, variant="4bit", device="cpu")
    with pytest.raises(UserError, match="no saved 8bit variant"):
        studio.models.load(m.id, variant="8bit", device="cpu")

    studio.models.delete(m.id)
    assert not folder.exists() and not studio.models.folder(m.id).exists()
    assert (tiny_llama_dir / "model.safetensors").exists()
    assert not [e for e in MODEL_POOL.loaded() if e.folder == str(folder.resolve())]


def test_cli_extracts_from_a_saved_quantized_copy(data_dir, studio, tiny_llama_dir,
                                                  packed_tokenization, capsys):
    import re

    from mistudio.activations.format import ActivationSet
    from mistudio.cli import main
    from tests.models.test_ui_quantization import _hidden_rows

    m = _add(studio, tiny_llama_dir)
    studio.update_settings(allow_cpu_quantization=True)
    _wait(studio, studio.models.save_quantized(m.id, "4bit", dtype="float32", device="cpu"))
    studio.close(timeout=10)  # the CLI opens the same data folder in its own Studio
    rc = main(["--data-dir", str(data_dir), "extract", "run", m.id, str(packed_tokenization),
               "--layers", "1", "--hooks", "resid_post", "--max-tokens", "64",
               "--batch-size", "4", "--device", "cpu", "--variant", "4bit"])
    out = capsys.readouterr().out
    assert rc == 0, out
    set_id = re.search(r"(act_[0-9a-f]+)\s+blocks.1.hook_resid_post\s+ready", out).group(1)
    from mistudio.studio import Studio
    from mistudio.secrets_test_support import MemorySecrets

    s2 = Studio(data_dir, secrets=MemorySecrets())
    try:
        rec = s2.activations.get(set_id)
        reader = ActivationSet(rec.folder)
        variant = s2.models.load(m.id, variant="4bit", device="cpu")
        want = _hidden_rows(variant, packed_tokenization, reader, 1)
        np.testing.assert_allclose(reader.rows(0, len(reader)), want, atol=1e-4, rtol=1e-4)
    finally:
        s2.close(timeout=10)
