"""The Models and Activations services through the real job queue and store."""

from __future__ import annotations

import numpy as np
import pytest

from mistudio.errors import UserError


def _wait(studio, job, timeout=120):
    rec = studio.jobs.wait(job.id, timeout)
    assert rec.status == "completed", (rec.status, rec.error, rec.traceback)
    return rec


def test_add_local_inspect_extract_and_list(studio, tiny_gpt2_dir, packed_tokenization):
    rec, job = studio.models.add_local(str(tiny_gpt2_dir), name="tiny-gpt2")
    assert rec.status == "importing" and rec.linked
    _wait(studio, job)
    m = studio.models.get("tiny-gpt2")
    assert m.status == "ready" and m.family == "gpt2" and m.n_layers == 3 and m.d_model == 64
    assert m.folder == str(tiny_gpt2_dir.resolve())
    info = studio.models.inspect(m.id)
    from transformers import AutoModelForCausalLM

    ref = AutoModelForCausalLM.from_pretrained(tiny_gpt2_dir)
    # safetensors stores the tied lm_head once; parameters() counts shared tensors once
    assert info["n_params"] == sum(p.numel() for p in ref.parameters())
    assert (info["n_heads"], info["d_mlp"], info["vocab_size"], info["context_length"]) == \
        (4, 256, 512, 128)
    tree = studio.models.module_tree(m.id)
    h = [c for c in tree["children"][0]["children"] if c["name"] == "h"][0]
    assert h["children"][0]["repeat"] == 3
    hps = studio.models.hook_points(m.id)
    assert len(hps) == 18 and hps[0]["name"] == "blocks.0.hook_resid_pre"
    post = next(h for h in hps if h["name"] == "blocks.0.mlp.hook_post")
    assert post["d"] == 4 * hps[0]["d"]  # GPT-2's MLP neurons: 4 x d_model
    est = studio.models.memory_estimate(m.id, dtype="float32", device="cpu")
    assert est["weights"] == info["n_params"] * 4 and est["verdict"] == "fits"
    opts = studio.models.quantization_options("cpu")
    assert opts["none"] == "" and "CUDA" in opts["4bit"]

    sets, job = studio.activations.start_extraction(
        m.id, str(packed_tokenization), layers=[1, "last"], hook_types=["resid_post"],
        max_tokens=200, batch_size=4, device="cpu", model_dtype="float32")
    assert [s.hook_name for s in sets] == ["blocks.1.hook_resid_post", "blocks.2.hook_resid_post"]
    _wait(studio, job)
    listed = studio.activations.list(model_id=m.id)
    assert {s.status for s in listed} == {"ready"} and {s.num_rows for s in listed} == {200}
    reader = studio.activations.open(sets[0].id)
    assert reader.num_rows == 200 and reader.meta["model_id"] == m.id
    summary = studio.activations.get(sets[0].id).summary
    norms = np.linalg.norm(reader.rows(0, 200).astype(np.float64), axis=1)
    assert summary["mean_norm"] == pytest.approx(norms.mean(), rel=1e-5)
    studio.activations.delete(sets[1].id)
    assert not (studio.paths.root / "activations" / sets[1].id).exists()
    studio.models.delete(m.id)
    assert tiny_gpt2_dir.exists()  # a linked folder is the user's: never deleted


def test_cancelled_extraction_is_incomplete_then_resumes(studio, tiny_gpt2_dir,
                                                         packed_tokenization):
    rec, job = studio.models.add_local(str(tiny_gpt2_dir), copy=True)
    _wait(studio, job)
    m = studio.models.get(rec.id)
    assert not m.linked and m.folder.startswith(str(studio.paths.root))
    hit = {}

    def cancel_midway(job_id, kind, payload):
        if kind == "progress" and (payload.get("done") or 0) >= 120 and not hit:
            hit["x"] = 1
            studio.cancel_job(job_id)

    studio.add_job_listener(cancel_midway)
    sets, job = studio.activations.start_extraction(
        m.id, str(packed_tokenization), hook_points=["blocks.0.hook_mlp_out"], batch_size=2,
        device="cpu", shard_rows=50)
    assert studio.jobs.wait(job.id, 120).status == "cancelled"
    studio.jobs.remove_listener(cancel_midway)
    s = studio.activations.get(sets[0].id)
    assert s.status == "incomplete"
    with pytest.raises(UserError, match="incomplete"):
        studio.activations.open(s.id)
    job2 = studio.activations.resume_extraction(s.id, batch_size=3)
    _wait(studio, job2)
    s = studio.activations.get(s.id)
    assert s.status == "ready"
    reader = studio.activations.open(s.id)
    pos = reader.positions()
    assert len({tuple(p) for p in pos.tolist()}) == reader.num_rows  # no duplicate rows
    assert reader.num_rows == s.num_rows > 120


