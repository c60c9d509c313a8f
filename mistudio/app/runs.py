"""The Runs table's query: one row per SAE of every training, with its key settings and the
best and last values of its key metrics (Qt-free; the Training tab shows the rows).

Metrics come from the ``job_metrics`` rows of every job of a training (a resume is a new job),
aggregated by SQLite in the jobs repository (``JobService.best_and_last``): the points of an
earlier job at or past the step a later job resumed from are left out, as on the charts, so
"best" never counts a stretch the resumed run replaced.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

from mistudio.app.jobs import ACTIVE, JobService

#: key metric -> how "best" is chosen (explained variance: highest; the others: lowest)
KEY_METRICS = {"explained_variance": max, "l0": min, "mse": min, "dead_fraction": min}


@dataclass
class RunRow:
    key: str  # the training (tr_...) or job id
    member: str  # the SAE within a sweep ("" for a single SAE)
    name: str
    status: str
    settings: dict  # this SAE's settings (TrainingConfig dict) plus the activation set
    d_sae: int | None = None
    tokens: int | None = None
    best: dict = field(default_factory=dict)
    last: dict = field(default_factory=dict)

    @property
    def architecture(self) -> str:
        return str(self.settings.get("architecture", ""))

    @property
    def lr(self) -> float | None:
        return _num(self.settings.get("lr"))

    def sparsity_setting(self) -> tuple[str, float | None]:
        """(label, value) of the setting that controls sparsity for this architecture."""
        arch = self.architecture
        if arch in ("topk", "batchtopk", "matryoshka_batchtopk"):
            return "k", _num(self.settings.get("k"))
        if arch == "jumprelu":
            return "L0 coef.", _num(self.settings.get("l0_coefficient"))
        return "L1", _num(self.settings.get("l1_coefficient"))


def _num(v) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v) if math.isfinite(v) else None


def member_configs(config: dict) -> list[tuple[str, dict]]:
    """[(member name, its settings)]: one for a single SAE ("" name), one per sweep value."""
    from mistudio.sae.config import TrainingConfig  # torch-free

    cfg = TrainingConfig.from_dict(config)
    members = cfg.members()
    if len(members) == 1 and not cfg.sweep:
        return [("", members[0].to_dict())]
    return [(m.member_name, m.to_dict()) for m in members]


def _summarize(jobs_service: JobService, key: str, jobs: list, record=None) -> list[RunRow]:
    """The rows of one training: ``jobs`` (JobRecords, oldest first) and its training
    record (for the width and tokens); metrics aggregated in the jobs table."""
    latest = jobs[-1]
    config = dict(latest.params.get("config") or {})
    if not config:
        return []
    try:
        members = member_configs(config)
    except Exception:  # settings this version cannot read: still list the run
        members = [("", config)]
    job_ids = [j.id for j in jobs]
    d_in = getattr(record, "d_in", None)
    result = latest.result if isinstance(latest.result, dict) else {}
    trained = {s.get("member"): s for s in result.get("saes", [])}
    tokens = int(getattr(record, "tokens", 0) or 0)
    batch = int(config.get("batch_size") or 0)
    if latest.progress and batch:
        tokens = max(tokens, int(latest.progress) * batch)
    title = latest.title or key
    rows = []
    for member, settings in members:
        settings = {**settings, "activation_set": latest.params.get("activation_path", "")}
        saved = trained.get(member or "sae") or {}
        d_sae = saved.get("d_sae") or settings.get("d_sae") or (
            int(round(float(settings.get("expansion_factor") or 0) * d_in)) if d_in else None)
        row = RunRow(key=key, member=member, name=f"{title} · {member}" if member else title,
                     status=latest.status, settings=settings, d_sae=d_sae or None,
                     tokens=tokens or None)
        for metric, pick in KEY_METRICS.items():
            name = f"{member}/{metric}" if member else metric
            row.best[metric], row.last[metric] = jobs_service.best_and_last(
                job_ids, name, higher_is_better=pick is max)
        rows.append(row)
    return rows


class RunsService:
    """``studio.runs``: the Runs table's rows."""

    def __init__(self, *, jobs: JobService):
        self.jobs = jobs

    def summarize(self, key: str, jobs: list, record=None) -> list[RunRow]:
        return _summarize(self.jobs, key, jobs, record)

    def rows(self, jobs_by_key: dict[str, list], cache: dict, records: dict | None = None,
             cancelled: Callable[[], bool] = lambda: False) -> tuple[list[RunRow], dict]:
        """(rows, new cache): every training in ``jobs_by_key`` (key -> its JobRecords,
        oldest first), re-read from the jobs table; ``records`` maps a key to its training
        record. ``cache`` maps a key to (its jobs and statuses, rows) from an earlier call:
        a finished training's rows are reused. Any thread."""
        records = records or {}
        rows, new_cache = [], {}
        for key, jobs in jobs_by_key.items():
            if cancelled():
                break
            jobs = [self.jobs.latest(j) for j in jobs]
            signature = tuple((j.id, j.status) for j in jobs)
            hit = cache.get(key)
            if hit is not None and hit[0] == signature and jobs[-1].status not in ACTIVE:
                new_cache[key] = hit  # a finished training's numbers do not change
            else:
                new_cache[key] = (signature, self.summarize(key, jobs, records.get(key)))
            rows += new_cache[key][1]
        return rows, new_cache
