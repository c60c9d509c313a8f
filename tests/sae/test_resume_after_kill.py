"""A training killed outright (SIGKILL: a crash, a power cut) resumes with default settings
and ends exactly where an uninterrupted run ends; resuming is offered only where it can work.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from mistudio.errors import UserError
from mistudio.jobs.repository import JobsRepo

STEPS = 400  # long enough that the run is still going when its first checkpoint appears
BATCH = 512


def _env(data_dir) -> dict:
    return {**os.environ, "MISTUDIO_DATA_DIR": str(data_dir), "OMP_NUM_THREADS": "1"}


def _studio(data_dir):
    from mistudio.secrets_test_support import MemorySecrets
    from mistudio.studio import Studio

    return Studio(data_dir, secrets=MemorySecrets())


def _recorded_tokens(data: Path) -> int:
    import sqlite3

    db = data / "mistudio.db"
    if not db.exists():
        return 0
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            row = conn.execute("select max(tokens) from trainings").fetchone()
        finally:
            conn.close()
    except sqlite3.Error:  # not created yet
        return 0
    return int(row[0] or 0)


def test_sigkilled_training_resumes_bit_identical(tmp_path, small_config, activation_set):
    """`mistudio train` killed with SIGKILL after its first automatic checkpoint, then
    `mistudio sae resume`, gives the very weights of an uninterrupted run."""
    from mistudio.sae.data import open_source
    from mistudio.sae.trainer import SAES_DIR, Trainer

    from mistudio.sae.config import TrainingConfig

    # the default checkpoint settings (the tests' small config turns wall-time ones off)
    defaults = TrainingConfig()
    assert defaults.checkpoint_every_tokens == 0 and defaults.checkpoint_every_seconds == 60
    cfg = small_config(activation_path=str(activation_set), batch_size=BATCH,
                       total_tokens=BATCH * STEPS, eval_tokens=0,
                       checkpoint_every_tokens=defaults.checkpoint_every_tokens,
                       checkpoint_every_seconds=defaults.checkpoint_every_seconds)
    (tmp_path / "cfg.json").write_text(json.dumps(cfg.to_dict()))

    data = tmp_path / "data"
    proc = subprocess.Popen([sys.executable, "-m", "mistudio", "train", "--config",
                             str(tmp_path / "cfg.json"), "--quiet"], env=_env(data),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 100
        # the checkpoint is committed once its folder is renamed into place AND the training's
        # row records its progress (written right after): kill after both
        while not (list(data.glob("trainings/tr_*/checkpoints/step_*"))
                   and _recorded_tokens(data) > 0):
            assert proc.poll() is None, f"the training ended early: {proc.stderr.read()}"
            assert time.monotonic() < deadline, "no checkpoint appeared"
            time.sleep(0.01)
        assert proc.poll() is None, "the run finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        proc.stderr.close()

    s = _studio(data)  # start-up marks the dead process's job interrupted
    try:
        (tr,) = s.trainings.list_trainings()
        assert tr.status == "interrupted" and s.trainings.can_resume(tr.id)
        # the checkpoint's progress is recorded in the training's row
        assert 0 < tr.tokens < BATCH * STEPS and tr.tokens % BATCH == 0
    finally:
        s.close(timeout=10)
    resumed = subprocess.run([sys.executable, "-m", "mistudio", "sae", "resume", tr.id],
                             capture_output=True, text=True, timeout=120, env=_env(data))
    assert resumed.returncode == 0, resumed.stderr

    whole = Trainer(cfg, open_source(str(activation_set)), tmp_path / "whole")
    whole.run()
    name = whole.members[0].name
    a = load_file(str(Path(tr.folder) / SAES_DIR / name / "sae_weights.safetensors"))
    b = load_file(str(tmp_path / "whole" / SAES_DIR / name / "sae_weights.safetensors"))
    assert sorted(a) == sorted(b)
    for key in a:
        assert a[key].equal(b[key]), key  # bit for bit, not approximately


def test_checkpoints_by_default_every_tenth_of_the_run(small_config, activation_set, tmp_path):
    from mistudio.sae.checkpoints import list_checkpoints
    from mistudio.sae.data import open_source
    from mistudio.sae.trainer import Trainer

    cfg = small_config(total_tokens=256 * 50, keep_checkpoints=20)
    Trainer(cfg, open_source(str(activation_set)), tmp_path).run()
    assert [c.step for c in list_checkpoints(tmp_path)] == [5, 10, 15, 20, 25, 30, 35, 40,
                                                            45, 50]


def test_wall_time_checkpoints(small_config, activation_set, tmp_path, monkeypatch):
    """Every ``checkpoint_every_seconds`` (the first after a quarter of it), even when the
    token interval is far away; the clock is stepped by hand so the test cannot flake."""
    from mistudio.sae import trainer as trainer_mod
    from mistudio.sae.checkpoints import list_checkpoints
    from mistudio.sae.data import open_source

    clock = {"now": 1000.0}
    monkeypatch.setattr(trainer_mod.time, "monotonic", lambda: clock["now"])
    cfg = small_config(total_tokens=256 * 40, checkpoint_every_tokens=256 * 1000,
                       checkpoint_every_seconds=60, keep_checkpoints=20)
    t = trainer_mod.Trainer(cfg, open_source(str(activation_set)), tmp_path)
    real_step = t._train_member

    def step_and_tick(*a, **k):  # every training step "takes" 2 seconds
        clock["now"] += 2.0
        return real_step(*a, **k)

    t._train_member = step_and_tick
    t.run()
    # first at 15 s (step 8), then every 60 s (30 steps later), then the final one
    assert [c.step for c in list_checkpoints(tmp_path)] == [8, 38, 40]


def test_resume_only_where_it_can_work(studio, small_config, activation_set):
    """Resume needs a checkpoint; a completed training is refused with a way forward; the
    stopped job a resume continues is marked ``resumed``, not left "interrupted"."""
    svc = studio.trainings
    job = svc.start_training(small_config(activation_path=str(activation_set),
                                          total_tokens=256 * 20, eval_tokens=0))
    assert studio.jobs.wait(job.id, 60).status == "completed"
    tr = svc.get_training(job.target)
    assert not svc.can_resume(tr.id)
    with pytest.raises(UserError, match="already complete") as err:
        svc.resume_training(tr.id)
    assert "--total-tokens" in err.value.hint
    assert studio.jobs.find(job.id).title == job.title  # no "(resumed)" job was made
    assert len(JobsRepo(studio.store).list(target=tr.id)) == 1

    # an interrupted training with a checkpoint can resume; its old job is superseded
    svc.trainings_repo.update(tr.id, status="interrupted")
    JobsRepo(studio.store).update(job.id, status="interrupted")
    assert svc.can_resume(tr.id)
    job2 = svc.resume_training(tr.id, total_tokens=256 * 30)
    assert studio.jobs.wait(job2.id, 60).status == "completed"
    old = studio.jobs.find(job.id)
    assert old.status == "resumed" and job2.id in old.message
    assert svc.get_training(tr.id).tokens == 256 * 30

    # no checkpoint at all (killed before the first): not offered, and refused
    for c in svc.list_checkpoints(tr.id):
        svc.delete_checkpoint(tr.id, c.step)
    svc.trainings_repo.update(tr.id, status="interrupted")
    assert not svc.can_resume(tr.id)
    with pytest.raises(UserError, match="no checkpoint"):
        svc.resume_training(tr.id)
