"""The jobs of every area, as services, the UI and the CLI see them: submit, find, list, stop.

Wraps the queue (what runs now) and the jobs table (what ran); nothing above this module touches
either directly. The status tuples and ``JobRecord`` are handed on from here so that the UI never
imports the store.
"""

from __future__ import annotations

from pathlib import Path

from mistudio.errors import UserError
from mistudio.jobs.queue import JobQueue, Listener
from mistudio.jobs.repository import ACTIVE, FINISHED, STATUSES, JobRecord, JobsRepo

__all__ = ["ACTIVE", "FINISHED", "STATUSES", "JobRecord", "JobService"]


class JobService:
    def __init__(self, repo: JobsRepo, queue: JobQueue):
        self.repo = repo
        self.queue = queue

    # ------------------------------------------------------------------ starting

    def submit(self, kind: str, params: dict | None = None, *, title: str = "",
               target: str = "", artifact_dir: Path | None = None,
               job_id: str | None = None) -> JobRecord:
        return self.queue.submit(kind, params, title=title, target=target,
                                 artifact_dir=artifact_dir, job_id=job_id)

    def run_inline(self, kind: str, params: dict | None = None, **kw) -> JobRecord:
        """Submit and wait (CLI, scripts)."""
        rec = self.submit(kind, params, **kw)
        return self.queue.wait(rec.id)

    def wait(self, job_id: str, timeout: float | None = None) -> JobRecord | None:
        return self.queue.wait(job_id, timeout=timeout)

    # ------------------------------------------------------------------ reading

    def find(self, job_id: str) -> JobRecord | None:
        """The job with exactly this id, or None (deleted, never existed)."""
        return self.repo.get(job_id)

    def get(self, job_id: str) -> JobRecord:
        """The job with this id or a unique prefix of it; a clear error otherwise."""
        rec = self.repo.get(job_id)
        if rec is None:
            matches = [r for r in self.repo.list() if r.id.startswith(job_id)]
            if len(matches) == 1:
                return matches[0]
            raise UserError(f"No job with id {job_id!r}.", hint="`mistudio jobs list` shows them.")
        return rec

    def change_token(self) -> tuple:
        """A value that changes whenever the jobs table changes, in this process or another."""
        return self.repo.change_token()

    def list(self, **filters) -> list[JobRecord]:
        return self.repo.list(**filters)

    def latest(self, rec: JobRecord) -> JobRecord:
        """``rec`` as the table has it now (``rec`` itself once the row is gone)."""
        return self.repo.get(rec.id) or rec

    def is_active(self, job_id: str) -> bool:
        """Queued, running or paused in this process."""
        return self.queue.is_active(job_id)

    def active_ids(self) -> list[str]:
        return self.queue.active_ids()

    def limits(self) -> dict:
        """What the queue runs with now (it follows the settings): at most ``max_concurrent``
        jobs, ``max_gpu`` of them GPU-heavy, on ``device`` in ``dtype`` by default."""
        q = self.queue
        return {"max_concurrent": q.max_concurrent, "max_gpu": q.max_gpu, "device": q.device,
                "dtype": q.dtype}

    def live_foreign_ids(self) -> list[str]:
        """Jobs another live process (the CLI beside the window) is running now."""
        return self.repo.live_foreign_jobs()

    def live_ids(self) -> list[str]:
        """Every job running anywhere now: this process's and other live processes'."""
        return list(self.queue.active_ids()) + self.live_foreign_ids()

    def is_finished(self, job_id: str) -> bool:
        """True once no job of this id can still change (finished, deleted, or never known)."""
        if not job_id or self.queue.is_active(job_id):
            return not job_id
        rec = self.repo.get(job_id)
        return rec is None or rec.status in FINISHED

    def metrics(self, job_id: str, name: str | None = None) -> list[dict]:
        """The metric rows a job recorded: {step, name, value, t}."""
        return self.repo.metrics(job_id, name)

    def metric_series(self, job_id: str) -> dict:
        """The metric rows a job recorded, per name: an ``(n, 3)`` array of ``(t, step,
        value)`` (the Training tab's charts read a whole run this way)."""
        return self.repo.metric_series(job_id)

    def best_and_last(self, job_ids: list[str], name: str, *, higher_is_better: bool
                      ) -> tuple[float | None, float | None]:
        """Best and last value of metric ``name`` over a training's jobs (oldest first; a
        resumed job replaces the stretch after its first step)."""
        return self.repo.best_and_last(job_ids, name, higher_is_better=higher_is_better)

    def log(self, job_id: str, tail: int | None = None) -> str:
        rec = self.get(job_id)
        try:
            text = Path(rec.log_path).read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        if tail:
            text = "\n".join(text.splitlines()[-tail:])
        return text

    # ------------------------------------------------------------------ control

    def cancel(self, job_id: str) -> bool:
        rec = self.get(job_id)
        if rec.status not in ACTIVE:
            return False
        if not self.queue.cancel(rec.id):
            # Running in another process (e.g. the CLI cancelling the GUI's job): not ours to
            # stop directly; mark it so that process's queue sees it on its next check.
            self.repo.update_if_active(rec.id, message="Cancel requested from another process.")
            return False
        return True

    def pause(self, job_id: str) -> bool:
        return self.queue.pause(self.get(job_id).id)

    def resume(self, job_id: str) -> bool:
        return self.queue.resume(self.get(job_id).id)

    def delete(self, job_id: str) -> None:
        rec = self.get(job_id)
        if self.queue.is_active(rec.id):
            raise UserError("That job is still running.", hint="Cancel it first.")
        self.repo.delete(rec.id)
        if rec.log_path:
            Path(rec.log_path).unlink(missing_ok=True)

    def note(self, job_id: str, message: str, *, status: str | None = None) -> None:
        """Record a message on a job that is not running here (and a new status for a
        finished one: a stopped training continued by another job is 'resumed')."""
        fields = {"message": message}
        if status is not None:
            fields["status"] = status
        self.repo.update(job_id, **fields)

    def forget(self, job_id: str) -> None:
        """Drop a finished job's row (its owner deletes the artifacts)."""
        self.repo.delete(job_id)

    # ------------------------------------------------------------------ events

    def add_listener(self, fn: Listener, *, records: bool = False) -> None:
        """Tell ``fn(job_id, kind, payload)`` about every job event; services that record
        outcomes pass ``records=True`` (told first; see JobQueue.add_listener)."""
        self.queue.add_listener(fn, records=records)

    def remove_listener(self, fn: Listener) -> None:
        self.queue.remove_listener(fn)
