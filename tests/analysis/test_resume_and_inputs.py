"""Checkpoints and resume, cancel, bad inputs, other SAE kinds and hook points."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mistudio.errors import JobCancelled, UserError
from mistudio.jobs.context import JobContext
from tests.analysis.conftest import make_analysis, random_sae, save_sae

ARRAYS = ("firing_count", "max_act", "act_hist", "top_seq", "top_pos", "top_value",
          "top_window", "interval_seq", "interval_pos", "quantile_seq", "quantile_bounds",
          "corr_ids", "corr_values", "cos_ids", "random_seq", "random_codes_features")


class _Crash(Exception):
    pass


def test_kill_after_first_checkpoint_resumes_above_zero_with_the_same_result(
        small_analysis, gpt2_dir, analysis_tokens, tmp_path):
    folder, _sae, opts = small_analysis
    sae_dir = folder.parent / "sae"
    target = tmp_path / "fa"
    events = []

    class CrashAtCheckpoint(JobContext):
        def checkpoint(self, **info):
            super().checkpoint(**info)
            raise _Crash()  # as if the process died right after the checkpoint landed

    with pytest.raises(_Crash):
        make_analysis(target, sae_dir, gpt2_dir, analysis_tokens,
                      ctx=CrashAtCheckpoint("j1", artifact_dir=tmp_path / "j"), **opts)
    saved = json.loads((target / "work" / "checkpoint.json").read_text())
    assert 0 < saved["rows"] and not saved["done"]

    # second run: resumes the stream, then is cancelled inside the per-feature pass
    class CancelAtSecondBlock(JobContext):
        # sees every progress call (the sink's events are throttled in time)
        def progress(self, done, total=None, message=None):
            super().progress(done, total, message)
            if "features 40-" in (message or ""):
                self.request_cancel()

    ctx2 = CancelAtSecondBlock("j2", sink=lambda _job, kind, payload: events.append((kind, payload)))
    with pytest.raises(JobCancelled):
        make_analysis(target, sae_dir, gpt2_dir, analysis_tokens, ctx=ctx2, **opts)
    logs = [p["message"] for k, p in events if k == "log"]
    assert any(f"Resuming the streaming pass at token {saved['rows']:,}" in m for m in logs)
    assert json.loads((target / "work" / "blocks.json").read_text()) == [0]
    assert not (target / "COMPLETE").exists()

    make_analysis(target, sae_dir, gpt2_dir, analysis_tokens, **opts)
    assert (target / "COMPLETE").exists() and not (target / "work").exists()
    for name in ARRAYS:
        np.testing.assert_array_equal(np.load(target / f"{name}.npy"),
                                      np.load(folder / f"{name}.npy"), err_msg=name)


def test_mismatched_tokenizer_and_width_fail_cleanly_and_write_nothing(
        gpt2_dir, analysis_tokens, tmp_path, tiny_tokenizer_dir):
    import shutil

    from tests.models.conftest import write_tokenization

    sae_dir = save_sae(tmp_path / "sae", random_sae())
    # a tokenization whose tokenizer differs (one more special token)
    from transformers import AutoTokenizer

    other = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
    other.add_special_tokens({"additional_special_tokens": ["<extra>"]})
    other.save_pretrained(tmp_path / "other_tok")
    other_tok = write_tokenization(tmp_path / "tok_other", tmp_path / "other_tok")
    with pytest.raises(UserError, match="tokenizer") as err:
        make_analysis(tmp_path / "fa1", sae_dir, gpt2_dir, other_tok)
    assert "other_tok" in str(err.value) or "tok_other" in str(err.value)
    narrow = save_sae(tmp_path / "narrow", random_sae(d_in=32))
    with pytest.raises(UserError, match="width 32.*width 64"):
        make_analysis(tmp_path / "fa2", narrow, gpt2_dir, analysis_tokens)
    with pytest.raises(UserError, match="layer 7"):
        make_analysis(tmp_path / "fa3", sae_dir, gpt2_dir, analysis_tokens,
                      hook_name="blocks.7.hook_resid_post")
    for name in ("fa1", "fa2", "fa3"):
        assert not (tmp_path / name).exists()
    shutil.rmtree(tmp_path / "tok_other")


@pytest.mark.parametrize("architecture", ["relu", "jumprelu", "batchtopk"])
def test_other_architectures_match_their_dense_encode(architecture, gpt2_dir, analysis_tokens,
                                                      tmp_path):
    from mistudio.analysis.results import AnalysisResults
    from tests.analysis.conftest import dense_codes

    sae = random_sae(d_sae=48, architecture=architecture)
    if architecture == "batchtopk":
        import torch

        with torch.no_grad():
            sae.threshold.fill_(0.5)
    folder = make_analysis(tmp_path / "fa", save_sae(tmp_path / "sae", sae), gpt2_dir,
                           analysis_tokens, n_top=5, n_random=5)
    res = AnalysisResults(folder)
    from mistudio.sae.formats import load_sae

    loaded, _ = load_sae(tmp_path / "sae")
    acts, keys, _ = dense_codes(loaded, gpt2_dir, analysis_tokens, "blocks.1.hook_resid_post",
                                [0, 1])
    np.testing.assert_array_equal(res.columns["firing_count"], (acts > 0).sum(0))
    np.testing.assert_allclose(res.columns["max_act"], acts.max(0), rtol=1e-5, atol=1e-6)
    assert res.meta["architecture"] == architecture


def test_mlp_post_hook_neuron_alignment_and_logit_lens_through_the_mlp(
        gpt2_dir, analysis_tokens, tmp_path):
    from transformers import AutoModelForCausalLM

    from mistudio.analysis.results import AnalysisResults

    d_mlp = 256  # GPT-2: 4 x d_model
    sae = random_sae(d_in=d_mlp, d_sae=32, k=4)
    folder = make_analysis(tmp_path / "fa", save_sae(tmp_path / "sae", sae, "blocks.1.mlp.hook_post"),
                           gpt2_dir, analysis_tokens, hook_name="blocks.1.mlp.hook_post",
                           n_top=5, n_random=5)
    res = AnalysisResults(folder)
    assert res.meta["hook_type"] == "mlp_post" and res.n_tokens > 0
    w = sae.W_dec.detach().double().numpy()
    for f in range(res.d_sae):
        got = res.neurons(f)
        want = np.argsort(-np.abs(w[f]))[:5]
        assert [n for n, _, _ in got] == want.tolist()
        np.testing.assert_allclose([p for _, _, p in got],
                                   100 * np.abs(w[f, want]) / np.abs(w[f]).sum(), rtol=1e-4)
    model = AutoModelForCausalLM.from_pretrained(gpt2_dir)
    w_out = model.transformer.h[1].mlp.c_proj.weight.detach().double().numpy()  # [d_mlp, d]
    logits = w @ w_out @ model.lm_head.weight.detach().double().numpy().T
    for f in range(res.d_sae):
        np.testing.assert_allclose([v for _, _, v in res.logit_lens(f, "raw").top],
                                   np.sort(logits[f])[::-1][:10], rtol=1e-4, atol=1e-6)


def test_an_activation_set_replaces_the_forward_pass(small_analysis, gpt2_dir, analysis_tokens,
                                                     tmp_path):
    from mistudio.activations.extract import run as extract

    folder, _sae, opts = small_analysis
    out = tmp_path / "acts"
    extract({"model_folder": str(gpt2_dir), "tokenization": str(analysis_tokens),
             "hook_points": ["blocks.1.hook_resid_post"], "model_dtype": "float32",
             "device": "cpu", "outputs": {"blocks.1.hook_resid_post": {"folder": str(out)}},
             "skip_bos": False, "batch_size": 4}, JobContext.standalone(tmp_path / "j"))
    again = make_analysis(tmp_path / "fa", folder.parent / "sae", gpt2_dir, analysis_tokens,
                          activation_path=str(out), **opts)
    for name in ("firing_count", "top_seq", "top_pos", "interval_seq", "corr_ids"):
        np.testing.assert_array_equal(np.load(again / f"{name}.npy"),
                                      np.load(folder / f"{name}.npy"), err_msg=name)
    np.testing.assert_allclose(np.load(again / "max_act.npy"), np.load(folder / "max_act.npy"),
                               rtol=1e-5)


def test_transcoder_reads_mlp_input_and_its_splice_reproduces_the_model(gpt2_dir,
                                                                        analysis_tokens, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    from mistudio.analysis.prompt import PromptAnalyzer
    from mistudio.analysis.results import AnalysisResults
    from mistudio.sae.formats import save_saelens

    sae = random_sae(d_in=64, d_sae=40, d_out=64, k=4)
    save_saelens(tmp_path / "tc", sae, hook_name="blocks.1.hook_mlp_in",
                 hook_name_out="blocks.1.hook_mlp_out")
    folder = make_analysis(tmp_path / "fa", tmp_path / "tc", gpt2_dir, analysis_tokens,
                           hook_name="blocks.1.hook_mlp_in", n_top=5, n_random=5)
    res = AnalysisResults(folder)
    model = AutoModelForCausalLM.from_pretrained(gpt2_dir).eval()
    tokens = torch.from_numpy(np.load(analysis_tokens / "tokens.npy").astype(np.int64))
    seen = {}
    h = model.transformer.h[1].ln_2.register_forward_hook(lambda m, a, o: seen.update(x=o))
    with torch.no_grad():
        logits = model(tokens[:1]).logits[0]
        model(tokens)
    h.remove()
    x = seen["x"].reshape(-1, 64)[(tokens.reshape(-1) != 0)]
    acts = sae.encode(x).detach().numpy()
    np.testing.assert_array_equal(res.columns["firing_count"], (acts > 0).sum(0))
    spliced, act = PromptAnalyzer().splice_logits(
        str(tmp_path / "tc"), str(gpt2_dir), "blocks.1.hook_mlp_in", tokens[0].tolist(),
        hook_name_out="blocks.1.hook_mlp_out", ablate=None)
    torch.testing.assert_close(spliced, logits, atol=1e-4, rtol=1e-4)
