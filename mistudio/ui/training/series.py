"""Metric history of training runs, held as growing numpy arrays for the charts.

No Qt here: a :class:`RunMetrics` takes rows from the live ``JobBridge.metrics`` signal
(``{step, values: {name: value}, t}``) or from the store (``{step, name, value, t}``)
and keeps one :class:`MetricSeries` per metric name. Appends are amortised O(1); the
charts read slices without copying. When a run resumes from a checkpoint its steps go
back in time; the series then drops the points after the resume step, so the curve shows
what the resumed run actually did (as TensorBoard purges orphaned steps).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Iterable

import numpy as np

from mistudio.paths import atomic_path


class MetricSeries:
    __slots__ = ("steps", "values", "times", "n", "generation")

    def __init__(self, capacity: int = 256):
        self.steps = np.empty(capacity, dtype=np.float64)
        self.values = np.empty(capacity, dtype=np.float64)
        self.times = np.empty(capacity, dtype=np.float64)
        self.n = 0
        self.generation = 0  # bumped when points are dropped (a resume): caches restart

    def __len__(self) -> int:
        return self.n

    def _grow(self, need: int) -> None:
        cap = len(self.steps)
        if need <= cap:
            return
        new_cap = max(need, cap * 2)
        for name in ("steps", "values", "times"):
            old = getattr(self, name)
            arr = np.empty(new_cap, dtype=np.float64)
            arr[: self.n] = old[: self.n]
            setattr(self, name, arr)

    def append(self, step: float, value: float, t: float) -> None:
        if self.n and step <= self.steps[self.n - 1]:
            # A resume from a checkpoint replays steps: drop the orphaned tail.
            self.n = int(np.searchsorted(self.steps[: self.n], step, side="left"))
            self.generation += 1
        self._grow(self.n + 1)
        self.steps[self.n] = step
        self.values[self.n] = value
        self.times[self.n] = t
        self.n += 1

    def extend(self, steps: np.ndarray, values: np.ndarray, times: np.ndarray) -> None:
        """Bulk append of points already in increasing step order (a stored history)."""
        steps = np.asarray(steps, dtype=np.float64)
        if not len(steps):
            return
        if self.n and steps[0] <= self.steps[self.n - 1]:
            self.n = int(np.searchsorted(self.steps[: self.n], steps[0], side="left"))
            self.generation += 1
        m = len(steps)
        self._grow(self.n + m)
        self.steps[self.n: self.n + m] = steps
        self.values[self.n: self.n + m] = values
        self.times[self.n: self.n + m] = times
        self.n += m

    def view(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.steps[: self.n], self.values[: self.n], self.times[: self.n]

    @property
    def last(self) -> float | None:
        return float(self.values[self.n - 1]) if self.n else None


class RunMetrics:
    """All metric series of one training job."""

    def __init__(self, job_id: str, label: str = "", *, tokens_per_step: float | None = None):
        self.job_id = job_id
        self.label = label or job_id
        self.tokens_per_step = tokens_per_step
        self.series: dict[str, MetricSeries] = {}
        self.t0: float | None = None
        self.version = 0  # bumped on every change; charts redraw only what changed

    def names(self) -> list[str]:
        return [k for k, s in self.series.items() if len(s)]

    def _series(self, name: str) -> MetricSeries:
        s = self.series.get(name)
        if s is None:
            s = self.series[name] = MetricSeries()
        return s

    def add_live_rows(self, rows: Iterable[dict]) -> None:
        """Rows of the bridge's ``metrics`` signal: {step, values: {name: value}, t}."""
        for row in rows:
            t = float(row.get("t") or 0.0)
            if self.t0 is None:
                self.t0 = t
            step = float(row["step"])
            for name, value in row["values"].items():
                self._series(name).append(step, float(value), t)
        self.version += 1

    def add_stored_rows(self, rows: Iterable[dict]) -> None:
        """Rows of ``studio.jobs.metrics(job_id)``: {step, name, value, t}, any order."""
        by_name: dict[str, list[tuple[float, float, float]]] = {}
        for r in rows:
            by_name.setdefault(r["name"], []).append(
                (float(r["t"] or 0.0), float(r["step"]), float(r["value"])))
        self.add_stored_series(by_name)

    def add_stored_series(self, by_name: dict[str, list]) -> None:
        """Rows of ``studio.jobs.metric_series(job_id)``: per name, ``(t, step, value)``
        points (any order)."""
        by_name = {name: pts for name, pts in by_name.items() if len(pts)}
        if not by_name:
            return
        arrays = {name: np.asarray(pts, dtype=np.float64) for name, pts in by_name.items()}
        t_min = min(float(arr[:, 0].min()) for arr in arrays.values())
        self.t0 = t_min if self.t0 is None else min(self.t0, t_min)
        for name, arr in arrays.items():
            arr = arr[np.argsort(arr[:, 0], kind="stable")]  # in the order they happened
            times, steps, values = arr[:, 0], arr[:, 1], arr[:, 2]
            if len(steps) > 1 and np.any(np.diff(steps) <= 0):
                s = self._series(name)
                for st, v, t in zip(steps, values, times):  # replay resumes faithfully
                    s.append(st, v, t)
            else:
                self._series(name).extend(steps, values, times)
        self.version += 1

    def member_views(self) -> list["RunMetrics"]:
        """A sweep logs ``member/metric``; give one run per member (sharing the series),
        each also holding the run's shared series (tokens, tokens_per_s, ...)."""
        members: dict[str, dict[str, MetricSeries]] = {}
        shared: dict[str, MetricSeries] = {}
        for name, s in self.series.items():
            member, sep, metric = name.partition("/")
            if sep:
                members.setdefault(member, {})[metric] = s
            else:
                shared[name] = s
        if not members:
            return [self]
        views = []
        for member, series in members.items():
            v = RunMetrics(f"{self.job_id}/{member}", f"{self.label} · {member}",
                           tokens_per_step=self.tokens_per_step)
            v.series = {**shared, **series}
            v.t0, v.version = self.t0, self.version
            views.append(v)
        return views

    def last(self, name: str) -> float | None:
        s = self.series.get(name)
        return s.last if s else None

    @property
    def has_token_axis(self) -> bool:
        tok = self.series.get("tokens")
        return bool(self.tokens_per_step) or (tok is not None and len(tok) >= 2)

    def x_values(self, name: str, x_mode: str) -> np.ndarray:
        """The x coordinates of a series: 'step', 'tokens' or 'time' (s since the start)."""
        steps, _values, times = self.series[name].view()
        if x_mode == "time":
            return times - (self.t0 or (times[0] if len(times) else 0.0))
        if x_mode == "tokens":
            tok = self.series.get("tokens")
            if tok is not None and len(tok) >= 2 and name != "tokens":
                ts, tv, _ = tok.view()
                return np.interp(steps, ts, tv)
            if self.tokens_per_step:
                return steps * self.tokens_per_step
        return steps


