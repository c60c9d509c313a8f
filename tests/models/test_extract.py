"""The extraction job against direct forward passes, with padding/BOS skipping and resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mistudio.activations.extract import run as extract
from mistudio.activations.format import ActivationSet, is_complete
from mistudio.data.tokenized import TokenizedDataset
from mistudio.errors import JobCancelled, UserError
from mistudio.jobs.context import JobContext
from tests.models.conftest import write_tokenization

HOOKS = ["blocks.0.hook_resid_post", "blocks.1.hook_mlp_out", "blocks.1.hook_resid_pre"]


def _params(model_dir, tok_dir, out, **kw):
    p = {"model_folder": str(model_dir), "model_name": "tiny", "tokenization": str(tok_dir),
         "hook_points": HOOKS, "device": "cpu", "model_dtype": "float32",
         "outputs": {h: {"set_id": f"act_{i}", "folder": str(out / f"set{i}")}
                     for i, h in enumerate(HOOKS)},
         "batch_size": 4, "store_dtype": "float32", "skip_bos": True, "max_tokens": 0}
    p.update(kw)
    return p


def _reference(model_dir, tok_dir, skip_bos=True):
    """Independent computation: full forward with output_hidden_states + a plain hook."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    tok = TokenizedDataset(tok_dir)
    ids = torch.from_numpy(np.asarray(tok.tokens).astype(np.int64))
    lengths = np.asarray(tok.lengths)
    attn = torch.from_numpy(np.arange(tok.seq_len)[None] < lengths[:, None]).long()
    mlp = []
    blocks = model.transformer.h if hasattr(model, "transformer") else model.model.layers
    h = blocks[1].mlp.register_forward_hook(lambda m, a, o: mlp.append(o))
    with torch.no_grad():
        hs = model(ids, attention_mask=attn, output_hidden_states=True).hidden_states
    h.remove()
    mask = np.arange(tok.seq_len)[None] < lengths[:, None]
    if skip_bos:
        mask &= np.asarray(tok.tokens) != tok.meta["bos_token_id"]
    m = torch.from_numpy(mask)
    return {HOOKS[0]: hs[1][m].numpy(), HOOKS[1]: mlp[0][m].numpy(), HOOKS[2]: hs[1][m].numpy(),
            "positions": np.argwhere(mask)}


@pytest.mark.parametrize("which", ["gpt2_packed", "llama_padded"])
def test_extracted_equals_direct_forward(which, tmp_path, tiny_gpt2_dir, tiny_llama_dir,
                                         packed_tokenization, padded_tokenization):
    model_dir = tiny_gpt2_dir if which.startswith("gpt2") else tiny_llama_dir
    tok_dir = packed_tokenization if which.endswith("packed") else padded_tokenization
    result = extract(_params(model_dir, tok_dir, tmp_path), JobContext.standalone(tmp_path / "j"))
    ref = _reference(model_dir, tok_dir)
    assert result["tokens"] == len(ref["positions"])
    for i, h in enumerate(HOOKS):
        s = ActivationSet(tmp_path / f"set{i}")
        assert s.meta["hook_name"] == h and s.d_in == 64
        np.testing.assert_allclose(s.rows(0, s.num_rows), ref[h], atol=2e-5, rtol=1e-4)
        np.testing.assert_array_equal(s.positions(), ref["positions"])
    assert ActivationSet(tmp_path / "set1").meta["hook_layer"] == 1
    # one name per concept on disk: SAELens's, not the old two-name copies
    raw = json.loads((tmp_path / "set1" / "meta.json").read_text())
    assert raw["hook_name"] == HOOKS[1] and "hook_point" not in raw and "layer" not in raw


def test_bf16_storage_and_max_tokens(tmp_path, tiny_gpt2_dir, packed_tokenization):
    p = _params(tiny_gpt2_dir, packed_tokenization, tmp_path, store_dtype="bfloat16",
                max_tokens=50, skip_bos=False)
    extract(p, JobContext.standalone(tmp_path / "j"))
    ref = _reference(tiny_gpt2_dir, packed_tokenization, skip_bos=False)
    s = ActivationSet(tmp_path / "set0")
    assert s.num_rows == 50 and s.dtype == "bfloat16"
    expected = torch.from_numpy(ref[HOOKS[0]][:50]).bfloat16().float().numpy()
    np.testing.assert_allclose(s.rows(0, 50), expected, atol=0.02, rtol=0.01)


