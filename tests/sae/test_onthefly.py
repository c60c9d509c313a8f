"""Training on the fly: the rows equal the model's own hidden states, an epoch is a
reproducible stream (so resume is bit-for-bit), memory stays within the shuffle buffer,
the norm pre-pass, and the whole path through the service and the job."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from mistudio.errors import JobCancelled, UserError
from mistudio.sae import checkpoints as ckpt
from mistudio.sae.config import TrainingConfig
from mistudio.sae.data import estimate_norm_scale
from mistudio.sae.onthefly import ModelActivationSource
from mistudio.sae.trainer import Trainer
from tests.sae.test_training import _CancelAt

HOOK = "blocks.1.hook_resid_post"


@pytest.fixture(scope="module")
def tokenization(tmp_path_factory, tiny_tokenizer_dir):
    """160 sequences of 32 random token ids (BOS first; some padded), the tiny tokenizer's."""
    from tests.models.conftest import write_tokenization

    folder = write_tokenization(tmp_path_factory.mktemp("otf_tok"), tiny_tokenizer_dir)
    meta = json.loads((folder / "meta.json").read_text())
    rng = np.random.default_rng(0)
    tokens = rng.integers(2, 512, size=(160, 32)).astype(np.int32)
    tokens[:, 0] = meta["bos_token_id"]
    lengths = np.full(160, 32, dtype=np.int32)
    lengths[::7] = 20  # padded rows: their tail is not trained on
    tokens[lengths < 32, 20:] = meta["pad_token_id"]
    np.save(folder / "tokens.npy", tokens)
    np.save(folder / "lengths.npy", lengths)
    meta.update(n_seq=160, n_tokens=int(lengths.sum()))
    (folder / "meta.json").write_text(json.dumps(meta))
    return folder


def _spec(model_dir, tok, **kw):
    return {"model_folder": str(model_dir), "tokenization": str(tok), "hook_name": HOOK,
            "buffer_rows": 500, "batch_sequences": 4, "model_dtype": "float32", **kw}