def _ema(x: np.ndarray, weight: float, prev: float = 0.0) -> np.ndarray:
    """y[n] = w*y[n-1] + (1-w)*x[n] from y[-1] = prev, vectorised in chunks (numpy only:
    importing scipy.signal for lfilter would stall the GUI for seconds)."""
    out = np.empty_like(x)
    # Within a chunk, y[j] = w^(j+1) y_prev + (1-w) w^j cumsum(x[i] w^-i); the chunk length
    # keeps w^-i far from overflow.
    chunk = int(max(1, min(256, 150 / max(1e-12, -np.log10(weight)))))
    powers = weight ** np.arange(chunk, dtype=np.float64)
    inv = 1.0 / powers
    for start in range(0, len(x), chunk):
        seg = x[start:start + chunk]
        m = len(seg)
        acc = np.cumsum(seg * inv[:m])
        y = powers[:m] * (weight * prev + (1 - weight) * acc)
        out[start:start + m] = y
        prev = y[-1]
    return out


class EmaSmoother:
    """TensorBoard's debiased exponential moving average, extended incrementally.

    ``update(values)`` returns the smoothed series of all ``values``; when they extend the
    previous call's (live training), only the new points are computed. Non-finite points
    are skipped (no decay) and come back as NaN.
    """

    def __init__(self, weight: float):
        self.weight = min(max(float(weight), 0.0), 0.999)
        self._reset()

    def _reset(self) -> None:
        self.n = 0  # points consumed
        self.count = 0  # finite points consumed
        self.prev = 0.0  # the undebiased EMA after them
        self.lo, self.hi = np.inf, -np.inf
        self.out = np.empty(0)
        self.first = None

    def update(self, values: np.ndarray) -> np.ndarray:
        values = np.asarray(values, dtype=np.float64)
        w = self.weight
        if w <= 0 or len(values) < 2:
            return values
        if len(values) < self.n or (self.n and values[0] != self.first):
            self._reset()  # not an extension (a resume dropped points): start over
        if self.n == 0 and len(values):
            self.first = values[0]
        tail = values[self.n:]
        finite = np.isfinite(tail)
        x = tail[finite]
        smooth_tail = np.full_like(tail, np.nan)
        if len(x):
            ema = _ema(x, w, self.prev)
            k = np.arange(self.count + 1, self.count + len(x) + 1, dtype=np.float64)
            with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
                smooth = ema / (1.0 - w ** k)  # remove the bias towards the zero start
            # An EMA is a weighted mean of the points so far, so it lies within their
            # range; the clip removes rounding noise (a constant stays exactly constant).
            lo = np.minimum.accumulate(np.minimum(x, self.lo))
            hi = np.maximum.accumulate(np.maximum(x, self.hi))
            smooth_tail[finite] = np.clip(smooth, lo, hi)
            self.prev, self.count = float(ema[-1]), self.count + len(x)
            self.lo, self.hi = float(lo[-1]), float(hi[-1])
        self.out = np.concatenate([self.out[: self.n], smooth_tail])
        self.n = len(values)
        return self.out


def ema_smooth(values: np.ndarray, weight: float) -> np.ndarray:
    """TensorBoard's debiased exponential moving average (weight 0: no smoothing)."""
    return EmaSmoother(weight).update(values)


def write_metrics_csv(runs: Iterable[RunMetrics], path: str | Path) -> Path:
    """Long-format CSV (run, job_id, metric, step, tokens, time_s, value), written atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(["run", "job_id", "metric", "step", "tokens", "time_s", "value"])
            for run in runs:
                for name in sorted(run.names()):
                    steps, values, _times = run.series[name].view()
                    tokens = run.x_values(name, "tokens")
                    secs = run.x_values(name, "time")
                    has_tokens = run.has_token_axis
                    for i in range(len(steps)):
                        w.writerow([run.label, run.job_id, name, int(steps[i]),
                                    int(tokens[i]) if has_tokens else "",
                                    f"{secs[i]:.3f}", repr(float(values[i]))])
    return path
