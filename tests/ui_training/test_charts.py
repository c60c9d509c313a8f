"""The live chart widgets: in-place updates, overlays, kept zoom, log scale, readout, export."""

from __future__ import annotations

import csv

import numpy as np
import pyqtgraph as pg
import pytest

from mistudio.ui.training.charts import CHART_SPECS, ChartOptions, MetricChart, TrainingCharts
from mistudio.ui.training.series import RunMetrics


def _run(job_id, n, scale=1.0, t0=1000.0):
    r = RunMetrics(job_id, job_id, tokens_per_step=100)
    r.add_live_rows([{"step": s, "t": t0 + s, "values": {"loss": scale / (s + 1), "l0": 20.0 + s % 3}}
                     for s in range(n)])
    return r


@pytest.fixture
def chart(qtbot):
    c = MetricChart(CHART_SPECS[0])  # Loss
    qtbot.addWidget(c)
    c.resize(500, 300)
    c.show()
    return c


def test_live_updates_reuse_curves_and_keep_the_users_zoom(chart, qtbot):
    run = _run("a", 100)
    opts = ChartOptions(smoothing=0.5)
    chart.update_data([run], opts)
    raw, smooth = chart.curves[("a", "loss")]["raw"], chart.curves[("a", "loss")]["smooth"]
    vb = chart.plot.getPlotItem().getViewBox()
    vb.setXRange(10, 20, padding=0)  # the user zooms: pyqtgraph turns auto-range off
    assert not vb.autoRangeEnabled()[0]
    run.add_live_rows([{"step": s, "t": 2000.0 + s, "values": {"loss": 0.001}}
                       for s in range(100, 200)])
    chart.update_data([run], opts)
    assert chart.curves[("a", "loss")]["raw"] is raw  # updated in place, not rebuilt
    assert chart.curves[("a", "loss")]["smooth"] is smooth
    x, _ = smooth.getOriginalDataset()
    assert len(x) == 200
    x0, x1 = vb.viewRange()[0]
    assert (x0, x1) == pytest.approx((10, 20))
    chart.reset_zoom()
    assert vb.autoRangeEnabled()[0]


def test_overlay_of_runs_and_removal(chart):
    a, b = _run("a", 50), _run("b", 50, scale=2.0)
    opts = ChartOptions(colors={"a": "#ff0000", "b": "#0000ff"})
    chart.update_data([a, b], opts)
    assert set(chart.curves) == {("a", "loss"), ("b", "loss")}
    chart.update_data([b], opts)
    assert set(chart.curves) == {("b", "loss")}
    items = chart.plot.getPlotItem().listDataItems()
    assert len(items) == 2  # raw + smoothed of the one remaining run


def test_smoothing_and_raw_line(chart):
    run = _run("a", 50)
    chart.update_data([run], ChartOptions(smoothing=0.0))
    e = chart.curves[("a", "loss")]
    assert not e["raw"].isVisible()  # nothing to show behind an unsmoothed line
    _, ys = e["smooth"].getOriginalDataset()
    np.testing.assert_allclose(ys, 1.0 / (np.arange(50) + 1))
    chart.update_data([run], ChartOptions(smoothing=0.8, show_raw=True))
    assert e["raw"].isVisible()
    _, ys = e["smooth"].getOriginalDataset()
    assert ys[-1] > 1.0 / 50  # a smoothed falling curve lags above the raw one


def test_log_scale_toggle_masks_non_positive(chart):
    run = RunMetrics("a")
    run.add_live_rows([{"step": s, "t": 0.0, "values": {"loss": v}}
                       for s, v in enumerate([1.0, 0.0, -1.0, 0.1])])
    chart.update_data([run], ChartOptions(smoothing=0.0))
    chart.log_box.setChecked(True)
    assert chart.plot.getPlotItem().ctrl.logYCheck.isChecked()
    _, y = chart.curves[("a", "loss")]["smooth"].getOriginalDataset()
    assert np.isnan(y[1]) and np.isnan(y[2]) and y[3] == pytest.approx(0.1)
    chart.log_box.setChecked(False)
    assert not chart.plot.getPlotItem().ctrl.logYCheck.isChecked()
    _, y = chart.curves[("a", "loss")]["smooth"].getOriginalDataset()
    assert list(y) == [1.0, 0.0, -1.0, pytest.approx(0.1)]


def test_hover_readout_names_run_values_and_step(chart):
    run = _run("a", 100)
    chart.update_data([run], ChartOptions(smoothing=0.0))
    text = chart.readout_at(41.7)
    assert "a" in text and "step 42" in text and f"{1 / 43:.4g}" in text


def test_x_axis_by_tokens(chart):
    run = _run("a", 10)
    chart.update_data([run], ChartOptions(x_mode="tokens"))
    x, _ = chart.curves[("a", "loss")]["smooth"].getOriginalDataset()
    assert list(x) == [s * 100 for s in range(10)]


def test_downsampling_and_clip_to_view_are_on(chart):
    chart.update_data([_run("a", 10)], ChartOptions())
    item = chart.curves[("a", "loss")]["smooth"]
    assert item.opts["autoDownsample"] and item.opts["downsampleMethod"] == "peak"
    assert item.opts["clipToView"]


