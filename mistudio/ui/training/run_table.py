"""The runs table's data: one row per SAE of every training, with its key settings and the
best and last values of its key metrics; and the "diff only" comparison of two runs'
settings. No Qt here (tested directly).

Metrics come from the store's ``job_metrics`` rows of every job of a training (a resume is
a new job), aggregated by SQLite (max/min and the last value through the ``(job_id, name,
step)`` index, never reading every row into Python): the points of an earlier job at or
past the step a later job resumed from are left out, as on the charts, so "best" never
counts a stretch the resumed run replaced.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

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


def best_and_last(db, job_ids: list[str], name: str, pick) -> tuple[float | None, float | None]:
    """Best (``pick`` = max or min) and last value of one metric over a training's jobs
    (oldest first), aggregated by SQLite through the ``(job_id, name, step)`` index."""
    func = "max" if pick is max else "min"
    # a job's points from the first step of a later job (a resume) on were replaced
    cutoffs, cut = {}, 1e300
    for job_id in reversed(job_ids):
        cutoffs[job_id] = cut
        if len(job_ids) > 1:
            (first,) = db.execute("select min(step) from job_metrics where job_id = ? and "
                                  "name = ?", [job_id, name]).fetchone()
            if first is not None:
                cut = min(cut, float(first))
    best = last = None
    for job_id in job_ids:
        args = [job_id, name, cutoffs[job_id]]
        (value,) = db.execute(f"select {func}(value) from job_metrics where job_id = ? and "
                              "name = ? and step < ?", args).fetchone()
        if value is None:
            continue
        best = value if best is None else pick(best, value)
        row = db.execute("select value from job_metrics where job_id = ? and name = ? and "
                         "step < ? and value is not null order by step desc limit 1",
                         args).fetchone()
        if row is not None:
            last = row[0]
    return best, last


def summarize(key: str, jobs: list, record=None, db=None) -> list[RunRow]:
    """The rows of one training: ``jobs`` (JobRecords, oldest first), its training
    record (for the width and tokens) and the store's database (for the metrics)."""
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
            if db is not None:
                row.best[metric], row.last[metric] = best_and_last(db, job_ids, name, pick)
        rows.append(row)
    return rows


def diff_settings(a: dict, b: dict, *, only_differences: bool = True
                  ) -> list[tuple[str, object, object]]:
    """(setting, value in a, value in b), sorted by setting; by default only those that
    differ (a setting missing on one side counts as different)."""
    missing = object()
    out = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key, missing), b.get(key, missing)
        if only_differences and _same(va, vb):
            continue
        out.append((key, None if va is missing else va, None if vb is missing else vb))
    return out


def _same(a, b) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        try:
            return math.isclose(float(a), float(b), rel_tol=1e-12, abs_tol=0.0)
        except (TypeError, ValueError):
            return False
    return a == b


def format_setting(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items()) or "{}"
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value))
    return str(value)
