"""TrainingService through the real job queue, and the CLI commands."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mistudio.errors import UserError


def _cfg(small_config, activation_set, **kw):
    kw.setdefault("total_tokens", 256 * 40)
    return small_config(activation_path=str(activation_set), **kw)


def test_start_list_checkpoints_export_delete(studio, small_config, activation_set, tmp_path):
    svc = studio.trainings
    job = svc.start_training(_cfg(small_config, activation_set, sweep={"k": [2, 4]},
                                  checkpoint_every_tokens=256 * 15))
    final = studio.jobs.wait(job.id, 90)
    assert final.status == "completed", final.error
    tr = svc.get_training(job.target)
    assert tr.status == "completed" and tr.tokens == 256 * 40 and tr.num_saes == 2
    assert [c.step for c in svc.list_checkpoints(tr.id)] == [15, 30, 40]
    saes = svc.list_saes(tr.id)
    assert sorted(s.member for s in saes) == ["k2", "k4"]
    assert all(s.hook_name == "blocks.0.hook_resid_post" for s in saes)
    # metrics: jsonl rows per report, and batched into SQLite by the queue
    rows = svc.metrics(tr.id)
    assert [r["step"] for r in rows] == [10, 20, 30, 40] and "k2/l0" in rows[-1]
    assert len(studio.jobs.metrics(job.id, "k4/explained_variance")) == 4
    # the SAE loads and reconstructs raw activations (normalisation folded in)
    from mistudio.activations.format import ActivationSet

    x = torch.from_numpy(ActivationSet(activation_set).rows(0, 512).copy())
    sae = svc.load_sae(next(s.id for s in saes if s.member == "k4"))
    with torch.no_grad():
        ev = 1 - ((sae(x) - x) ** 2).sum(1).mean() / ((x - x.mean(0)) ** 2).sum(1).mean()
        assert (sae.encode(x) > 0).sum(1).float().mean() <= 4
    assert float(ev) > 0.3
    dest = svc.export_saelens(tr.id, "k2", tmp_path / "export")
    assert (dest / "cfg.json").exists() and (dest / "sae_weights.safetensors").exists()
    # import it back as a separate SAE, then delete everything
    imported = svc.import_sae(str(dest), name="mine")
    assert imported.source == "imported" and imported.d_sae == 96
    svc.delete_training(tr.id)
    assert not Path(tr.folder).exists() and svc.list_saes(tr.id) == []
    assert studio.jobs.find(job.id) is None
    svc.delete_sae(imported.id)
    assert svc.list_saes() == [] and (dest / "cfg.json").exists()  # exports are the user's


def test_cancel_then_resume_through_the_queue(studio, small_config, activation_set):
    svc = studio.trainings
    job = svc.start_training(_cfg(small_config, activation_set, total_tokens=256 * 4000))
    for _ in range(400):  # wait until it has trained a little
        if studio.jobs.find(job.id).progress >= 10:
            break
        studio.jobs.wait(job.id, 0.05)
    assert svc.pause_training(job.target)
    assert svc.unpause_training(job.target)
    assert svc.cancel_training(job.target)
    final = studio.jobs.wait(job.id, 60)
    assert final.status == "cancelled"
    tr = svc.get_training(job.target)
    assert tr.status == "cancelled"
    stopped_at = svc.list_checkpoints(tr.id)[-1].step
    assert stopped_at >= 10
    job2 = svc.resume_training(tr.id, total_tokens=256 * (stopped_at + 20))
    final = studio.jobs.wait(job2.id, 60)
    assert final.status == "completed", final.error
    tr = svc.get_training(tr.id)
    assert tr.status == "completed" and tr.step == stopped_at + 20 and tr.job_id == job2.id
    assert len(svc.list_saes(tr.id)) == 1


def test_bad_configs_are_refused_before_queueing(studio, small_config, activation_set):
    svc = studio.trainings
    with pytest.raises(UserError, match="larger than the SAE width"):
        svc.start_training(_cfg(small_config, activation_set, k=1000))
    with pytest.raises(UserError, match="width d_in = 64"):
        svc.start_training(_cfg(small_config, activation_set, d_in=64))
    with pytest.raises(UserError, match="incomplete .* or missing"):
        svc.start_training(_cfg(small_config, activation_set).with_changes(
            activation_path=str(activation_set.parent / "nope")))
    with pytest.raises(UserError, match="No activation set"):
        svc.start_training(small_config(activation_path=""))
    assert svc.list_trainings() == [] and studio.list_jobs() == []


def _mistudio(*args, data_dir, env=None, timeout=100):
    env = {**os.environ, "MISTUDIO_DATA_DIR": str(data_dir), "OMP_NUM_THREADS": "1",
           **(env or {})}
    return subprocess.run([sys.executable, "-m", "mistudio", *args], capture_output=True,
                          text=True, timeout=timeout, env=env)


def test_cli_train_list_show_export(tmp_path, small_config, activation_set):
    cfg = _cfg(small_config, activation_set)
    (tmp_path / "cfg.json").write_text(json.dumps(cfg.to_dict()))
    data = tmp_path / "data"
    run = _mistudio("train", "--config", str(tmp_path / "cfg.json"), "--set", "k=3",
                    "--quiet", data_dir=data)
    assert run.returncode == 0, run.stderr
    sae_id = run.stdout.split()[0]
    listed = _mistudio("sae", "list", "--json", data_dir=data)
    rows = json.loads(listed.stdout)
    assert rows[0]["id"] == sae_id and rows[0]["k"] == 3
    # recorded like a run started in the app: training, job, metrics in SQLite
    from mistudio.secrets_test_support import MemorySecrets
    from mistudio.studio import Studio

    s = Studio(data, secrets=MemorySecrets())
    try:
        (tr,) = s.trainings.list_trainings()
        assert tr.status == "completed" and tr.step == 40 and tr.job_id
        job = s.jobs.find(tr.job_id)
        assert job.status == "completed" and job.progress == job.total == 40
        stored = s.jobs.metrics(job.id, "loss")
        assert [m["step"] for m in stored] == [10, 20, 30, 40]
        assert [m["value"] for m in stored] == pytest.approx(
            [r["loss"] for r in s.trainings.metrics(tr.id)])
    finally:
        s.close(timeout=10)
    exp = _mistudio("sae", "export", sae_id, str(tmp_path / "out"), data_dir=data)
    assert exp.returncode == 0 and (tmp_path / "out" / "cfg.json").exists()
    bad = _mistudio("train", "--config", str(tmp_path / "cfg.json"), "--set", "k=999",
                    data_dir=data)
    assert bad.returncode == 2 and "larger than the SAE width" in bad.stderr


def test_cli_train_by_activation_id_without_a_config_file(tmp_path, activation_set):
    """`mistudio train --activations act_...` with engine defaults plus --set overrides."""
    import shutil

    from mistudio.activations.repository import ActivationSetRecord, ActivationSetsRepo
    from mistudio.secrets_test_support import MemorySecrets
    from mistudio.studio import Studio

    data = tmp_path / "data"
    folder = data / "activations" / "act_cli12345"
    shutil.copytree(activation_set, folder)
    s = Studio(data, secrets=MemorySecrets())  # register it as an extraction would
    ActivationSetsRepo(s.store).insert_all([ActivationSetRecord(
        id="act_cli12345", hook_name="blocks.0.hook_resid_post", status="ready",
        name="synthetic", folder=str(folder))])
    s.close()
    run = _mistudio("train", "--activations", "act_cli12345", "--set", "architecture=topk",
                    "--set", "k=4", "--set", "d_sae=64", "--set", "batch_size=256",
                    "--set", "total_tokens=2560", "--set", "eval_tokens=0", "--quiet",
                    data_dir=data)
    assert run.returncode == 0, run.stderr
    sae_id = run.stdout.split()[0]
    rows = json.loads(_mistudio("sae", "list", "--json", data_dir=data).stdout)
    assert rows[0]["id"] == sae_id and rows[0]["k"] == 4 and rows[0]["d_sae"] == 64
    missing = _mistudio("train", "--activations", "act_nope", "--quiet", data_dir=data)
    assert missing.returncode == 2 and "act_nope" in missing.stderr
