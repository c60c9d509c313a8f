"""The runs table's data: one row per SAE of every training, with its key settings and the
best and last values of its key metrics; and the "diff only" comparison of two runs'
settings. No Qt here (tested directly).

Metrics come from the store's ``job_metrics`` rows of every job of a training (a resume is
a new job): the points of an earlier job at or past the step a later job resumed from are
dropped, as on the charts, so "best" never counts a stretch the resumed run replaced.
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
        if arch in ("topk", "batchtopk"):
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


def metric_names(members: list[str]) -> list[str]:
    if members == [""]:
        return list(KEY_METRICS)
    return [f"{m}/{name}" for m in members for name in KEY_METRICS]


def merge_job_points(per_job: list[list[tuple[float, float]]]) -> list[tuple[float, float]]:
    """(step, value) points of a training's jobs, oldest job first, as one history."""
    out: list[tuple[float, float]] = []
    for points in per_job:
        if not points:
            continue
        points = sorted(points)
        first = points[0][0]
        out = [p for p in out if p[0] < first] + points
    return out


def best_and_last(points: list[tuple[float, float]], pick) -> tuple[float | None, float | None]:
    values = [v for _s, v in points if v is not None and math.isfinite(v)]
    if not values:
        return None, None
    return pick(values), values[-1]


def load_metric_points(db, job_ids: list[str], names: list[str]
                       ) -> dict[str, dict[str, list[tuple[float, float]]]]:
    """{job_id: {metric name: [(step, value)]}} for the given jobs and names."""
    out: dict[str, dict[str, list[tuple[float, float]]]] = {j: {} for j in job_ids}
    if not job_ids or not names:
        return out
    for i in range(0, len(job_ids), 200):
        chunk = job_ids[i:i + 200]
        sql = (f"select job_id, name, step, value from job_metrics where job_id in "
               f"({','.join('?' * len(chunk))}) and name in ({','.join('?' * len(names))})")
        for job_id, name, step, value in db.execute(sql, [*chunk, *names]).fetchall():
            out[job_id].setdefault(name, []).append((float(step), float(value)))
    return out


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
    names = metric_names([m for m, _ in members])
    points = load_metric_points(db, [j.id for j in jobs], names) if db is not None else {}
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
            merged = merge_job_points([points.get(j.id, {}).get(name, []) for j in jobs])
            row.best[metric], row.last[metric] = best_and_last(merged, pick)
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
