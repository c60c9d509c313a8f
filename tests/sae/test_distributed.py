"""``mistudio train`` under a real ``torchrun`` with two CPU processes (gloo).

- N processes on B/N tokens each train the SAE one process trains on B tokens: weights and
  the logged metrics (which are the global batch's, not rank 0's slice) agree; BatchTopK
  selects over the global batch; TopK's AuxK sees the global dead-latent counters.
- Rank 0 records the run like a normal one (training, job, SQLite metrics, SAE); a killed
  torchrun leaves the job 'interrupted'; Ctrl+C stops every process at the same step with a
  checkpoint the run resumes from.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
import torch

METRICS = ("loss", "mse", "explained_variance", "l0", "l1", "aux_loss", "dead_fraction",
           "dense_fraction", "cosine_sim", "l2_ratio", "threshold")


def _cfg(small_config, activation_set, **kw):
    kw.setdefault("total_tokens", 256 * 12)
    kw.setdefault("checkpoint_every_tokens", kw["total_tokens"])  # the final one only
    return small_config(activation_path=str(activation_set), device="cpu",
                        metrics_every_steps=4, **kw)


@pytest.mark.parametrize("B,D,n,kc", [(64, 500, 64 * 8 * 4, 8 * 4 * 4),  # as k=8, 4 procs
                                      (32, 200, 32 * 4, 16),  # a row holds many: redone
                                      (16, 30, 16 * 30, 40)])  # every entry
def test_kth_largest_from_per_row_candidates_is_exact(B, D, n, kc):
    from mistudio.sae.distributed import global_kth_largest

    pre = torch.randn(B, D, generator=torch.Generator().manual_seed(B))
    pre[3] += 5  # one row holds many of the largest values
    assert global_kth_largest(pre, n, kc) == pre.reshape(-1).topk(n).values.min()


def _torchrun(tmp_path, cfg, *extra, popen=False):
    (tmp_path / "cfg.json").write_text(json.dumps(cfg.to_dict()))
    env = {**os.environ, "MISTUDIO_DATA_DIR": str(tmp_path / "data"), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
           "2", "-m", "mistudio", "train", "--config", str(tmp_path / "cfg.json"), "--quiet",
           *extra]
    if popen:
        return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, start_new_session=True)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=110, env=env)


def _metric_rows(folder):
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("arch", ["batchtopk", "topk"])
def test_two_processes_train_what_one_process_trains(arch, tmp_path, small_config,
                                                     activation_set):
    from mistudio.sae.data import ActivationSetSource
    from mistudio.sae.formats import load_sae
    from mistudio.sae.trainer import Trainer

    # a wide SAE and a one-step dead window: latents die within the run, so AuxK depends
    # on the dead-latent counters being the same (global) on both processes
    cfg = _cfg(small_config, activation_set, architecture=arch, d_sae=384,
               dead_window_tokens=256)
    run = _torchrun(tmp_path, cfg, "--output", str(tmp_path / "ddp"))
    assert run.returncode == 0, run.stderr[-3000:]
    single = Trainer(cfg, ActivationSetSource(activation_set), tmp_path / "single")
    single.run()
    one_sae, _ = load_sae(tmp_path / "single" / "saes" / "sae")
    ddp_sae, _ = load_sae(tmp_path / "ddp" / "saes" / "sae")
    for (name, p), q in zip(one_sae.state_dict().items(), ddp_sae.state_dict().values()):
        torch.testing.assert_close(q, p, rtol=1e-4, atol=1e-5, msg=name)
    # the metrics rank 0 logged are the whole batch's: equal to the single process's
    one, ddp = _metric_rows(tmp_path / "single"), _metric_rows(tmp_path / "ddp")
    assert [r["step"] for r in ddp] == [r["step"] for r in one] == [4, 8, 12]
    for a, b in zip(one, ddp):
        for key in METRICS:
            if key in a:
                assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-6), (a["step"], key)
    assert max(r["dead_fraction"] for r in one) > 0.1 and max(r["aux_loss"] for r in one) > 0
    metas = [json.loads(p.read_text())
             for p in (tmp_path / "ddp" / "checkpoints").glob("step_*/meta.json")]
    assert max(m["step"] for m in metas) == 12


def test_bad_config_under_torchrun_fails_fast_with_the_message(tmp_path, small_config,
                                                                activation_set):
    cfg = _cfg(small_config, activation_set, k=999)
    run = _torchrun(tmp_path, cfg)
    assert run.returncode != 0
    assert run.stderr.count("k = 999 is larger than the SAE width") == 1, run.stderr[-3000:]
    assert _db_rows(tmp_path / "data", "select id from trainings") == []


def _db_rows(data_dir, sql):
    """Read the live run's database without opening a Studio (which would mark jobs)."""
    try:
        con = sqlite3.connect(f"file:{data_dir / 'mistudio.db'}?mode=ro", uri=True, timeout=10)
    except sqlite3.OperationalError:  # not created yet
        return []
    try:
        return con.execute(sql).fetchall()
    except sqlite3.OperationalError:  # tables not created yet
        return []
    finally:
        con.close()


