"""A job's row says 'completed' before the services' recording listeners have written its
outcome. A command that stops waiting on the row (a wait with a timeout, as the CLI's
progress loop does) and then closes the Studio must not close the database under a listener
that is still writing: that crashed inside SQLite (a segfault in the analysis CLI test, the
listener in FeatureService.replace_features)."""

from __future__ import annotations

import threading
import time

from mistudio.secrets_test_support import MemorySecrets
from mistudio.studio import Studio


def test_close_waits_for_listeners_of_an_ended_job(data_dir):
    studio = Studio(data_dir, secrets=MemorySecrets())
    started, wrote = threading.Event(), []

    def recorder(job_id, kind, payload):
        if kind == "status" and payload.get("status") == "completed":
            started.set()
            time.sleep(0.5)  # a slow recording (thousands of feature rows)
            studio.settings_service.update(max_concurrent_jobs=3)  # a write to the store
            wrote.append(job_id)

    studio.add_job_listener(recorder, records=True)
    job = studio.submit_job("demo.sleep", {"seconds": 0.01})
    assert started.wait(30)
    rec = studio.jobs.wait(job.id, timeout=0.01)  # the row, read while the listener runs
    assert rec.status == "completed" and not wrote
    studio.close(timeout=10)  # must wait for the listener, not close the store under it
    assert wrote == [job.id]


def test_cli_follow_returns_after_the_outcome_is_recorded(studio):
    from mistudio.cli.runner import follow_job_cli

    wrote = []

    def recorder(job_id, kind, payload):
        if kind == "status" and payload.get("status") == "completed":
            time.sleep(0.8)  # longer than the progress loop's 0.5 s wait
            wrote.append(job_id)

    studio.add_job_listener(recorder, records=True)
    job = studio.submit_job("demo.sleep", {"seconds": 0.01})
    final = follow_job_cli(studio, job, quiet=True)
    assert final.status == "completed" and wrote == [job.id]


def test_a_cancel_that_lands_as_the_job_ends_leaves_its_outcome(studio):
    """Cancel finds the job running, and the job ends before the cancel's "Cancelling..."
    note reaches its row (a click just as it finished): the row keeps the outcome the job
    recorded, never a "Cancelling..." that nothing will clear. The same for a cancel that
    finds the job already ended here (it must not read as another process's job)."""
    job = studio.submit_job("demo.sleep", {"seconds": 30})
    deadline = time.monotonic() + 30
    while studio.jobs.find(job.id).status != "running" and time.monotonic() < deadline:
        time.sleep(0.01)
    run = studio.jobs.queue._running[job.id]
    request_cancel = run.ctx.request_cancel

    def cancel_then_let_the_job_end_first():
        request_cancel()
        assert run.done.wait(30)  # the job saw the request and recorded its end

    run.ctx.request_cancel = cancel_then_let_the_job_end_first
    assert studio.jobs.cancel(job.id)
    rec = studio.jobs.get(job.id)
    assert (rec.status, rec.message) == ("cancelled", "Cancelled.")

    done = studio.submit_job("demo.sleep", {"seconds": 0.05})
    assert studio.jobs.wait(done.id, 30).status == "completed"
    assert not studio.jobs.cancel(done.id)
    assert studio.jobs.get(done.id).message == "Done."
