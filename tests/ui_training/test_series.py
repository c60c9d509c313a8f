"""Metric series for the charts: growth, resume truncation, stored history, smoothing, CSV."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from mistudio.ui.training.series import MetricSeries, RunMetrics, ema_smooth, write_metrics_csv


def test_series_grows_past_its_capacity():
    s = MetricSeries(capacity=4)
    for i in range(1000):
        s.append(i, i * 2.0, 100.0 + i)
    steps, values, times = s.view()
    assert len(s) == 1000 and steps[-1] == 999 and values[500] == 1000.0 and times[0] == 100.0


def test_resume_from_checkpoint_drops_orphaned_steps():
    s = MetricSeries()
    for i in range(0, 100, 10):
        s.append(i, float(i), float(i))
    s.append(50, -1.0, 200.0)  # the run resumed from its step-50 checkpoint
    steps, values, _ = s.view()
    assert list(steps) == [0, 10, 20, 30, 40, 50] and values[-1] == -1.0


def test_stored_rows_rebuild_the_live_series():
    live = RunMetrics("j")
    rows, stored = [], []
    t = 1000.0
    for step in list(range(0, 60, 10)) + list(range(30, 90, 10)):  # a resume at step 30
        t += 1
        rows.append({"step": step, "t": t, "values": {"loss": 1.0 / (step + 1), "l0": step}})
        stored += [{"job_id": "j", "step": step, "name": "loss", "value": 1.0 / (step + 1),
                    "t": t}, {"job_id": "j", "step": step, "name": "l0", "value": step, "t": t}]
    live.add_live_rows(rows)
    # The store returns rows ordered by step; RunMetrics must replay them by time.
    stored.sort(key=lambda r: r["step"])
    again = RunMetrics("j")
    again.add_stored_rows(stored)
    for name in ("loss", "l0"):
        for a, b in zip(live.series[name].view(), again.series[name].view()):
            np.testing.assert_array_equal(a, b)
    assert list(again.series["l0"].view()[0]) == [0, 10, 20, 30, 40, 50, 60, 70, 80]


def _ema_reference(values, w):
    out, acc, n = [], 0.0, 0
    for v in values:  # TensorBoard's debiased EMA, written out
        acc = acc * w + (1 - w) * v
        n += 1
        out.append(acc / (1 - w ** n))
    return np.array(out)


@pytest.mark.parametrize("w", [0.0, 0.3, 0.9, 0.99])
def test_ema_matches_a_plain_loop(w):
    values = np.random.default_rng(0).normal(size=500).cumsum()
    np.testing.assert_allclose(ema_smooth(values, w), _ema_reference(values, w), rtol=1e-9,
                               atol=1e-9)


def test_ema_of_a_constant_is_exactly_constant():
    assert np.all(ema_smooth(np.full(1000, 0.00226274), 0.6) == 0.00226274)


def test_ema_skips_nan_points():
    values = np.array([1.0, np.nan, 3.0, 5.0])
    out = ema_smooth(values, 0.5)
    assert np.isnan(out[1])
    np.testing.assert_allclose(out[[0, 2, 3]], _ema_reference([1.0, 3.0, 5.0], 0.5))


def test_x_axes_step_tokens_time():
    r = RunMetrics("j", tokens_per_step=4096)
    r.add_live_rows([{"step": s, "t": 50.0 + s, "values": {"loss": 1.0}} for s in (0, 1, 2)])
    assert list(r.x_values("loss", "step")) == [0, 1, 2]
    assert list(r.x_values("loss", "tokens")) == [0, 4096, 8192]
    assert list(r.x_values("loss", "time")) == [0, 1, 2]
    # A logged "tokens" series wins over tokens_per_step (batches may differ after a resume).
    r.add_live_rows([{"step": s, "t": 60.0, "values": {"tokens": s * 1000}} for s in (3, 4)])
    r2 = RunMetrics("k")
    r2.add_live_rows([{"step": s, "t": 0.0, "values": {"loss": 1.0, "tokens": s * 100}}
                      for s in range(5)])
    assert list(r2.x_values("loss", "tokens")) == [0, 100, 200, 300, 400]


def test_sweep_members_become_runs():
    r = RunMetrics("job_1", "sweep")
    r.add_live_rows([{"step": 1, "t": 0.0, "values": {"k16/l0": 16.0, "k32/l0": 32.0,
                                                      "tokens_per_s": 9.0}}])
    views = {v.job_id: v for v in r.member_views()}
    assert set(views) == {"job_1/k16", "job_1/k32"}
    assert views["job_1/k16"].last("l0") == 16.0 and views["job_1/k32"].last("l0") == 32.0
    assert views["job_1/k32"].last("tokens_per_s") == 9.0
    assert views["job_1/k16"].label == "sweep · k16"


def test_csv_export(tmp_path):
    r = RunMetrics("job_a", "run A", tokens_per_step=10)
    r.add_live_rows([{"step": s, "t": 100.0 + s, "values": {"loss": 0.5 * s}} for s in range(3)])
    path = write_metrics_csv([r], tmp_path / "m.csv")
    rows = list(csv.DictReader(path.open()))
    assert [float(x["value"]) for x in rows] == [0.0, 0.5, 1.0]
    assert [x["tokens"] for x in rows] == ["0", "10", "20"]
    assert rows[0]["run"] == "run A" and rows[2]["time_s"] == "2.000"


def test_incremental_smoothing_equals_the_full_computation():
    from mistudio.ui.training.series import EmaSmoother

    values = np.random.default_rng(1).normal(size=3000).cumsum()
    values[[5, 700]] = np.nan
    sm = EmaSmoother(0.9)
    for end in (10, 11, 500, 1999, 3000):
        out = sm.update(values[:end])
    np.testing.assert_allclose(out, ema_smooth(values, 0.9), rtol=1e-10, equal_nan=True)
    finite = np.isfinite(values)
    np.testing.assert_allclose(out[finite], _ema_reference(values[finite], 0.9), rtol=1e-9)
    # A resume drops points: the smoother starts over and stays right.
    out = sm.update(values[:1200])
    np.testing.assert_allclose(out, ema_smooth(values[:1200], 0.9), rtol=1e-10, equal_nan=True)