def test_tokenizer_mismatch_is_refused(tmp_path, tiny_gpt2_dir, packed_tokenization):
    import json

    bad = tmp_path / "tok"
    write_tokenization(bad, tiny_gpt2_dir)
    meta = json.loads((bad / "meta.json").read_text())
    meta["tokenizer_fingerprint"] = "0123456789abcdef"
    meta["tokenizer"] = "other-tokenizer"
    (bad / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(UserError, match="different tokenizer"):
        extract(_params(tiny_gpt2_dir, bad, tmp_path), JobContext.standalone(tmp_path / "j"))
    assert not (tmp_path / "set0").exists()


def test_unknown_hook_point_is_refused(tmp_path, tiny_gpt2_dir, packed_tokenization):
    p = _params(tiny_gpt2_dir, packed_tokenization, tmp_path)
    p["hook_points"] = ["blocks.7.hook_resid_post"]
    p["outputs"] = {"blocks.7.hook_resid_post": {"folder": str(tmp_path / "x")}}
    with pytest.raises(UserError, match="layer 7"):
        extract(p, JobContext.standalone(tmp_path / "j"))


class _Crash(Exception):
    pass


def _crash_after(rows: int):
    def sink(job_id, kind, payload):
        if kind == "progress" and payload["total"] and payload["done"] >= rows:
            raise _Crash("simulated crash")
    return sink


def _all_rows(folder):
    s = ActivationSet(folder)
    return s.rows(0, s.num_rows), s.positions()


def test_resume_after_crash_and_after_cancel_match_uninterrupted(tmp_path, tiny_gpt2_dir,
                                                                  packed_tokenization):
    clean = tmp_path / "clean"
    extract(_params(tiny_gpt2_dir, packed_tokenization, clean, shard_rows=100),
            JobContext.standalone(tmp_path / "j0"))

    crashed = tmp_path / "crashed"
    p = _params(tiny_gpt2_dir, packed_tokenization, crashed, shard_rows=100)
    with pytest.raises(_Crash):
        extract(p, JobContext.standalone(tmp_path / "j1", on_event=_crash_after(400)))
    assert not is_complete(crashed / "set0")
    with pytest.raises(UserError, match="incomplete"):
        ActivationSet(crashed / "set0")
    logs = []
    extract(p, JobContext.standalone(tmp_path / "j2", on_event=lambda j, k, pl: logs.append(pl)))
    assert any("Resuming after" in (pl.get("message") or "") for pl in logs)

    cancelled = tmp_path / "cancelled"
    pc = _params(tiny_gpt2_dir, packed_tokenization, cancelled, shard_rows=100)
    ctx = JobContext.standalone(tmp_path / "j3")
    ctx._sink = lambda j, k, pl: ctx.request_cancel() if k == "progress" and (
        pl["done"] or 0) >= 150 else None
    with pytest.raises(JobCancelled):
        extract(pc, ctx)
    extract(pc, JobContext.standalone(tmp_path / "j4"))

    for i in range(len(HOOKS)):
        ref_rows, ref_pos = _all_rows(clean / f"set{i}")
        for other in (crashed, cancelled):
            rows, pos = _all_rows(other / f"set{i}")
            np.testing.assert_array_equal(pos, ref_pos)
            np.testing.assert_allclose(rows, ref_rows, atol=1e-6)
        assert ActivationSet(crashed / f"set{i}").num_shards > 1


def test_cancel_after_the_last_batch_then_resume_finishes(tmp_path, tiny_gpt2_dir,
                                                          packed_tokenization):
    p = _params(tiny_gpt2_dir, packed_tokenization, tmp_path, max_tokens=64)
    ctx = JobContext.standalone(tmp_path / "j")
    ctx._sink = lambda j, k, pl: ctx.request_cancel() if k == "progress" and pl["total"] and \
        pl["done"] >= pl["total"] else None
    with pytest.raises(JobCancelled):
        extract(p, ctx)
    assert not is_complete(tmp_path / "set0")
    result = extract(p, JobContext.standalone(tmp_path / "j2"))
    assert result["tokens"] == 64
    assert ActivationSet(tmp_path / "set0").num_rows == 64
