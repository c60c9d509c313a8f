"""Extract-then-train chains and checkpoint export, through the services (no Qt)."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from mistudio.app.workflows import (CANCELLED, EXTRACTING, FAILED, STARTED, ChainsRepo,
                                    ExtractThenTrain, TrainingWorkflows, workflows_of)
from mistudio.errors import UserError
from tests.e2e.conftest import (JobStartGate, assert_same_reconstruction,
                                explained_variance, topk_reconstruct)

TRAIN = {"architecture": "topk", "expansion_factor": 2, "k": 8, "batch_size": 128,
         "total_tokens": 128 * 30, "normalization_tokens": 1024, "metrics_every_steps": 5,
         "device": "cpu", "eval_tokens": 0, "checkpoint_every_seconds": 0}
HOOK = "blocks.1.hook_resid_post"


def _chain(studio, chain_id) -> ExtractThenTrain:
    return workflows_of(studio).get(chain_id)


def test_chain_extracts_then_trains(studio, assets):
    flows = workflows_of(studio)
    assert workflows_of(studio) is flows  # one per studio
    chain = flows.start_extract_then_train(assets.model_id, assets.tokenization_id, HOOK,
                                           config=TRAIN, max_tokens=3000, device="cpu")
    assert chain.status == EXTRACTING and chain.open
    ext = studio.jobs.wait(chain.extraction_job_id, 120)
    assert ext.status == "completed"
    chain = _chain(studio, chain.id)
    assert chain.status == STARTED and not chain.open, chain.error
    job = studio.jobs.wait(chain.training_job_id, 120)
    assert job.status == "completed", job.error
    tr = studio.trainings.get_training(chain.training_id)
    # the training runs on exactly the set the chain extracted, with the chain's settings
    assert tr.config["activation_id"] == chain.activation_set_id
    assert tr.config["k"] == 8 and tr.name == chain.title
    aset = studio.activations.get(chain.activation_set_id)
    assert aset.status == "ready" and aset.hook_name == HOOK and aset.d_in == 64
    assert aset.num_rows <= 3000
    saes = studio.trainings.list_saes(chain.training_id)
    assert len(saes) == 1 and saes[0].hook_name == HOOK
    assert flows.list(open_only=True) == []


def test_plan_refuses_bad_settings_before_extracting(studio, assets):
    flows = workflows_of(studio)
    with pytest.raises(UserError, match="k"):  # k larger than the SAE's width
        flows.start_extract_then_train(assets.model_id, assets.tokenization_id, HOOK,
                                       config={**TRAIN, "k": 1000, "expansion_factor": 1})
    with pytest.raises(UserError, match="fewer than one batch"):
        flows.start_extract_then_train(assets.model_id, assets.tokenization_id, HOOK,
                                       config={**TRAIN, "batch_size": 1024, "total_tokens": 10_000},
                                       max_tokens=1000)
    with pytest.raises(UserError):  # no such hook point on a 3-layer model
        flows.start_extract_then_train(assets.model_id, assets.tokenization_id,
                                       "blocks.7.hook_resid_post", config=TRAIN)
    assert studio.list_jobs(kind="activations.extract") == []
    assert flows.list() == []


def test_cancelled_extraction_cancels_the_chain_and_resume_finishes_it(studio, assets):
    flows = workflows_of(studio)
    with JobStartGate(studio, "activations.extract") as gate:  # cannot finish first
        chain = flows.start_extract_then_train(assets.model_id, assets.tokenization_id, HOOK,
                                               config=TRAIN, max_tokens=3000, device="cpu")
        assert gate.held.wait(30)
        assert flows.cancel(chain.id)
    assert studio.jobs.wait(chain.extraction_job_id, 60).status == "cancelled"
    chain = _chain(studio, chain.id)
    assert chain.status == CANCELLED and chain.can_resume
    assert "cancelled" in chain.error.lower()
    assert studio.list_jobs(kind="sae.train") == []  # the training never started
    chain = flows.resume(chain.id)
    assert chain.status == EXTRACTING
    assert studio.jobs.wait(chain.extraction_job_id, 120).status == "completed"
    chain = _chain(studio, chain.id)
    assert chain.status == STARTED, chain.error
    assert studio.jobs.wait(chain.training_job_id, 120).status == "completed"


def test_cancel_as_the_extraction_completes_starts_no_training(studio, assets):
    """Cancel clicked after the extraction's last cancel check (it completes anyway), or
    after it ended but before the chain heard of it: the user asked for no training, so
    none starts; the chain says the activations are kept and Resume starts the training."""
    flows = workflows_of(studio)
    chain_known, outcome = threading.Event(), {}

    def cancel_after_the_last_batch(job_id, kind, payload):
        # "Writing statistics...": every batch is done, the job checks for no cancel again
        if kind == "progress" and payload.get("message") == "Writing statistics...":
            assert chain_known.wait(60)
            outcome["cancel"] = flows.cancel(outcome["chain"].id)

    studio.add_job_listener(cancel_after_the_last_batch)
    outcome["chain"] = chain = flows.start_extract_then_train(
        assets.model_id, assets.tokenization_id, HOOK, config=TRAIN, max_tokens=3000,
        device="cpu")
    chain_known.set()
    ext = studio.jobs.wait(chain.extraction_job_id, 120)
    studio.jobs.remove_listener(cancel_after_the_last_batch)
    assert ext.status == "completed" and outcome["cancel"] is True
    assert ext.message == "Done."  # not a "Cancelling..." that nothing clears
    chain = _chain(studio, chain.id)
    assert chain.status == CANCELLED and chain.can_resume, chain.error
    assert "activations are kept" in chain.error and "Resume starts it" in chain.error
    assert studio.list_jobs(kind="sae.train") == []
    assert studio.activations.get(chain.activation_set_id).status == "ready"

    # the extraction ended unheard (no listener settled its chain yet): Cancel settles it
    ChainsRepo(studio.store).save(ExtractThenTrain(
        id="wf_unheard", title="unheard", status=EXTRACTING, model_id=assets.model_id,
        model_name="tiny-gpt2", tokenization=assets.tokenization_id, hook_name=HOOK,
        config=TRAIN, activation_set_id=chain.activation_set_id,
        extraction_job_id=chain.extraction_job_id, created_at="2024-01-01T00:00:00"))
    assert flows.cancel("wf_unheard")
    assert _chain(studio, "wf_unheard").status == CANCELLED  # not "extracting" for ever
    assert studio.list_jobs(kind="sae.train") == []

    chain = flows.resume(chain.id)  # the activations are complete: the training starts
    assert chain.status == STARTED, chain.error
    assert studio.jobs.wait(chain.training_job_id, 120).status == "completed"
    assert studio.trainings.get_training(chain.training_id).config["activation_id"] == \
        chain.activation_set_id


def test_failed_extraction_says_so(studio, assets):
    flows = workflows_of(studio)
    tok_folder = Path(studio.datasets.get_tokenization(assets.tokenization_id).path)
    blocker = studio.submit_job("demo.busy", {"seconds": 60})  # holds the GPU-job slot
    chain = flows.start_extract_then_train(assets.model_id, assets.tokenization_id, HOOK,
                                           config=TRAIN, device="cpu")
    assert studio.get_job(chain.extraction_job_id).status == "queued"
    shutil.rmtree(tok_folder)  # the tokens vanish under the queued extraction
    studio.cancel_job(blocker.id)
    assert studio.jobs.wait(chain.extraction_job_id, 120).status == "failed"
    chain = _chain(studio, chain.id)
    assert chain.status == FAILED and chain.error.startswith("Extraction failed:")
    assert studio.list_jobs(kind="sae.train") == []


def test_training_that_cannot_start_on_the_extracted_set_says_so(studio, assets):
    # The plan allows up to n_tokens rows; skipping BOS leaves fewer than one batch.
    flows = workflows_of(studio)
    chain = flows.start_extract_then_train(
        assets.model_id, assets.tokenization_id, HOOK, max_tokens=0, device="cpu",
        config={**TRAIN, "batch_size": assets.n_tokens - 1})
    assert studio.jobs.wait(chain.extraction_job_id, 120).status == "completed"
    chain = _chain(studio, chain.id)
    assert chain.status == FAILED
    assert chain.error.startswith("The activations were extracted, but the training could "
                                  "not start"), chain.error
    assert "fewer than one batch" in chain.error
    assert studio.activations.get(chain.activation_set_id).status == "ready"  # kept
    flows.delete(chain.id)
    assert flows.list() == [] and studio.activations.get(chain.activation_set_id)


def test_chain_settles_when_its_extraction_ended_without_a_listener(studio, assets):
    # As after a crash between the extraction's end and the training's start.
    sets, job = studio.activations.start_extraction(
        assets.model_id, assets.tokenization_id, hook_points=[HOOK], max_tokens=2000,
        device="cpu")
    assert studio.jobs.wait(job.id, 120).status == "completed"
    flows_repo = TrainingWorkflows.__new__(TrainingWorkflows)  # only its store access
    from mistudio.app.workflows import ChainsRepo

    ChainsRepo(studio.store).save(ExtractThenTrain(
        id="wf_crash", title="after a crash", status=EXTRACTING, model_id=assets.model_id,
        model_name="tiny-gpt2", tokenization=assets.tokenization_id, hook_name=HOOK,
        config=TRAIN, activation_set_id=sets[0].id, extraction_job_id=job.id,
        created_at="2024-01-01T00:00:00"))
    del flows_repo
    chain = workflows_of(studio).get("wf_crash")  # the service settles it when it starts
    assert chain.status == STARTED, chain.error
    assert studio.jobs.wait(chain.training_job_id, 120).status == "completed"


def test_export_intermediate_checkpoint_as_saelens(studio, tmp_path):
    from mistudio.activations.format import write_activation_set
    from mistudio.sae.formats import load_sae

    rng = np.random.default_rng(1)
    dirs = rng.normal(size=(48, 16)).astype(np.float32)
    acts = ((rng.random((6000, 48)) < 0.06) * rng.exponential(1.0, (6000, 48))).astype(
        np.float32) @ dirs * 3.0  # not unit scale: the folded normalisation matters
    folder = tmp_path / "acts"
    write_activation_set(folder, acts, {"model_name": "synthetic", "hook_point": "blocks.0.x",
                                        "seq_len": 100})
    cfg = {**TRAIN, "k": 6, "expansion_factor": 4, "total_tokens": 128 * 60,
           "checkpoint_every_tokens": 128 * 20, "keep_checkpoints": 5,
           "normalize_activations": "expected_average_only_in"}
    job = studio.trainings.start_training({**cfg, "activation_path": str(folder)})
    assert studio.jobs.wait(job.id, 120).status == "completed"
    ckpts = studio.trainings.list_checkpoints(job.target)
    assert [c.step for c in ckpts] == [20, 40, 60]
    mid = ckpts[0]
    dest = tmp_path / "export"
    exp = studio.workflows.start_checkpoint_export(job.target, mid.path, dest)
    rec = studio.jobs.wait(exp.id, 60)
    assert rec.status == "completed", rec.error
    assert rec.result["step"] == 20 and Path(rec.result["saes"][0]["path"]) == dest
    sae, info = load_sae(dest)
    assert info["hook_name"] == "blocks.0.x" and info["model_name"] == "synthetic"
    x = acts[:2000]
    ours = assert_same_reconstruction(dest, sae, x)
    ev_mid = explained_variance(x, ours)
    ev_final = explained_variance(x, topk_reconstruct(
        Path(studio.trainings.list_saes(job.target)[0].folder), x))
    # an intermediate SAE, in raw units: it reconstructs, less well than the final one
    recorded = mid.metrics["sae"]["explained_variance"]
    assert abs(ev_mid - recorded) < 0.15, (ev_mid, recorded)
    assert 0.0 < ev_mid < ev_final, (ev_mid, ev_final)
    # a second export into the same place refuses instead of overwriting
    again = studio.jobs.wait(studio.workflows.start_checkpoint_export(job.target, mid.path, dest).id, 60)
    assert again.status == "failed" and "already exists" in again.error
    with pytest.raises(UserError, match="not a checkpoint of this training"):
        studio.workflows.start_checkpoint_export(job.target, str(tmp_path), dest)


def test_chains_saved_in_the_old_key_value_table_move_to_their_own(tmp_path):
    import json as _json

    from mistudio.store import migrations
    from mistudio.store.db import Store, sqlite_utils

    path = tmp_path / "old.db"
    db = sqlite_utils.Database(path)
    migrations._load_all()
    for version in sorted(v for v in migrations._MIGRATIONS if v < 62):
        with db.conn:
            migrations._MIGRATIONS[version][1](db)
            db.execute(f"PRAGMA user_version={version}")
    chain = {"id": "wf_old", "title": "old", "status": FAILED, "model_id": "m_1",
             "model_name": "tiny", "tokenization": "tok_1", "hook_point": HOOK,
             "created_at": "2024-01-01T00:00:00"}
    db["template_state"].insert({"key": "workflow:wf_old", "value": _json.dumps(chain),
                                 "updated_at": "2024-01-01T00:00:00"})
    db["template_state"].insert({"key": "last_used_training_settings", "value": "{}",
                                 "updated_at": "2024-01-01T00:00:00"})
    db.conn.close()
    store = Store(path)
    try:
        from mistudio.app.workflows import ChainsRepo

        (moved,) = ChainsRepo(store).list()
        assert (moved.id, moved.hook_name, moved.status) == ("wf_old", HOOK, FAILED)
        keys = [r["key"] for r in store.db["template_state"].rows]
        assert keys == ["last_used_training_settings"]
    finally:
        store.close()
