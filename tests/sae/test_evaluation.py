"""Spliced-in evaluation (CE loss score, KL score) on tiny models, against computations
written here with plain forward hooks and transformers' own loss."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mistudio.data.tokenized import TokenizedDataset
from mistudio.errors import UserError
from tests.models.conftest import write_tokenization


@pytest.fixture(scope="session")
def tok_bos(tmp_path_factory, tiny_tokenizer_dir):
    """Packed, BOS first in each sequence (BOS is left out of the averages)."""
    return write_tokenization(tmp_path_factory.mktemp("eval_tok_bos"), tiny_tokenizer_dir,
                              seq_len=24)


@pytest.fixture(scope="session")
def tok_plain(tmp_path_factory, tiny_tokenizer_dir):
    """Packed without BOS: no special token anywhere, so every position counts."""
    return write_tokenization(tmp_path_factory.mktemp("eval_tok_plain"), tiny_tokenizer_dir,
                              seq_len=24, prepend_bos=False)


@pytest.fixture(scope="session")
def tok_padded(tmp_path_factory, tiny_tokenizer_dir):
    return write_tokenization(tmp_path_factory.mktemp("eval_tok_pad"), tiny_tokenizer_dir,
                              seq_len=24, padded=True)


def _load(folder):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(folder).eval()


def _spec(model_dir, tok_dir, hook, hook_out="", start=0):
    from mistudio.sae.evaluation import EvalSpec

    return EvalSpec(model_folder=str(model_dir), tokenization=str(tok_dir), hook_name=hook,
                    hook_name_out=hook_out, model_dtype="float32", start_seq=start)


def _evaluate(spec, reconstruct, n_tokens=10_000):
    from mistudio.sae.evaluation import evaluate_reconstruction

    metrics, _ = evaluate_reconstruction(spec, reconstruct, n_tokens, "cpu")
    return metrics


def _reference(model, tok_dir, module, *, replace_output, start=0, n_seq=None):
    """CE/KL sums the slow, obvious way: one forward per sequence, a hook written here,
    transformers' ``labels=`` loss for CE; returns the metrics (SAELens's formulas)."""
    tok = TokenizedDataset(tok_dir)
    special = {tok.meta["bos_token_id"], tok.meta["eos_token_id"], tok.meta["pad_token_id"]}
    sums = {"clean": [0.0, 0], "sae": [0.0, 0], "abl": [0.0, 0]}
    kls = {"sae": [0.0, 0], "abl": [0.0, 0]}
    stop = tok.n_seq if n_seq is None else start + n_seq
    for s in range(start, stop):
        n = int(tok.lengths[s])
        ids = torch.tensor(np.asarray(tok.tokens[s, :n]), dtype=torch.long)[None]
        keep = torch.tensor([int(t) not in special for t in ids[0]])
        labels = ids.clone()
        labels[0, 1:][~keep[:-1]] = -100  # CE at i (predicting i+1) counts when token i is kept
        n_ce = int((labels[0, 1:] != -100).sum())

        def run(hook_fn):
            h = module.register_forward_hook(hook_fn) if hook_fn else None
            try:
                with torch.no_grad():
                    out = model(input_ids=ids, labels=labels if n_ce else None)
            finally:
                if h:
                    h.remove()
            return out

        clean = run(None)
        outs = {"sae": run(lambda m, a, o: _swap(o, replace_output(a, o, keep))),
                "abl": run(lambda m, a, o: _swap(o, torch.zeros_like(_first(o))))}
        if n_ce:
            sums["clean"][0] += float(clean.loss) * n_ce
            for k, o in outs.items():
                sums[k][0] += float(o.loss) * n_ce
            for k in sums:
                sums[k][1] += n_ce
        p_log = F.log_softmax(clean.logits[0].double(), -1)
        for k, o in outs.items():
            kl = F.kl_div(F.log_softmax(o.logits[0].double(), -1), p_log, log_target=True,
                          reduction="none").sum(-1)
            kls[k][0] += float(kl[keep].sum())
            kls[k][1] += int(keep.sum())
    ce = {k: v[0] / v[1] for k, v in sums.items()}
    kl = {k: v[0] / v[1] for k, v in kls.items()}
    return {"ce_loss_without_sae": ce["clean"], "ce_loss_with_sae": ce["sae"],
            "ce_loss_with_ablation": ce["abl"], "kl_div_with_sae": kl["sae"],
            "kl_div_with_ablation": kl["abl"],
            "ce_loss_score": (ce["abl"] - ce["sae"]) / (ce["abl"] - ce["clean"]),
            "kl_div_score": (kl["abl"] - kl["sae"]) / kl["abl"], "eval_tokens": sums["clean"][1]}


def _first(o):
    return o[0] if isinstance(o, tuple) else o


def _swap(o, new):
    return (new, *o[1:]) if isinstance(o, tuple) else new


def _random_topk_sae(d, seed=0):
    from mistudio.sae.architectures import TopKSAE

    sae = TopKSAE(d, 4 * d, k=8, seed=seed)
    with torch.no_grad():
        sae.W_enc_t.mul_(3.0)
        sae.b_dec.normal_(0, 0.1)
    return sae.eval()


def _assert_metrics(got, want):
    """CE and KL equal the reference; the scores are SAELens's formulas of them (checked
    on our values: on a random tiny model the denominators are small, so a score compared
    across two computations would magnify float noise)."""
    for k in ("ce_loss_without_sae", "ce_loss_with_sae", "ce_loss_with_ablation",
              "kl_div_with_sae", "kl_div_with_ablation", "eval_tokens"):
        assert got[k] == pytest.approx(want[k], rel=2e-5, abs=1e-7), k
    ce_score = (got["ce_loss_with_ablation"] - got["ce_loss_with_sae"]) / (
        got["ce_loss_with_ablation"] - got["ce_loss_without_sae"])
    kl_score = (got["kl_div_with_ablation"] - got["kl_div_with_sae"]) / got["kl_div_with_ablation"]
    assert got["ce_loss_score"] == pytest.approx(ce_score, rel=1e-9)
    assert got["kl_div_score"] == pytest.approx(kl_score, rel=1e-9)


def test_perfect_reconstruction_scores_one_and_zero_reconstruction_scores_zero(
        tiny_gpt2_dir, tok_plain):
    spec = _spec(tiny_gpt2_dir, tok_plain, "blocks.1.hook_resid_post")
    perfect = _evaluate(spec, lambda x: x.clone())
    assert perfect["ce_loss_score"] == pytest.approx(1.0, abs=1e-6)
    assert perfect["kl_div_score"] == pytest.approx(1.0, abs=1e-6)
    assert perfect["kl_div_with_sae"] == pytest.approx(0.0, abs=1e-7)
    assert perfect["ce_loss_with_sae"] == pytest.approx(perfect["ce_loss_without_sae"], abs=1e-6)
    # no special tokens in this tokenization: a zero reconstruction *is* the zero-ablation
    zero = _evaluate(spec, torch.zeros_like)
    assert zero["ce_loss_score"] == pytest.approx(0.0, abs=1e-6)
    assert zero["kl_div_score"] == pytest.approx(0.0, abs=1e-6)
    assert abs(zero["ce_loss_with_ablation"] - zero["ce_loss_without_sae"]) > 1e-3
    tok = TokenizedDataset(tok_plain)
    assert zero["eval_tokens"] == int(tok.lengths.sum()) - tok.n_seq  # all CE positions


@pytest.mark.parametrize("which,hook,module_path", [
    ("gpt2", "blocks.1.hook_resid_post", "transformer.h.1"),
    ("llama", "blocks.0.hook_mlp_out", "model.layers.0.mlp"),
])
def test_sae_spliced_in_matches_a_hand_written_hook(which, hook, module_path, tiny_gpt2_dir,
                                                    tiny_llama_dir, tok_bos):
    folder = tiny_gpt2_dir if which == "gpt2" else tiny_llama_dir
    sae = _random_topk_sae(64)
    got = _evaluate(_spec(folder, tok_bos, hook), sae)
    model = _load(folder)
    module = model.get_submodule(module_path)

    def replace(_args, out, keep):
        x = _first(out)
        recon = sae(x[0]).to(x.dtype)[None]
        return torch.where(keep[None, :, None], recon, x)  # BOS keeps its activations

    want = _reference(model, tok_bos, module, replace_output=replace)
    _assert_metrics(got, want)
    assert want["kl_div_with_sae"] > 1e-4 and want["kl_div_with_ablation"] > 1e-4


def test_transcoder_reads_mlp_input_and_replaces_mlp_output(tiny_llama_dir, tok_padded):
    from mistudio.sae.architectures import ReluSAE

    tc = ReluSAE(64, 256, d_out=64, transcoder=True, seed=3).eval()
    with torch.no_grad():
        tc.W_enc_t.mul_(5.0)
    got = _evaluate(_spec(tiny_llama_dir, tok_padded, "blocks.1.hook_mlp_in",
                          "blocks.1.hook_mlp_out"), tc)
    model = _load(tiny_llama_dir)

    def replace(args, out, keep):
        return torch.where(keep[None, :, None], tc(args[0][0])[None].to(out.dtype), out)

    want = _reference(model, tok_padded, model.get_submodule("model.layers.1.mlp"),
                      replace_output=replace)
    _assert_metrics(got, want)


def test_token_budget_and_start_sequence(tiny_gpt2_dir, tok_bos):
    from mistudio.sae.evaluation import token_batches

    tok = TokenizedDataset(tok_bos)
    batches = list(token_batches(tok, 3, 50, 2))
    assert sum(len(b[1]) for b in batches) == 3 and batches[0][0].shape == (2, 24)
    np.testing.assert_array_equal(batches[0][0], tok.tokens[3:5])
    sae = _random_topk_sae(64, seed=1)
    got = _evaluate(_spec(tiny_gpt2_dir, tok_bos, "blocks.0.hook_resid_pre", start=3), sae, 50)
    model = _load(tiny_gpt2_dir)
    module = model.get_submodule("transformer.h.0")
    hooks = []

    def pre(_m, args, kwargs):  # resid_pre is the block's input: a pre-hook, by hand
        keep = hooks[0]
        x = args[0]
        new = torch.where(keep[None, :, None], sae(x[0])[None], x)
        return (new, *args[1:]), kwargs

    totals = {"clean": 0.0, "sae": 0.0, "n": 0}
    special = {tok.meta["bos_token_id"], tok.meta["eos_token_id"], tok.meta["pad_token_id"]}
    tok_seqs = range(3, 6)  # 50 tokens from sequence 3: three sequences of 24
    for s in tok_seqs:
        ids = torch.tensor(np.asarray(tok.tokens[s]), dtype=torch.long)[None]
        keep = torch.tensor([int(t) not in special for t in ids[0]])
        labels = ids.clone()
        labels[0, 1:][~keep[:-1]] = -100
        n = int((labels[0, 1:] != -100).sum())
        with torch.no_grad():
            totals["clean"] += float(model(input_ids=ids, labels=labels).loss) * n
            hooks[:] = [keep]
            h = module.register_forward_pre_hook(pre, with_kwargs=True)
            try:
                totals["sae"] += float(model(input_ids=ids, labels=labels).loss) * n
            finally:
                h.remove()
        totals["n"] += n
    assert got["eval_tokens"] == totals["n"]
    assert got["ce_loss_without_sae"] == pytest.approx(totals["clean"] / totals["n"], rel=1e-5)
    assert got["ce_loss_with_sae"] == pytest.approx(totals["sae"] / totals["n"], rel=1e-5)
    assert not math.isnan(got["kl_div_score"])


def test_bad_inputs_give_clear_errors(tiny_gpt2_dir, tok_bos, tmp_path):
    from mistudio.sae.evaluation import SplicedEvaluator

    with pytest.raises(UserError, match="layer 7"):
        _evaluate(_spec(tiny_gpt2_dir, tok_bos, "blocks.7.hook_resid_post"), lambda x: x)
    with pytest.raises(UserError, match="width 32"):
        _evaluate(_spec(tiny_gpt2_dir, tok_bos, "blocks.0.hook_resid_post"), lambda x: x[:, :32])
    with pytest.raises(UserError, match="no longer exists"):
        _evaluate(_spec(tmp_path / "gone", tok_bos, "blocks.0.hook_resid_post"), lambda x: x)
    other = write_tokenization(tmp_path / "other", tiny_gpt2_dir)
    meta = (other / "meta.json").read_text().replace(TokenizedDataset(other).fingerprint,
                                                      "0123456789abcdef")
    (other / "meta.json").write_text(meta)
    with pytest.raises(UserError, match="another tokenizer"):
        _evaluate(_spec(tiny_gpt2_dir, other, "blocks.0.hook_resid_post"), lambda x: x)
    assert SplicedEvaluator  # imported without Qt or a model


# ---------------------------------------------------------------------- through the app


def _wait(studio, job, timeout=120):
    rec = studio.jobs.wait(job.id, timeout)
    assert rec.status == "completed", (rec.status, rec.error, rec.traceback)
    return rec


def test_training_evaluates_at_the_end_and_every_n_steps_then_sae_evaluate(
        studio, tiny_gpt2_dir, tok_bos, capsys):
    from mistudio.activations.format import ActivationSet
    from mistudio.cli import main
    from mistudio.sae.config import TrainingConfig

    m, job = studio.models.add_local(str(tiny_gpt2_dir), name="tiny-gpt2")
    _wait(studio, job)
    sets, job = studio.activations.start_extraction(
        m.id, str(tok_bos), hook_points=["blocks.1.hook_resid_post"], max_tokens=150,
        batch_size=4, device="cpu", model_dtype="float32")
    _wait(studio, job)
    cfg = TrainingConfig(activation_id=sets[0].id, architecture="topk", k=4, d_sae=128,
                         batch_size=50, total_tokens=50 * 12, lr=3e-3, metrics_every_steps=4,
                         eval_tokens=100, eval_every_steps=6, device="cpu")
    job = studio.trainings.start_training(cfg)
    _wait(studio, job)
    tr = studio.trainings.get_training(job.target)
    rows = [r for r in studio.trainings.metrics(tr.id) if "ce_loss_score" in r]
    assert [r["step"] for r in rows] == [6, 12]  # every 6 steps, the last one at the end
    assert len(studio.jobs.metrics(job.id, "kl_div_score")) == 2
    sae_rec = studio.trainings.list_saes(tr.id)[0]
    assert sae_rec.metrics["ce_loss_score"] == rows[-1]["ce_loss_score"]
    assert sae_rec.metrics["eval_held_out"] is True

    # held out: the sequences after the last one the activation set read (5 of 24 tokens
    # for 100 tokens), compared with the slow reference on the saved (folded) SAE
    positions = ActivationSet(sets[0].folder).positions()
    start = int(positions[:, 0].max()) + 1
    sae = studio.trainings.load_sae(sae_rec.id)
    model = _load(tiny_gpt2_dir)

    def replace(_args, out, keep):
        x = _first(out)
        return torch.where(keep[None, :, None], sae(x[0])[None], x)

    want = _reference(model, tok_bos, model.get_submodule("transformer.h.1"),
                      replace_output=replace, start=start, n_seq=5)
    _assert_metrics(sae_rec.metrics, want)

    # sae.evaluate on the finished SAE: the same slice, the record gets the new numbers
    ev = studio.trainings.start_evaluation(sae_rec.id, tokens=48)
    done = _wait(studio, ev)
    assert done.result["held_out"] is True and done.result["tokens"] == 2 * 22  # BOS at 0: 22 CE positions each
    got = studio.trainings.get_sae(sae_rec.id).metrics
    want2 = _reference(model, tok_bos, model.get_submodule("transformer.h.1"),
                       replace_output=replace, start=start, n_seq=2)
    _assert_metrics(got, want2)
    assert got["l0"] == sae_rec.metrics["l0"]  # training metrics kept

    # the CLI, on the same data folder
    assert main(["--data-dir", str(studio.paths.root), "sae", "evaluate", sae_rec.id,
                 "--tokens", "48"]) == 0
    out = capsys.readouterr().out
    assert f"CE loss score {got['ce_loss_score']:.4f}" in out and "44 held-out" in out


def test_evaluation_skipped_with_reason_when_the_model_is_unknown(studio, activation_set,
                                                                  small_config):
    cfg = small_config(activation_path=str(activation_set), total_tokens=256 * 4,
                       eval_tokens=64)
    job = studio.trainings.start_training(cfg)
    _wait(studio, job)
    tr = studio.trainings.get_training(job.target)
    assert "not extracted from a model registered" in tr.result["evaluation_skipped"]
    log = open(studio.get_job(job.id).log_path, encoding="utf-8").read()
    assert "Spliced evaluation (CE loss score, KL score) skipped" in log
    sae = studio.trainings.list_saes(tr.id)[0]
    assert "ce_loss_score" not in sae.metrics
    with pytest.raises(UserError, match="registered in the app"):
        studio.trainings.start_evaluation(sae.id)


def test_imported_sae_evaluates_with_a_named_model(studio, tiny_gpt2_dir, tok_bos, tmp_path):
    from mistudio.sae.formats import save_saelens

    m, job = studio.models.add_local(str(tiny_gpt2_dir), name="tiny-gpt2")
    _wait(studio, job)
    sae = _random_topk_sae(64, seed=4)
    save_saelens(tmp_path / "pub", sae, model_name="some-hub-model",
                 hook_name="blocks.2.hook_resid_post")
    rec = studio.trainings.import_sae(str(tmp_path / "pub"))
    with pytest.raises(UserError, match="some-hub-model"):
        studio.trainings.start_evaluation(rec.id)
    with pytest.raises(UserError, match="No tokenization was made"):
        studio.trainings.start_evaluation(rec.id, model="tiny-gpt2")
    done = _wait(studio, studio.trainings.start_evaluation(rec.id, model="tiny-gpt2",
                                                           tokenization=str(tok_bos),
                                                           tokens=30))
    assert done.result["held_out"] is None
    got = studio.trainings.get_sae(rec.id).metrics
    model = _load(tiny_gpt2_dir)
    want = _reference(model, tok_bos, model.get_submodule("transformer.h.2"),
                      replace_output=lambda a, out, keep: torch.where(
                          keep[None, :, None], sae(_first(out)[0])[None], _first(out)),
                      start=0, n_seq=2)
    _assert_metrics(got, want)