def test_torchrun_run_is_recorded_like_a_normal_run(tmp_path, small_config, activation_set):
    from mistudio.secrets_test_support import MemorySecrets
    from mistudio.studio import Studio

    cfg = _cfg(small_config, activation_set, architecture="relu", l1_coefficient=1.0)
    run = _torchrun(tmp_path, cfg)
    assert run.returncode == 0, run.stderr[-3000:]
    sae_id = run.stdout.split()[0]
    s = Studio(tmp_path / "data", secrets=MemorySecrets())
    try:
        (tr,) = s.trainings.list_trainings()
        assert tr.status == "completed" and tr.step == 12 and tr.tokens == 256 * 12
        assert "2 processes" in tr.name and tr.folder.startswith(str(tmp_path / "data"))
        job = s.jobs.find(tr.job_id)
        assert job.status == "completed" and job.progress == job.total == 12
        assert job.params["distributed"]["world_size"] == 2
        (sae,) = s.trainings.list_saes(tr.id)
        assert sae.id == sae_id and sae.architecture == "relu"
        # metrics batched into SQLite: the same numbers as metrics.jsonl, written once
        rows = s.trainings.metrics(tr.id)
        assert [r["step"] for r in rows] == [4, 8, 12]
        stored = s.jobs.metrics(job.id, "explained_variance")
        assert [m["step"] for m in stored] == [4, 8, 12]
        assert [m["value"] for m in stored] == pytest.approx(
            [r["explained_variance"] for r in rows])
        assert [c.step for c in s.trainings.list_checkpoints(tr.id)] == [12]
        assert len(s.list_jobs()) == 1  # rank 1 recorded nothing
    finally:
        s.close(timeout=10)


def _wait_for_progress(proc, data_dir, steps: int, timeout: float = 90):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        rows = _db_rows(data_dir, "select id, status, progress from jobs")
        if rows and rows[0][1] == "running" and (rows[0][2] or 0) >= steps:
            return rows[0][0]
        time.sleep(0.2)
    raise AssertionError("the torchrun job did not start training in time")


def _stop(proc, sig):
    os.killpg(proc.pid, sig)
    try:
        return proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        return proc.communicate()


def test_killed_torchrun_leaves_the_job_interrupted(tmp_path, small_config, activation_set):
    from mistudio.secrets_test_support import MemorySecrets
    from mistudio.studio import Studio

    cfg = _cfg(small_config, activation_set, total_tokens=256 * 100_000)
    proc = _torchrun(tmp_path, cfg, popen=True)
    job_id = _wait_for_progress(proc, tmp_path / "data", 1)
    # kill -9 every process (torchrun starts its workers in sessions of their own)
    import psutil

    agent = psutil.Process(proc.pid)
    family = [agent, *agent.children(recursive=True)]
    assert len(family) >= 3
    for p in reversed(family):
        p.kill()
    proc.communicate(timeout=30)
    psutil.wait_procs(family, timeout=30)
    s = Studio(tmp_path / "data", secrets=MemorySecrets())
    try:
        assert s.jobs.find(job_id).status == "interrupted"
        (tr,) = s.trainings.list_trainings()
        assert tr.status == "interrupted" and tr.job_id == job_id
    finally:
        s.close(timeout=10)


def test_ctrl_c_stops_every_process_with_a_checkpoint_that_resumes(tmp_path, small_config,
                                                                   activation_set):
    from mistudio.secrets_test_support import MemorySecrets
    from mistudio.studio import Studio

    cfg = _cfg(small_config, activation_set, architecture="batchtopk",
               total_tokens=256 * 100_000)
    proc = _torchrun(tmp_path, cfg, popen=True)
    job_id = _wait_for_progress(proc, tmp_path / "data", 2)
    _out, err = _stop(proc, signal.SIGINT)  # what Ctrl+C in the terminal does
    assert proc.returncode != 0
    s = Studio(tmp_path / "data", secrets=MemorySecrets())
    try:
        assert s.jobs.find(job_id).status == "cancelled", err[-3000:]
        (tr,) = s.trainings.list_trainings()
        assert tr.status == "cancelled"
        (last,) = s.trainings.list_checkpoints(tr.id)[-1:]
        assert last.step >= 2
        # the checkpoint resumes (in one process) and finishes
        job = s.trainings.resume_training(tr.id, total_tokens=256 * (last.step + 4))
        final = s.jobs.wait(job.id, 60)
        assert final.status == "completed", final.error
        assert s.trainings.get_training(tr.id).step == last.step + 4
    finally:
        s.close(timeout=10)
