"""Training chart redraw time with 100k points per series: downsampling + clip-to-view vs not.

Three runs overlaid (raw + smoothed curve each), 100,000 points per series, as a long
training would show. Each "frame" is what a live update costs: 100 new points appended,
``MetricChart.update_data`` (setData in place, incremental smoothing) and a synchronous
repaint. Measured twice in the same process: with the chart's settings (peak
downsampling, clip to view) and with both switched off (the baseline), for the full view
and for a view zoomed on the last 5% (where clip-to-view matters).

    python benchmarks/chart_bench.py [--points 100000] [--frames 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402


def build_runs(n_points: int, n_runs: int = 3):
    from mistudio.ui.training.series import MetricSeries, RunMetrics

    rng = np.random.default_rng(0)
    runs = []
    for r in range(n_runs):
        run = RunMetrics(f"job_{r}", f"run {r}")
        steps = np.arange(n_points, dtype=np.float64)
        loss = 1.0 / (1 + steps * (r + 1) * 1e-4) + rng.normal(0, 0.02, n_points)
        run.series["loss"] = s = MetricSeries()
        s.extend(steps, np.abs(loss), steps * 0.01)
        run.t0 = 0.0
        runs.append(run)
    return runs


def frame_times(chart, runs, options, frames: int, zoom_last: float | None) -> list[float]:
    chart.update_data(runs, options, force=True)
    vb = chart.plot.getPlotItem().getViewBox()
    if zoom_last:
        n = len(runs[0].series["loss"])
        vb.setXRange(n * (1 - zoom_last), n, padding=0)
    else:
        chart.reset_zoom()
    chart.plot.repaint()
    times = []
    rng = np.random.default_rng(1)
    for _ in range(frames):
        t0 = time.perf_counter()
        for run in runs:
            s = run.series["loss"]
            last = s.steps[s.n - 1]
            steps = last + 1 + np.arange(100, dtype=np.float64)
            s.extend(steps, np.abs(rng.normal(0.1, 0.02, 100)), steps * 0.01)
            run.version += 1
        chart.update_data(runs, options)
        chart.plot.repaint()
        QApplication.processEvents()
        times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=100_000)
    ap.add_argument("--frames", type=int, default=20)
    args = ap.parse_args()
    app = QApplication.instance() or QApplication([])

    from mistudio.ui.training.charts import CHART_SPECS, ChartOptions, MetricChart

    results = {}
    for mode in ("optimised", "baseline"):
        for zoom in (None, 0.05):
            runs = build_runs(args.points)
            chart = MetricChart(CHART_SPECS[0])
            chart.resize(900, 450)
            chart.show()
            item = chart.plot.getPlotItem()
            if mode == "baseline":
                item.setDownsampling(auto=False, ds=1)
                item.setClipToView(False)
            opts = ChartOptions(smoothing=0.6, colors={r.job_id: c for r, c in
                                                       zip(runs, ("#1f77b4", "#ff7f0e", "#2ca02c"))})
            frame_times(chart, runs, opts, 3, zoom)  # warm-up
            t = frame_times(chart, runs, opts, args.frames, zoom)
            results[(mode, zoom)] = statistics.median(t)
            chart.close()
            chart.deleteLater()
            app.processEvents()

    print(f"chart redraw, 3 runs x (raw + smoothed) x {args.points:,} points, median of "
          f"{args.frames} live frames (append 100 points, update, repaint):")
    for zoom, label in ((None, "full view"), (0.05, "zoomed on last 5%")):
        opt, base = results[("optimised", zoom)], results[("baseline", zoom)]
        print(f"  {label:<18} downsample+clip {opt * 1000:7.1f} ms   "
              f"plain {base * 1000:7.1f} ms   speed-up x{base / opt:.1f}")


if __name__ == "__main__":
    main()
