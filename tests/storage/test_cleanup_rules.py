"""The cleanup policy's rules on a hand-built data folder: cache LRU over a size limit, keep
the last N activation sets (pinned and used ones survive, the record named), checkpoint
thinning (log-spaced + newest; never of unfinished trainings), feature visualisations of
deleted SAEs. The dry run lists exactly what the real run deletes; the bytes freed equal an
independent walk; deletion goes through the owning services (rows and folders together)."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

from mistudio.activations.repository import ActivationSetRecord, ActivationSetsRepo
from mistudio.analysis.repository import AnalysisRecord, FeatureAnalysesRepo
from mistudio.app.storage_cleanup import CleanupPolicy
from mistudio.jobs.repository import JobRecord, JobsRepo
from mistudio.sae.repository import SAERecord, SAEsRepo, TrainingRecord, TrainingsRepo

KB = 1024


def _du(path: Path) -> int:
    # independent of the app's size helper: allocated bytes from os.walk
    if path.is_file():
        return os.lstat(path).st_blocks * 512
    return sum(os.lstat(Path(d) / f).st_blocks * 512 for d, _, fs in os.walk(path) for f in fs)


def _blob(path: Path, n: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(os.urandom(n))
    return path


def _checkpoints(folder: Path, steps: list[int]) -> None:
    for s in steps:
        d = folder / "checkpoints" / f"step_{s:08d}"
        _blob(d / "state.pt", 8 * KB)
        (d / "meta.json").write_text(json.dumps({"step": s, "tokens": s * 10,
                                                 "created_at": time.time()}))


def _touch_tree(path: Path, t: float) -> None:
    for d, dirs, fs in os.walk(path):
        for name in fs + dirs:
            os.utime(Path(d) / name, (t, t))
    os.utime(path, (t, t))


STEPS = [100 * i for i in range(1, 11)]


def _build(studio):
    root = studio.paths.root
    sets = ActivationSetsRepo(studio.store)
    recs = []
    for i in range(1, 6):
        folder = root / "activations" / f"act_{i}"
        _blob(folder / "shard_0.npy", (20 + i) * KB)
        recs.append(ActivationSetRecord(id=f"act_{i}", hook_name="blocks.0.hook_resid_post",
                                        status="ready", name=f"set {i}", folder=str(folder),
                                        created_at=f"2026-01-0{i}T00:00:00",
                                        pinned=(i == 3)))
    _blob(root / "activations" / "act_0" / "shard_0.npy", 4 * KB)
    recs.append(ActivationSetRecord(id="act_0", hook_name="blocks.0.hook_resid_post",
                                    status="incomplete", folder=str(root / "activations/act_0"),
                                    created_at="2025-12-01T00:00:00"))
    sets.insert_all(recs)
    JobsRepo(studio.store).insert(JobRecord(id="job_ext", kind="activations.extract",
                                      status="interrupted", params={"set_ids": ["act_0"]}))

    trainings = TrainingsRepo(studio.store)
    for tid, status in (("tr_done", "completed"), ("tr_paused", "paused"),
                        ("tr_resumable", "cancelled")):
        folder = root / "trainings" / tid
        _checkpoints(folder, STEPS)
        trainings.insert(TrainingRecord(id=tid, name=tid, status=status, folder=str(folder),
                                        activation_id="act_2" if tid == "tr_done" else ""))
    JobsRepo(studio.store).insert(JobRecord(id="job_resume", kind="sae.train", status="interrupted",
                                      target="tr_resumable", params={}))
    SAEsRepo(studio.store).insert(SAERecord(id="sae_live", folder=str(root / "trainings" /
                                                                     "tr_done"),
                                            training_id="tr_done", name="live SAE"))
    analyses = FeatureAnalysesRepo(studio.store)
    for aid, sae in (("fa_live", "sae_live"), ("fa_gone", "sae_gone")):
        folder = root / "features" / aid
        _blob(folder / "stats.npy", 12 * KB)
        analyses.insert(AnalysisRecord(id=aid, sae_id=sae, status="completed",
                                       folder=str(folder)))
    cache = root / "cache"
    now = time.time()
    for name, size, age in (("hub/models--old--repo", 300, 4000), ("numba", 200, 3000),
                            ("hub/models--new--repo", 300, 100),
                            ("feature_maps/sae_live", 8, 50), ("feature_maps/sae_gone", 8, 5000)):
        _blob(cache / name / "blob.bin", size * KB)
        _touch_tree(cache / name, now - age)
    return root


def _policy(**kw) -> CleanupPolicy:
    base = dict(tmp=True, orphans=True, cache_limit_gb=450 * KB / 1024 ** 3,
                keep_activation_sets=1, thin_checkpoints=True, checkpoints_kept=4,
                feature_visuals=True)
    return CleanupPolicy(**{**base, **kw})


def _expected_thinned_steps() -> set[int]:
    # the log-spaced targets from the first step to the last, each matched to the nearest
    # step in log distance (computed here independently of the app)
    import numpy as np

    targets = np.geomspace(STEPS[0], STEPS[-1], 4)
    keep = {min(STEPS, key=lambda s: abs(math.log(s) - math.log(t))) for t in targets}
    assert len(keep) == 4 and STEPS[-1] in keep
    return set(STEPS) - keep


def test_rules_dry_run_equals_real_run_and_referenced_artifacts_survive(studio):
    root = _build(studio)
    studio.storage.set_policy(_policy())
    dry = studio.storage.clean(dry_run=True)
    listed = {(i.rule, i.where) for i in dry.items}
    thinned = _expected_thinned_steps()
    ck = root / "trainings" / "tr_done" / "checkpoints"
    expected = ({("activation set", "activation_sets:act_4"),
                 ("activation set", "activation_sets:act_1"),
                 ("feature analysis", "feature_analyses:fa_gone"),
                 ("feature map", str(root / "cache" / "feature_maps" / "sae_gone")),
                 ("cache", str(root / "cache" / "hub" / "models--old--repo")),
                 ("cache", str(root / "cache" / "numba"))}
                | {("checkpoint", str(ck / f"step_{s:08d}")) for s in thinned})
    assert listed == expected

    # bytes freed: an independent walk of every listed folder
    folders = {"activation_sets:act_4": root / "activations" / "act_4",
               "activation_sets:act_1": root / "activations" / "act_1",
               "feature_analyses:fa_gone": root / "features" / "fa_gone"}
    assert dry.bytes == sum(_du(folders.get(w, Path(w))) for _, w in listed)

    kept = {i.where: i.reason for i in dry.kept}
    assert "pinned" in kept["activation_sets:act_3"]
    assert "training tr_done (SAE live SAE)" in kept["activation_sets:act_2"]
    assert "the interrupted job job_ext" in kept["activation_sets:act_0"]
    assert "paused" in kept[str(root / "trainings" / "tr_paused" / "checkpoints")]
    assert "job_resume is interrupted" in kept[str(root / "trainings" / "tr_resumable" /
                                                   "checkpoints")]
    assert (root / "activations" / "act_4").exists()  # the dry run deleted nothing

    real = studio.storage.clean(dry_run=False)
    assert {(i.rule, i.where) for i in real.items} == listed
    for _, where in listed:
        assert not folders.get(where, Path(where)).exists(), where
    sets = ActivationSetsRepo(studio.store)
    assert sets.get("act_4") is None and sets.get("act_1") is None
    assert FeatureAnalysesRepo(studio.store).get("fa_gone") is None
    # what kept records need is still there
    for i in (0, 2, 3, 5):
        assert sets.get(f"act_{i}") is not None and (root / "activations" / f"act_{i}").exists()
    assert {int(p.name[5:]) for p in ck.iterdir()} == set(STEPS) - thinned
    for tid in ("tr_paused", "tr_resumable"):
        assert len(list((root / "trainings" / tid / "checkpoints").iterdir())) == len(STEPS)
    assert FeatureAnalysesRepo(studio.store).get("fa_live") is not None
    assert (root / "features" / "fa_live").exists()
    assert (root / "cache" / "feature_maps" / "sae_live").exists()
    assert (root / "cache" / "hub" / "models--new--repo").exists()
    # the training's checkpoint table follows its folders (deleted through its service)
    rows = studio.store.db["sae_checkpoints"].rows_where("training_id = ?", ["tr_done"])
    assert {r["step"] for r in rows} <= set(STEPS) - thinned
    assert studio.storage.clean(dry_run=True).items == []
    summary = studio.storage.last_cleanup()
    assert summary.deleted == len(listed) and summary.bytes == dry.bytes


def test_rules_that_delete_user_work_are_off_by_default(studio):
    _build(studio)
    policy = studio.storage.policy()
    assert policy.keep_activation_sets == 0 and not policy.thin_checkpoints
    assert not policy.at_startup
    rules = {i.rule for i in studio.storage.clean(dry_run=True).items}
    assert "activation set" not in rules and "checkpoint" not in rules
    assert "cache" not in rules  # 800 KB is far under the default 20 GB


def test_real_run_deletes_only_what_the_preview_showed(studio):
    root = _build(studio)
    studio.storage.set_policy(_policy(thin_checkpoints=False, cache_limit_gb=0))
    preview = studio.storage.clean(dry_run=True)
    # something new appears between the preview and the click: it is not deleted
    _blob(root / "tmp" / "late.part", 4 * KB)
    done = studio.storage.clean(dry_run=False, expected=preview)
    assert {i.key for i in done.items} == {i.key for i in preview.items}
    assert (root / "tmp" / "late.part").exists()


def test_pin_keeps_a_set_and_unpin_releases_it(studio):
    _build(studio)
    studio.storage.set_policy(_policy(keep_activation_sets=4, thin_checkpoints=False,
                                      cache_limit_gb=0, feature_visuals=False))
    # newest 4: act_5, act_4, act_3, act_2; act_1 goes unless pinned
    assert [i.where for i in studio.storage.clean(dry_run=True).items] == \
        ["activation_sets:act_1"]
    studio.activations.set_pinned("act_1", True)
    plan = studio.storage.clean(dry_run=True)
    assert plan.items == [] and any("pinned" in k.reason for k in plan.kept)
    studio.activations.set_pinned("act_1", False)
    assert [i.where for i in studio.storage.clean(dry_run=True).items] == \
        ["activation_sets:act_1"]


def test_startup_cleanup_runs_only_when_enabled(studio):
    root = _build(studio)
    studio.storage.set_policy(_policy(at_startup=False))
    assert studio.storage.startup_cleanup() is None
    assert (root / "activations" / "act_1").exists()
    studio.storage.set_policy(_policy(at_startup=True, thin_checkpoints=False))
    summary = studio.storage.startup_cleanup()
    assert summary.trigger == "start-up" and summary.deleted == 6
    assert summary.rules == {"activation set": 2, "feature analysis": 1, "feature map": 1,
                             "cache": 2}
    assert "freed" in summary.text() and not (root / "activations" / "act_1").exists()


def test_tmp_rule_agrees_with_the_start_up_wipe(studio, monkeypatch):
    from mistudio.secrets_test_support import MemorySecrets
    from mistudio.studio import Studio

    root = studio.paths.root
    _blob(root / "tmp" / "import-x" / "part.bin", 4 * KB)
    monkeypatch.setattr(JobsRepo, "live_foreign_jobs", lambda self: ["job_gui"])
    assert studio.storage.clean(dry_run=True).items == []
    Studio(root, secrets=MemorySecrets()).close(timeout=5)  # another process starting
    assert (root / "tmp" / "import-x" / "part.bin").exists()
    monkeypatch.setattr(JobsRepo, "live_foreign_jobs", lambda self: [])
    assert [i.where for i in studio.storage.clean(dry_run=True).items] == \
        [str(root / "tmp" / "import-x")]
    Studio(root, secrets=MemorySecrets()).close(timeout=5)
    assert not (root / "tmp" / "import-x").exists()


def test_log_spaced_steps_keep_the_newest_and_the_count():
    from mistudio.storage.rules import log_spaced_steps

    steps = list(range(1, 1001))
    kept = log_spaced_steps(steps, 4)
    assert kept == {1, 10, 100, 1000}  # 1000^(i/3): decades
    assert log_spaced_steps([5, 6], 4) == {5, 6}


def test_space_outlook_reuses_the_free_space_checks_estimates(studio):
    import shutil

    from mistudio.paths import InsufficientDiskSpace, check_free_space

    root = studio.paths.root
    out = studio.storage.space_outlook()
    assert out.largest is None and "No large job" in out.lines()[-1]
    check_free_space(root / "activations" / "act_x", 10 * 1024 ** 2, what="the activations")
    check_free_space(root / "datasets" / "ds_x", 2 * 1024 ** 2, what="this tokenization")
    free = shutil.disk_usage(root).free
    out = studio.storage.space_outlook()
    need = int(10 * 1024 ** 2 * 1.1)  # the check's own 10% margin
    assert out.largest["what"] == "the activations" and out.largest["need"] == need
    assert abs(out.fits - free // need) <= 1 and "Fits" in out.lines()[-1]
    try:
        check_free_space(root / "activations", free * 4, what="a huge extraction")
    except InsufficientDiskSpace:
        pass
    _blob(root / "tmp" / "junk.bin", 40 * KB)
    out = studio.storage.space_outlook(with_cleanup=True)
    assert out.largest["what"] == "a huge extraction" and out.fits == 0
    assert "Would NOT fit" in out.lines()[-1] and out.reclaimable_bytes >= 40 * KB


def test_records_that_need_an_item_keep_it_and_are_named(studio):
    from mistudio.autointerp.repository import AutointerpRepo, RunRecord

    root = _build(studio)
    # a feature analysis that read act_4 directly, an auto-interp run of the analysis of the
    # deleted SAE, an SAE registered inside a checkpoint that thinning would drop
    FeatureAnalysesRepo(studio.store).insert(AnalysisRecord(
        id="fa_reads_act4", sae_id="sae_live", status="completed",
        activation_path=str(root / "activations" / "act_4")))
    AutointerpRepo(studio.store).insert_run(RunRecord(id="ai_1", analysis_id="fa_gone",
                                                      sae_id="sae_gone", status="completed"))
    ck = root / "trainings" / "tr_done" / "checkpoints" / "step_00000300"
    SAEsRepo(studio.store).insert(SAERecord(id="sae_ck", folder=str(ck / "sae"),
                                            name="step-300 SAE"))
    studio.storage.set_policy(_policy(cache_limit_gb=0))
    plan = studio.storage.clean(dry_run=True)
    listed = {i.where for i in plan.items}
    kept = {i.where: i.reason for i in plan.kept}
    assert "activation_sets:act_4" not in listed
    assert "feature analysis fa_reads_act4" in kept["activation_sets:act_4"]
    assert "feature_analyses:fa_gone" not in listed
    assert "auto-interp run(s) ai_1" in kept["feature_analyses:fa_gone"]
    assert str(ck) not in listed and "SAE step-300 SAE lives in it" in kept[str(ck)]
    studio.storage.clean(dry_run=False, expected=plan)
    assert (root / "activations" / "act_4").exists() and ck.exists()
    assert FeatureAnalysesRepo(studio.store).get("fa_gone") is not None


def test_a_job_starting_during_the_real_run_stops_it(studio, monkeypatch):
    root = _build(studio)
    studio.storage.set_policy(_policy(cache_limit_gb=0))
    preview = studio.storage.clean(dry_run=True)
    runner = studio.storage.cleanup
    calls = []
    real_live = runner.live_jobs

    def live():  # asked when the run starts, by the plan, before each item: a resume
        calls.append(1)  # starts right after the first deletion
        return real_live() + (["job_resume_now"] if len(calls) > 3 else [])

    monkeypatch.setattr(runner, "live_jobs", live)
    done = studio.storage.clean(dry_run=False, expected=preview)
    assert len(done.items) == 1 and len(preview.items) > 1
    left = [k for k in done.kept if "job_resume_now started" in k.reason]
    assert {k.key for k in left} == {i.key for i in preview.items[1:]}
    assert done.items[0].key == preview.items[0].key
    monkeypatch.setattr(runner, "live_jobs", real_live)
    again = {i.key for i in studio.storage.clean(dry_run=True).items}
    assert again == {i.key for i in preview.items[1:]}  # the rest is all still there
    summary = studio.storage.last_cleanup()
    assert summary.deleted == 1 and "job_resume_now" in summary.text()


def test_cli_policy_and_pin(studio, capsys):
    from mistudio.cli import main

    root = _build(studio)
    studio.close(timeout=5)
    base = ["--data-dir", str(root)]
    assert main(base + ["storage", "policy", "--keep-activation-sets", "1", "--cache-limit-gb",
                        "0", "--thin-checkpoints", "on", "--checkpoints-kept", "4"]) == 0
    out = capsys.readouterr().out
    assert "keep the newest 1" in out and "keep 4 log-spaced" in out and "cache LRU: off" in out
    assert main(base + ["storage", "policy", "--checkpoints-kept", "1"]) == 2
    assert "cleanup_checkpoints_kept" in capsys.readouterr().err
    assert main(base + ["extract", "pin", "act_4"]) == 0
    assert "act_4: pinned" in capsys.readouterr().out
    assert main(base + ["storage", "clean", "--dry-run", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    listed = {i["where"] for i in plan["items"]}
    assert "activation_sets:act_1" in listed and "activation_sets:act_4" not in listed
    assert main(base + ["storage", "clean"]) == 0
    assert "item(s) deleted" in capsys.readouterr().out
    assert not (root / "activations" / "act_1").exists()
    assert (root / "activations" / "act_4").exists()