def test_panel_sweep_members_unknown_metrics_and_export(qtbot, tmp_path):
    panel = TrainingCharts()
    qtbot.addWidget(panel)
    panel.resize(900, 700)
    panel.show()
    run = RunMetrics("job_s", "sweep")
    run.add_live_rows([{"step": s, "t": float(s), "values": {
        "k16/loss": 1.0 / (s + 1), "k32/loss": 0.5 / (s + 1), "k16/cosine_sim": 0.9,
        "k32/cosine_sim": 0.95, "tokens_per_s": 1e4}} for s in range(30)])
    panel.set_runs([run])
    loss = panel.charts["Loss"]
    assert set(loss.curves) == {("job_s/k16", "loss"), ("job_s/k32", "loss")}
    assert "Cosine sim" in panel.charts  # a metric without a preset chart gets its own
    assert loss.curves[("job_s/k16", "loss")]["smooth"].opts["pen"].color().name() != \
        loss.curves[("job_s/k32", "loss")]["smooth"].opts["pen"].color().name()
    # Live rows are only drawn on the throttled timer tick.
    run.add_live_rows([{"step": 30, "t": 30.0, "values": {"k16/loss": 0.01}}])
    panel.mark_dirty()
    qtbot.waitUntil(lambda: len(loss.curves[("job_s/k16", "loss")]["x"]) == 31, timeout=3000)
    png = panel.export_png(str(tmp_path / "c.png"))
    assert (tmp_path / "c.png").stat().st_size > 1000 and png.endswith("c.png")
    panel.export_csv(str(tmp_path / "m.csv"))
    rows = list(csv.DictReader((tmp_path / "m.csv").open()))
    assert {r["metric"] for r in rows} == {"k16/loss", "k32/loss", "k16/cosine_sim",
                                          "k32/cosine_sim", "tokens_per_s"}
    assert sum(1 for r in rows if r["metric"] == "k16/loss") == 31
    # Switching the x axis re-arms auto-range so the new axis is in view.
    panel.x_combo.setCurrentIndex(2)
    assert loss.plot.getPlotItem().getViewBox().autoRangeEnabled()[0]
    assert isinstance(loss.plot, pg.PlotWidget)


def test_a_constant_series_is_shown_around_its_value(chart):
    run = RunMetrics("a")
    run.add_live_rows([{"step": s, "t": 0.0, "values": {"loss": 0.00226}} for s in range(20)])
    chart.update_data([run], ChartOptions())
    y0, y1 = chart.plot.getPlotItem().getViewBox().viewRange()[1]
    assert y0 == pytest.approx(0.00226 * 0.9) and y1 == pytest.approx(0.00226 * 1.1)
    run.add_live_rows([{"step": 20, "t": 0.0, "values": {"loss": 1.0}}])
    chart.update_data([run], ChartOptions())
    assert chart.plot.getPlotItem().getViewBox().autoRangeEnabled()[1]  # follows data again


def test_matryoshka_prefix_losses_share_one_chart(qtbot):
    panel = TrainingCharts()
    qtbot.addWidget(panel)
    panel.resize(900, 700)
    panel.show()
    run = RunMetrics("job_m", "matryoshka")
    run.add_live_rows([{"step": s, "t": float(s), "values": {
        "loss": 3.0, "mse": 1.0, "inner_mse_loss_64": 2.0, "inner_mse_loss_256": 1.5}}
        for s in range(5)])
    panel.set_runs([run])
    chart = panel.charts["Matryoshka prefix MSE"]
    assert chart.spec.metrics == ("inner_mse_loss_64", "inner_mse_loss_256")
    assert set(chart.curves) == {("job_m", "inner_mse_loss_64"), ("job_m", "inner_mse_loss_256")}
    assert not any(t.startswith("Inner mse") for t in panel.charts)  # no chart per width
    # a second run with another width joins the same chart
    other = RunMetrics("job_n", "matryoshka 2")
    other.add_live_rows([{"step": 0, "t": 0.0, "values": {"inner_mse_loss_1024": 1.2}}])
    panel.set_runs([run, other])
    assert panel.charts["Matryoshka prefix MSE"] is chart
    assert ("job_n", "inner_mse_loss_1024") in chart.curves


def test_the_legend_sits_above_the_plot_and_never_covers_a_curve(chart, qtbot):
    a, b = _run("a", 50), _run("b", 50, scale=2.0)
    chart.update_data([a, b], ChartOptions(colors={"a": "#ff0000", "b": "#0000ff"}))
    # Nothing floats over the plot area: no pyqtgraph legend in the plot's scene.
    assert not [i for i in chart.plot.scene().items() if isinstance(i, pg.LegendItem)]
    assert chart.legend.names() == ["a", "b"] and chart.legend.isVisible()
    assert "#ff0000" in chart.legend.text() and "#0000ff" in chart.legend.text()
    legend = chart.legend.geometry()
    assert legend.bottom() < chart.plot.geometry().top()  # laid out above, not on top
    # Many curves: the first ones are named, the rest counted.
    many = [_run(f"r{i}", 10) for i in range(11)]
    chart.update_data(many, ChartOptions())
    assert len(chart.legend.names()) == chart.legend.max_entries
    assert "+3 more" in chart.legend.text()
    chart.update_data([], ChartOptions())
    assert not chart.legend.isVisible()
