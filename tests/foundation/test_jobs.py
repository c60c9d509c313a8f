"""Job lifecycle through the real queue: complete, fail, cancel, pause, GPU queueing, crash."""

import os
import signal
import subprocess
import sys
import textwrap
import time

from mistudio.jobs import JobContext
from mistudio.jobs.builtin import sleep_job
from mistudio.studio import Studio


def wait_status(studio, job_id, statuses, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rec = studio.get_job(job_id)
        if rec.status in statuses:
            return rec
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} stayed {studio.get_job(job_id).status}")


def test_job_completes_with_progress_metrics_and_log(studio):
    events = []
    studio.add_job_listener(lambda j, k, p: events.append((j, k, p)))
    rec = studio.submit_job("demo.sleep", {"seconds": 0.3}, target="ds_1")
    done = studio.jobs.wait(rec.id, timeout=10)
    assert done.status == "completed"
    assert done.result == {"steps": 6}
    assert done.fraction == 1.0 and done.target == "ds_1"
    assert done.started_at and done.finished_at
    kinds = [k for j, k, _ in events if j == rec.id]
    assert kinds[0] == "status" and "progress" in kinds and "metric" in kinds
    assert [p["status"] for j, k, p in events if k == "status"][-1] == "completed"
    # metrics were batched into SQLite
    metrics = studio.jobs.metrics(rec.id, "value")
    assert [m["step"] for m in metrics] == [0]
    log = studio.job_log(rec.id)
    assert "started" in log and "job completed" in log


def test_services_record_an_outcome_before_the_window_hears_of_it(studio, tiny_gpt2_dir):
    """The window's bridge is added before the services (created lazily, later): a reload
    on "completed" must still read the recorded outcome, so recording listeners go first."""
    seen = []

    def window(job_id, kind, payload):  # added first, as MainWindow adds its bridge
        if kind == "status" and payload.get("status") == "completed":
            model_id = studio.get_job(job_id).target  # (the job may end before add_local returns)
            seen.append(studio.models.repo.get(model_id).status)  # the row as stored now

    studio.add_job_listener(window)
    _rec, job = studio.models.add_local(str(tiny_gpt2_dir))
    studio.jobs.wait(job.id, timeout=60)
    assert studio.get_job(job.id).status == "completed"
    assert seen == ["ready"]


def test_failure_is_short_and_clear_with_traceback_in_log(studio):
    rec = studio.run_job_inline("demo.fail", {"user_error": False})
    assert rec.status == "failed"
    assert rec.error == "RuntimeError: boom"
    assert "Traceback" in rec.traceback and "fail_job" in rec.traceback
    assert "Traceback" in studio.job_log(rec.id)
    rec2 = studio.run_job_inline("demo.fail", {"user_error": True})
    assert rec2.error == "The input file is empty. Pick a file with text in it."


def test_cancel_running_and_queued(studio):
    studio.update_settings(max_concurrent_jobs=1, max_gpu_jobs=1)
    a = studio.submit_job("demo.sleep", {"seconds": 20})
    b = studio.submit_job("demo.sleep", {"seconds": 20})
    wait_status(studio, a.id, {"running"})
    assert studio.get_job(b.id).status == "queued"
    assert studio.cancel_job(b.id)
    assert studio.get_job(b.id).status == "cancelled"
    t0 = time.monotonic()
    assert studio.cancel_job(a.id)
    assert studio.jobs.wait(a.id, timeout=5).status == "cancelled"
    assert time.monotonic() - t0 < 5


def test_pause_and_resume(studio):
    rec = studio.submit_job("demo.sleep", {"seconds": 1.0})
    wait_status(studio, rec.id, {"running"})
    assert studio.pause_job(rec.id)
    wait_status(studio, rec.id, {"paused"})
    frozen = studio.get_job(rec.id).progress
    time.sleep(0.4)
    assert studio.get_job(rec.id).progress == frozen  # nothing happens while paused
    assert studio.resume_job(rec.id)
    assert studio.jobs.wait(rec.id, timeout=10).status == "completed"


