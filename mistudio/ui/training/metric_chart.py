"""One live training chart: the metrics of one :class:`ChartSpec` for every shown run.

Each :class:`MetricChart` keeps one raw and one smoothed curve per (run, metric) and
only calls ``setData`` on them, so a live update never rebuilds the plot. Downsampling
(``peak`` mode, which keeps spikes visible) and clip-to-view keep a 100k-point series
smooth. ViewBox auto-range is switched off by pyqtgraph as soon as the user zooms or
pans, so live updates keep the user's view; "Reset zoom" turns it back on. The panel of
charts is :class:`~mistudio.ui.training.charts.TrainingCharts`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QCheckBox, QHBoxLayout, QLabel, QToolButton, QVBoxLayout, QWidget

from mistudio.ui.kit.chart_legend import ChartLegend
from mistudio.ui.kit.palette import SERIES, colour, css
from mistudio.ui.training.series import EmaSmoother, RunMetrics

CHART_HEIGHT = 260
RUN_COLORS = list(SERIES)
METRIC_STYLES = [Qt.SolidLine, Qt.DashLine, Qt.DotLine, Qt.DashDotLine, Qt.DashDotDotLine]
X_MODES = (("step", "Step"), ("tokens", "Tokens"), ("time", "Time (s)"))
#: The y axis's width, fixed: pyqtgraph widens it to the tick labels it finds while painting,
#: which relaid the chart out and painted it again (and again for the next width).
Y_AXIS_PX = 58


@dataclass(frozen=True)
class ChartSpec:
    title: str
    metrics: tuple[str, ...]
    log_y: bool = False
    help: str = ""



@dataclass
class ChartOptions:
    x_mode: str = "step"
    smoothing: float = 0.6
    show_raw: bool = True
    ignore_outliers: bool = False
    colors: dict = field(default_factory=dict)  # job_id -> color

    def key(self) -> tuple:
        return (self.x_mode, self.smoothing, self.show_raw)


def _color(color: str, alpha: int) -> pg.QtGui.QColor:
    c = pg.mkColor(color)
    c.setAlpha(alpha)
    return c


class MetricChart(QWidget):
    """One plot: the spec's metrics for every shown run."""

    def __init__(self, spec: ChartSpec, parent: QWidget | None = None):
        super().__init__(parent)
        self.spec = spec
        self.setObjectName(f"chart:{spec.title}")
        self.plot = pg.PlotWidget(background="w")
        self.plot.setMinimumHeight(180)
        # A fixed height keeps the other charts' geometry when one is added below them, so
        # adding a chart repaints only itself (a relayout would repaint every chart).
        self.setFixedHeight(CHART_HEIGHT)
        item = self.plot.getPlotItem()
        item.showGrid(x=True, y=True, alpha=0.25)
        item.setDownsampling(auto=True, mode="peak")
        item.setClipToView(True)
        item.getAxis("left").setWidth(Y_AXIS_PX)
        item.setLabel("bottom", X_MODES[0][1])  # now, not with the first data (a relayout)
        # Above the plot, not in it: a floating legend covers the curves under its corner. Its
        # two lines are reserved, so the first entries do not shrink the plot (a relayout and a
        # second paint of it).
        self.legend = ChartLegend()
        legend_box = QWidget()
        legend_lay = QVBoxLayout(legend_box)
        legend_lay.setContentsMargins(0, 0, 0, 0)
        legend_lay.addWidget(self.legend)
        legend_lay.addStretch(1)
        legend_box.setMinimumHeight(2 * self.legend.fontMetrics().lineSpacing() + 2)
        self.vline = pg.InfiniteLine(angle=90, pen=pg.mkPen(colour("guide"), style=Qt.DashLine))
        self.vline.setVisible(False)
        item.addItem(self.vline, ignoreBounds=True)

        self.title = QLabel(f"<b>{spec.title}</b>")
        self.title.setToolTip(spec.help)
        self.log_box = QCheckBox("log")
        self.log_box.setToolTip("Logarithmic y axis")
        self.log_box.setChecked(spec.log_y)
        self.log_box.toggled.connect(self._on_log)
        self.reset_btn = QToolButton(text="Reset zoom")
        self.reset_btn.setToolTip("Fit the data again (live updates then follow it)")
        self.reset_btn.clicked.connect(self.reset_zoom)
        self.readout = QLabel(" ")
        self.readout.setObjectName("readout")
        self.readout.setTextFormat(Qt.RichText)
        self.readout.setStyleSheet(css("text.secondary", "font-size: 8pt"))
        header = QHBoxLayout()
        header.addWidget(self.title)
        header.addStretch(1)
        header.addWidget(self.log_box)
        header.addWidget(self.reset_btn)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.addLayout(header)
        lay.addWidget(legend_box)
        lay.addWidget(self.plot, 1)
        lay.addWidget(self.readout)

        # (job_id, metric) -> {"raw", "smooth", "version", "x", "y", "ys", "label"}
        self.curves: dict[tuple[str, str], dict] = {}
        self.stale = False
        self._flat_range = False
        self._runs: dict[str, RunMetrics] = {}
        self._options = ChartOptions()
        self._mouse = pg.SignalProxy(self.plot.scene().sigMouseMoved, rateLimit=30,
                                     slot=self._on_mouse)
        item.setLogMode(y=spec.log_y)

    # ------------------------------------------------------------------ data

    @property
    def log_y(self) -> bool:
        return self.log_box.isChecked()

    def has_data_for(self, runs: list[RunMetrics]) -> bool:
        return any(run.series.get(m) is not None and len(run.series[m])
                   for run in runs for m in self.spec.metrics)

    def update_data(self, runs: list[RunMetrics], options: ChartOptions,
                    force: bool = False) -> bool:
        """Add, update or remove curves so the chart shows ``runs``; cheap when unchanged.
        Returns whether anything changed."""
        self._runs = {r.job_id: r for r in runs}
        self._options = options
        wanted = set()
        changed = False
        n_metrics = sum(1 for m in self.spec.metrics
                        if any(len(r.series.get(m, ())) for r in runs))
        for run in runs:
            for mi, metric in enumerate(self.spec.metrics):
                s = run.series.get(metric)
                if s is None or not len(s):
                    continue
                key = (run.job_id, metric)
                wanted.add(key)
                entry = self.curves.get(key)
                color = options.colors.get(run.job_id, RUN_COLORS[0])
                label = run.label if n_metrics <= 1 else f"{run.label} · {metric}"
                if entry is None:
                    style = METRIC_STYLES[mi % len(METRIC_STYLES)]
                    raw = pg.PlotDataItem(pen=pg.mkPen(_color(color, 70), width=1, style=style))
                    smooth = pg.PlotDataItem(pen=pg.mkPen(color, width=2, style=style),
                                             name=label)
                    self.plot.getPlotItem().addItem(raw)
                    self.plot.getPlotItem().addItem(smooth)
                    entry = self.curves[key] = {"raw": raw, "smooth": smooth, "version": None,
                                                "label": label, "color": color,
                                                "style": style}
                stamp = (run.version, options.key(), self.log_y, label)
                if not force and entry["version"] == stamp:
                    continue
                entry["version"] = stamp
                changed = True
                x = run.x_values(metric, options.x_mode)
                _steps, y, _times = s.view()
                smoother = entry.get("smoother")
                if (smoother is None or smoother.weight != min(options.smoothing, 0.999)
                        or entry.get("generation") != s.generation):
                    smoother = entry["smoother"] = EmaSmoother(options.smoothing)
                    entry["generation"] = s.generation
                ys = smoother.update(y)
                entry.update(x=x, y=y, ys=ys, steps=_steps, times=_times - (run.t0 or 0.0))
                y_plot, ys_plot = (np.where(y > 0, y, np.nan), np.where(ys > 0, ys, np.nan)) \
                    if self.log_y else (y, ys)
                entry["raw"].setVisible(options.show_raw and options.smoothing > 0)
                if options.show_raw and options.smoothing > 0:
                    entry["raw"].setData(x, y_plot)
                # A run with one or two points draws no line: mark the points instead.
                few = len(x) < 3
                if entry.get("few") != few:
                    entry["few"] = few
                    entry["smooth"].setSymbol("o" if few else None)
                    entry["smooth"].setSymbolSize(6)
                    entry["smooth"].setSymbolBrush(color)
                    entry["smooth"].setSymbolPen(color)
                entry["smooth"].setData(x, ys_plot)
        for key in [k for k in self.curves if k not in wanted]:
            changed = True
            entry = self.curves.pop(key)
            self.plot.getPlotItem().removeItem(entry["raw"])
            self.plot.getPlotItem().removeItem(entry["smooth"])
        # One run: its metrics name the lines (the run is the selected card); several: both.
        one_run = len({job_id for job_id, _m in self.curves}) == 1
        self.legend.set_entries([(metric if one_run and n_metrics > 1 else e["label"],
                                  e["color"], e["style"])
                                 for (_job, metric), e in self.curves.items()])
        vb = self.plot.getPlotItem().getViewBox()
        y_auto = vb.autoRangeEnabled()[1]
        want = 0.98 if options.ignore_outliers else 1.0
        if y_auto and y_auto != want:  # respect a user zoom: only adjust if auto-range is on
            vb.enableAutoRange(axis=pg.ViewBox.YAxis, enable=want)
        if changed:
            self._fit_flat_series(vb, y_auto)
            # The new range now, not in the paint: a range found while painting changes the
            # axes and paints the chart a second time.
            vb.prepareForPaint()
        label = dict(X_MODES)[options.x_mode]
        if self.plot.getPlotItem().getAxis("bottom").labelText != label:
            self.plot.getPlotItem().setLabel("bottom", label)
        return changed

    def _fit_flat_series(self, vb, y_auto) -> None:
        """pyqtgraph shows a constant series (a fixed learning rate) as +-0.5 around it, so
        1e-3 reads as 0; give it +-10% of its value instead, until the data varies."""
        ys = [e["ys"] for e in self.curves.values() if len(e.get("ys", ()))]
        finite = [y[np.isfinite(y)] for y in ys]
        finite = [y for y in finite if len(y)]
        if not finite:
            return
        lo = min(float(y.min()) for y in finite)
        hi = max(float(y.max()) for y in finite)
        flat = hi - lo <= 1e-9 * max(abs(hi), abs(lo), 1e-30)
        if flat and (y_auto or self._flat_range) and lo != 0:
            pad = 0.1 * abs(lo)
            if self.log_y:
                vb.setYRange(np.log10(abs(lo) * 0.8), np.log10(abs(lo) * 1.25), padding=0)
            else:
                vb.setYRange(lo - pad, hi + pad, padding=0)  # turns y auto-range off
            self._flat_range = True
        elif self._flat_range and not flat:
            self._flat_range = False
            vb.enableAutoRange(axis=pg.ViewBox.YAxis,
                               enable=0.98 if self._options.ignore_outliers else True)

    def reset_zoom(self) -> None:
        self._flat_range = False
        vb = self.plot.getPlotItem().getViewBox()
        vb.enableAutoRange(axis=pg.ViewBox.XAxis, enable=True)
        vb.enableAutoRange(axis=pg.ViewBox.YAxis,
                           enable=0.98 if self._options.ignore_outliers else True)

    def _on_log(self, on: bool) -> None:
        self.plot.getPlotItem().setLogMode(y=on)
        self.update_data(list(self._runs.values()), self._options, force=True)
        self.reset_zoom()

    # ------------------------------------------------------------------ hover readout

    def readout_at(self, x: float) -> str:
        """Values of every curve nearest to ``x`` (html): run, smoothed, raw, step, time."""
        parts = []
        for (job_id, metric), e in self.curves.items():
            xs = e.get("x")
            if xs is None or not len(xs):
                continue
            i = int(np.clip(np.searchsorted(xs, x), 0, len(xs) - 1))
            if i > 0 and abs(xs[i - 1] - x) < abs(xs[i] - x):
                i -= 1
            color = self._options.colors.get(job_id, RUN_COLORS[0])
            parts.append(f"<span style='color:{color}'>■</span> {e['label']}: "
                         f"<b>{_fmt(e['ys'][i])}</b> (raw {_fmt(e['y'][i])}) "
                         f"step {int(e['steps'][i]):,}, {e['times'][i]:.0f} s")
        return "<br>".join(parts)

    def _on_mouse(self, event) -> None:
        pos = event[0]
        vb = self.plot.getPlotItem().getViewBox()
        if not self.plot.sceneBoundingRect().contains(pos) or not self.curves:
            return
        x = vb.mapSceneToView(pos).x()
        self.vline.setPos(x)
        self.vline.setVisible(True)
        self.readout.setText(self.readout_at(x) or " ")


def _fmt(v: float) -> str:
    if not np.isfinite(v):
        return "–"
    a = abs(v)
    if a != 0 and (a < 1e-3 or a >= 1e5):
        return f"{v:.3e}"
    return f"{v:.4g}"
