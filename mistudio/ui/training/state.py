"""What the Training tab shows, without Qt: tests drive it, the tab renders it.

The trainings (each one's jobs, oldest first: a resume continues the same training), which
job belongs to which training, every training's metric history, the selected training and
those ticked for comparison, and what each card and the interrupted-runs banner say.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from mistudio.ui.training.series import RunMetrics

KEY_METRICS = ("loss", "l0", "explained_variance", "dead_fraction")


@dataclass
class CardView:
    """What a training's card shows."""

    title: str
    status: str
    can_resume: bool
    message: str
    fraction: float | None  # None: busy without a known total
    step: float
    total: float | None
    eta_s: float | None
    tokens_per_s: float | None
    metrics: dict[str, float | None]


@dataclass
class TrainingState:
    jobs: dict[str, list] = field(default_factory=dict)  # training key -> JobRecords, oldest first
    key_of_job: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, RunMetrics] = field(default_factory=dict)  # key -> history of all its jobs
    compare: set[str] = field(default_factory=set)
    selected: str | None = None
    last_error: str = ""
    other_jobs: set[str] = field(default_factory=set)  # job ids known not to be trainings
    runs_dirty: bool = True  # the Runs table is older than what changed since

    # ------------------------------------------------------------------ jobs

    def set_jobs(self, jobs: list) -> None:
        """Start over from the stored training jobs (start-up, after a delete)."""
        self.jobs.clear()
        self.key_of_job.clear()
        for job in jobs:
            self.remember(job)
        self.runs_dirty = True

    def remember(self, job) -> str:
        """Add or update ``job``; returns its training's key (the training id, or the job's
        own id for a job without one)."""
        key = job.target or job.id
        jobs = self.jobs.setdefault(key, [])
        jobs[:] = [j for j in jobs if j.id != job.id] + [job]
        jobs.sort(key=lambda j: j.created_at)
        self.key_of_job[job.id] = key
        return key

    def latest(self, key: str):
        return self.jobs[key][-1]

    def key_of(self, job_id: str) -> str | None:
        return self.key_of_job.get(job_id)

    def forget(self, key: str) -> None:
        """A deleted training: its history, comparison and selection go."""
        self.metrics.pop(key, None)
        self.compare.discard(key)
        if self.selected == key:
            self.selected = None

    def newest(self) -> str | None:
        return next(reversed(self.jobs), None) if self.jobs else None

    # ------------------------------------------------------------------ metrics

    def run_metrics(self, key: str, stored_rows: Callable[[str], list]) -> RunMetrics:
        """The training's metric history: every job's stored rows (``stored_rows(job_id)``)
        read once, then the live rows added as they come."""
        run = self.metrics.get(key)
        if run is None:
            jobs = self.jobs[key]
            cfg = jobs[-1].params.get("config", {})
            run = RunMetrics(key, jobs[-1].title or key, tokens_per_step=cfg.get("batch_size"))
            for job in jobs:
                run.add_stored_rows(stored_rows(job.id))
            self.metrics[key] = run
        return run

    def last(self, key: str, name: str) -> float | None:
        """The latest value of metric ``name`` (a sweep: its first member's)."""
        run = self.metrics.get(key)
        if run is None:  # history not loaded yet: a finished run's final metrics
            result = self.latest(key).result or {}
            saes = result.get("saes") if isinstance(result, dict) else None
            value = (saes[0].get("metrics") or {}).get(name) if saes else None
            return float(value) if isinstance(value, (int, float)) else None
        for view in run.member_views():
            value = view.last(name)
            if value is not None:
                return value
        return None

    def card_metrics(self, key: str) -> dict[str, float | None]:
        return {m: self.last(key, m) for m in KEY_METRICS}

    # ------------------------------------------------------------------ what is shown

    def card_view(self, key: str, can_resume: bool) -> CardView:
        job = self.latest(key)
        message = job.error or ("" if job.status in ("running", "completed") else job.message)
        fraction = job.fraction if job.total else (1.0 if job.status == "completed" else None)
        return CardView(job.title or job.id, job.status, can_resume, message, fraction,
                        job.progress, job.total, job.eta_s, self.last(key, "tokens_per_s"),
                        self.card_metrics(key))

    def progress_view(self, key: str, payload: dict) -> dict:
        """A live progress event as the card's ``set_progress`` arguments."""
        total = payload.get("total")
        return {"fraction": payload["done"] / total if total else None,
                "step": payload["done"], "total": total, "eta_s": payload.get("eta_s"),
                "tokens_per_s": self.last(key, "tokens_per_s")}

    def resumable(self, can_resume: Callable) -> list[str]:
        """Trainings the app's last stop interrupted that can continue from a checkpoint."""
        return [k for k in self.jobs if self.latest(k).status == "interrupted"
                and can_resume(self.latest(k))]

    @staticmethod
    def banner_text(n_resumable: int) -> str:
        """The banner over the cards ("" hides it)."""
        if not n_resumable:
            return ""
        n = n_resumable
        return (f"{n} training{'s were' if n > 1 else ' was'} interrupted when the app "
                f"stopped. Press <b>Resume</b> on {'their cards' if n > 1 else 'its card'} to "
                "continue from the last checkpoint.")

    def set_compare(self, key: str, on: bool) -> None:
        (self.compare.add if on else self.compare.discard)(key)

    def chart_keys(self) -> list[str]:
        """The trainings the charts draw: the selected one and those ticked to compare."""
        return [k for k in self.jobs if k == self.selected or k in self.compare]

    def charted(self, key: str) -> bool:
        return key == self.selected or key in self.compare