def test_gpu_jobs_run_one_at_a_time_light_jobs_beside(studio):
    studio.update_settings(max_concurrent_jobs=3, max_gpu_jobs=1)
    g1 = studio.submit_job("demo.busy", {"seconds": 60})
    g2 = studio.submit_job("demo.busy", {"seconds": 0.2})
    light = studio.submit_job("demo.sleep", {"seconds": 0.1})
    wait_status(studio, g1.id, {"running"})
    assert studio.jobs.wait(light.id, timeout=20).status == "completed"  # ran beside g1
    assert studio.get_job(g1.id).status == "running"
    assert studio.get_job(g2.id).status == "queued"  # waits for the GPU
    studio.cancel_job(g1.id)
    assert studio.jobs.wait(g2.id, timeout=20).status == "completed"
    r1, r2 = studio.get_job(g1.id), studio.get_job(g2.id)
    assert r1.status == "cancelled" and r2.started_at >= r1.finished_at


def test_job_function_runs_standalone(tmp_path):
    seen = []
    ctx = JobContext.standalone(tmp_path, on_event=lambda j, k, p: seen.append(k))
    assert sleep_job({"seconds": 0.1}, ctx) == {"steps": 2}
    assert "progress" in seen


def test_shutdown_stops_running_jobs(data_dir):
    from mistudio.secrets_test_support import MemorySecrets

    s = Studio(data_dir, secrets=MemorySecrets())
    rec = s.submit_job("demo.sleep", {"seconds": 30})
    wait_status(s, rec.id, {"running"})
    t0 = time.monotonic()
    assert s.close(timeout=5) == []
    assert time.monotonic() - t0 < 5
    s2 = Studio(data_dir, secrets=MemorySecrets())
    assert s2.get_job(rec.id).status == "cancelled"
    s2.close()


CRASH_SCRIPT = textwrap.dedent("""
    import sys, time
    from mistudio.secrets_test_support import MemorySecrets
    from mistudio.studio import Studio
    s = Studio(sys.argv[1], secrets=MemorySecrets())
    rec = s.submit_job("demo.sleep", {"seconds": 60})
    while s.get_job(rec.id).status != "running":
        time.sleep(0.01)
    print(rec.id, flush=True)
    time.sleep(60)
""")


def test_sigkill_while_running_restarts_cleanly(data_dir):
    proc = subprocess.Popen([sys.executable, "-c", CRASH_SCRIPT, str(data_dir)],
                            stdout=subprocess.PIPE, text=True)
    try:
        job_id = proc.stdout.readline().strip()
        assert job_id.startswith("job_")
        time.sleep(0.3)  # let it write progress rows
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    from mistudio.secrets_test_support import MemorySecrets

    s = Studio(data_dir, secrets=MemorySecrets())
    try:
        assert s.store.integrity_ok()
        rec = s.get_job(job_id)
        assert rec.status == "interrupted"
        assert job_id in s.interrupted_at_start
        assert "Interrupted" in rec.message
        # the app works normally afterwards
        assert s.run_job_inline("demo.sleep", {"seconds": 0.05}).status == "completed"
    finally:
        s.close()


LIVE_SCRIPT = textwrap.dedent("""
    import sys, time
    from mistudio.secrets_test_support import MemorySecrets
    from mistudio.studio import Studio
    s = Studio(sys.argv[1], secrets=MemorySecrets())
    rec = s.submit_job("demo.sleep", {"seconds": 60})
    while s.get_job(rec.id).status != "running":
        time.sleep(0.01)
    print(rec.id, flush=True)
    sys.stdin.readline()  # run until the test says stop
    s.close(timeout=5)
""")


def test_second_process_leaves_live_jobs_of_the_first_alone(data_dir):
    """The CLI starting beside the GUI must not mark the GUI's running jobs interrupted."""
    from mistudio.secrets_test_support import MemorySecrets

    proc = subprocess.Popen([sys.executable, "-c", LIVE_SCRIPT, str(data_dir)],
                            stdout=subprocess.PIPE, stdin=subprocess.PIPE, text=True)
    try:
        job_id = proc.stdout.readline().strip()
        (data_dir / "tmp" / "partial-import").mkdir(parents=True, exist_ok=True)
        s = Studio(data_dir, secrets=MemorySecrets())
        try:
            assert s.get_job(job_id).status == "running"
            assert job_id not in s.interrupted_at_start
            assert s.jobs.live_foreign_ids() == [job_id]
            assert (data_dir / "tmp" / "partial-import").exists()  # the other's work is kept
        finally:
            s.close()
        proc.stdin.write("stop\n")
        proc.stdin.flush()
        proc.wait(15)
    finally:
        if proc.poll() is None:
            proc.kill()
    s = Studio(data_dir, secrets=MemorySecrets())
    assert s.get_job(job_id).status == "cancelled"  # closed cleanly by its owner
    s.close()