def test_bad_inputs_have_clear_messages(studio, tiny_gpt2_dir, tiny_llama_dir,
                                        packed_tokenization, tmp_path):
    with pytest.raises(UserError, match="not a Hugging Face model id"):
        studio.models.add_hub("not an id")
    with pytest.raises(UserError, match="does not exist"):
        studio.models.add_local(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    rec, job = studio.models.add_local(str(tmp_path / "empty"))
    done = studio.jobs.wait(job.id, 60)
    assert done.status == "failed" and "config.json" in done.error
    assert studio.models.repo.get(rec.id) is None  # nothing usable: no row left behind
    assert [m.id for m in studio.models.list()] == [] and (tmp_path / "empty").is_dir()
    with pytest.raises(UserError, match="No model"):
        studio.models.inspect(rec.id)
    with pytest.raises(UserError, match="No model"):
        studio.models.get("m_missing")
    # a model with a different tokenizer than the tokenization
    import shutil

    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    other = tmp_path / "other"
    shutil.copytree(tiny_llama_dir, other)
    tok = AutoTokenizer.from_pretrained(other)
    assert isinstance(tok, PreTrainedTokenizerFast)
    tok.add_tokens(["<extra_token>"])
    tok.save_pretrained(other)
    rec, job = studio.models.add_local(str(other))
    _wait(studio, job)
    with pytest.raises(UserError, match="tokeniz"):
        studio.activations.start_extraction(rec.id, str(packed_tokenization), layers=[0])
    good, job = studio.models.add_local(str(tiny_gpt2_dir))
    _wait(studio, job)
    with pytest.raises(UserError, match="do not exist"):
        studio.activations.start_extraction(good.id, str(packed_tokenization), layers=[9])
    with pytest.raises(UserError, match="not a hook point"):
        studio.activations.start_extraction(good.id, str(packed_tokenization),
                                            hook_points=["blocks.1.resid"])
    with pytest.raises(UserError, match="No tokenization"):
        studio.activations.start_extraction(good.id, "tok_missing", layers=[0])


def test_templates(studio, tiny_gpt2_dir):
    names = [t.name for t in studio.templates.list(kind="extraction")]
    assert "Residual stream, middle layer" in names
    tpl = studio.templates.save("mine", {"layers": [0, 2], "hook_types": ["mlp_out"],
                                         "store_dtype": "float16"}, kind="extraction")
    assert tpl.settings["batch_size"] == 16 and tpl.kind == "extraction"
    with pytest.raises(UserError, match="Unknown template settings"):
        studio.templates.save("bad", {"colour": "red"}, kind="extraction")
    with pytest.raises(UserError, match="(?i)built-in"):
        studio.templates.delete("Residual stream, middle layer", kind="extraction")
    rec, job = studio.models.add_local(str(tiny_gpt2_dir))
    _wait(studio, job)
    form = studio.activations.apply_template("Residual stream, middle layer", rec.id)
    assert form["layers"] == [1] and form["hook_types"] == ["resid_post"]
    assert studio.activations.apply_template("mine")["store_dtype"] == "float16"
    assert studio.templates.get("mine", kind="extraction").use_count == 1  # applied once
    studio.templates.delete("mine", kind="extraction")
    assert "mine" not in [t.name for t in studio.templates.list(kind="extraction")]