def _hidden_states(model_dir, tok):
    """Independent reference: HF's output_hidden_states (block 1's output is index 2) at
    every valid position (not BOS, not padding), in sequence order."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    tokens, lengths = np.load(tok / "tokens.npy"), np.load(tok / "lengths.npy")
    out = []
    with torch.no_grad():
        for i in range(0, len(tokens), 16):
            ids = torch.from_numpy(tokens[i:i + 16].astype(np.int64))
            ln = torch.from_numpy(lengths[i:i + 16])
            attn = (torch.arange(32)[None, :] < ln[:, None]).long()
            h = model(input_ids=ids, attention_mask=attn, output_hidden_states=True
                      ).hidden_states[2]
            for b in range(ids.shape[0]):
                out.append(h[b, 1:int(ln[b])])
    return torch.cat(out)


def test_rows_are_the_models_hidden_states(tiny_gpt2_dir, tokenization):
    src = ModelActivationSource(_spec(tiny_gpt2_dir, tokenization), device="cpu")
    want = _hidden_states(tiny_gpt2_dir, tokenization)
    assert src.num_rows == want.shape[0] == 160 * 31 - (160 // 7 + 1) * 12
    assert src.d_in == 64 and src.meta["hook_name"] == HOOK
    # in order (no shuffle): exactly the reference rows, the last partial batch dropped
    plain = torch.cat(list(src.epoch_batches(100, seed=0, epoch=0, shuffle=False)))
    torch.testing.assert_close(plain, want[:plain.shape[0]], rtol=1e-4, atol=1e-5)
    # shuffled: the same rows in another order
    mixed = torch.cat(list(src.epoch_batches(100, seed=3, epoch=0, shuffle=True)))
    assert not torch.allclose(mixed, plain)
    key = lambda t: t[:, 0] * 1e3 + t[:, 1]  # noqa: E731
    got = mixed[torch.argsort(key(mixed))]
    ref = want[torch.argsort(key(want))]
    matched = (torch.cdist(got, ref).min(dim=1).values < 1e-3).float().mean()
    assert matched == 1.0
    # memory: never more than two fills at once, far from the whole epoch
    biggest = max(r for _, r in src.epoch_plan(seed=3, epoch=0, shuffle=True))
    assert src.max_buffered_rows <= 2 * biggest < src.num_rows / 2
    # an epoch's batches restarted at batch 17 are the same tensors
    again = list(src.epoch_batches(100, seed=3, epoch=0, start_batch=17))
    torch.testing.assert_close(torch.cat(again), mixed[1700:], rtol=0, atol=0)


def test_norm_pre_pass_matches_the_full_data(tiny_gpt2_dir, tokenization):
    src = ModelActivationSource(_spec(tiny_gpt2_dir, tokenization), device="cpu")
    before = src.forward_rows
    s_in, s_out = estimate_norm_scale(src, 1000, seed=0)
    want = _hidden_states(tiny_gpt2_dir, tokenization)
    full = (64 ** 0.5) / want.norm(dim=1).mean().item()
    assert s_in == s_out and abs(s_in / full - 1) < 0.05
    assert src.forward_rows == before  # the pre-pass is not counted as a fill


def test_training_on_the_fly_resumes_bit_for_bit(tiny_gpt2_dir, tokenization, tmp_path):
    cfg = TrainingConfig(onthefly_model="m", hook_name=HOOK, architecture="topk", k=4,
                         d_sae=128, batch_size=128, total_tokens=128 * 50, lr=3e-3,
                         metrics_every_steps=5, normalization_tokens=1000, eval_tokens=0)
    spec = _spec(tiny_gpt2_dir, tokenization)
    ref = Trainer(cfg, ModelActivationSource(spec), tmp_path / "ref")
    ref.run()  # 50 steps: more than one epoch (37 batches) and many fills
    box = []
    src = ModelActivationSource(spec)
    tr = Trainer(cfg, src, tmp_path / "cut", ctx=_CancelAt(box, 23, tmp_path / "cut"))
    box.append(tr)
    with pytest.raises(JobCancelled):
        tr.run()
    last = ckpt.find_checkpoint(tmp_path / "cut")
    assert last.step == 23
    src2 = ModelActivationSource(spec)
    resumed = Trainer(cfg, src2, tmp_path / "cut", resume_from=last.path)
    resumed.run()
    for (name, p), q in zip(ref.members[0].sae.state_dict().items(),
                            resumed.members[0].sae.state_dict().values()):
        assert torch.equal(p, q), f"{name} differs after resume"
    # the resume recomputed the fill holding batch 23, not the epoch up to it: what it
    # computed is the rows it trained on, plus at most that fill's start, the one fill
    # the producer works ahead and the epoch's last partial batch (a replay would add 23
    # batches)
    biggest = max(r for _, r in src2.epoch_plan(seed=0, epoch=0, shuffle=True))
    assert src2.forward_rows <= 27 * 128 + 2 * biggest + 128 < 27 * 128 + 23 * 128


def test_service_and_job_train_on_the_fly(studio, tiny_gpt2_dir, tokenization):
    m, job = studio.models.add_local(str(tiny_gpt2_dir), name="tiny-gpt2")
    assert studio.jobs.wait(job.id, 120).status == "completed"
    cfg = TrainingConfig(onthefly_model=m.id, onthefly_tokenization=str(tokenization),
                         hook_name=HOOK, architecture="matryoshka_batchtopk", k=4, d_sae=128,
                         matryoshka_widths=[16, 64], batch_size=128, total_tokens=128 * 12,
                         metrics_every_steps=4, normalization_tokens=500, eval_tokens=256,
                         shuffle_buffer_tokens=600)
    job = studio.trainings.start_training(cfg)
    done = studio.jobs.wait(job.id, 300)
    assert done.status == "completed", (done.error, done.traceback)
    sae = studio.trainings.list_saes(job.target)[0]
    assert (sae.model_name, sae.hook_name, sae.d_in) == ("tiny-gpt2", HOOK, 64)
    assert "ce_loss_score" in sae.metrics and sae.metrics["eval_held_out"] is False
    assert not any((studio.paths.root / "activations").glob("*"))  # nothing was extracted
    with pytest.raises(UserError, match="hook point to read"):
        studio.trainings.start_training(cfg.with_changes(hook_name=""))
    shutil.rmtree(studio.trainings.get_training(job.target).folder, ignore_errors=True)
