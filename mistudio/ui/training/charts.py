"""Live training charts: several runs overlaid, updated in place, downsampled.

Each :class:`MetricChart` keeps one raw and one smoothed curve per (run, metric) and
only calls ``setData`` on them, so a live update never rebuilds the plot. Downsampling
(``peak`` mode, which keeps spikes visible) and clip-to-view keep a 100k-point series
smooth. ViewBox auto-range is switched off by pyqtgraph as soon as the user zooms or
pans, so live updates keep the user's view; "Reset zoom" turns it back on.
Live data is drawn time-sliced: every ``REDRAW_MS`` one chart whose data changed (and
that is scrolled into view) gets its ``setData``, so one event-loop step never pays for
repainting every chart at once; a full pass over ~8 charts takes about a second.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (QCheckBox, QComboBox, QFileDialog, QGridLayout, QHBoxLayout,
                               QLabel, QMessageBox, QPushButton, QScrollArea, QSlider,
                               QToolButton, QVBoxLayout, QWidget)

from mistudio.ui.kit.chart_legend import ChartLegend
from mistudio.ui.kit.palette import SERIES, colour, css
from mistudio.ui.training.series import EmaSmoother, RunMetrics, write_metrics_csv

REDRAW_MS = 120
CHART_HEIGHT = 260
RUN_COLORS = list(SERIES)
METRIC_STYLES = [Qt.SolidLine, Qt.DashLine, Qt.DotLine, Qt.DashDotLine, Qt.DashDotDotLine]
X_MODES = (("step", "Step"), ("tokens", "Tokens"), ("time", "Time (s)"))


@dataclass(frozen=True)
class ChartSpec:
    title: str
    metrics: tuple[str, ...]
    log_y: bool = False
    help: str = ""


# Metric names written by the SAE trainer (listed in mistudio/sae/config.py); a sweep
# prefixes them with the member ("k16/l0"), which the charts show as separate runs.
CHART_SPECS: tuple[ChartSpec, ...] = (
    ChartSpec("Loss", ("loss", "mse", "sparsity_loss", "aux_loss"),
              help="Total loss and its parts: reconstruction MSE, sparsity penalty (L1 for "
                   "ReLU, L0 for JumpReLU) and the AuxK loss (TopK, BatchTopK)."),
    ChartSpec("Explained variance", ("explained_variance",),
              help="1 - residual variance / input variance, as in SAELens."),
    ChartSpec("L0", ("l0",), help="Mean number of active latents per token."),
    ChartSpec("Dead / dense latents", ("dead_fraction", "dense_fraction"),
              help="Fraction of latents that never fired lately (dead) or fire on most tokens."),
    ChartSpec("Learning rate", ("lr",)),
    ChartSpec("Tokens per second", ("tokens_per_s",)),
)
# Series that are axes or bookkeeping, never charts of their own.
NOT_CHARTED = {"tokens", "step", "epoch"}
# Families of series that share one chart: (name prefix, title, help).
GROUPED = (("inner_mse_loss_", "Matryoshka prefix MSE",
            "Reconstruction MSE from the first W latents, one curve per inner width W; "
            "the full SAE's is in Loss (mse)."),)


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
        # Above the plot, not in it: a floating legend covers the curves under its corner.
        self.legend = ChartLegend()
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
        lay.addWidget(self.legend)
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


class TrainingCharts(QWidget):
    """Toolbar (x axis, smoothing, raw line, outliers, export) over a grid of charts."""

    exported = Signal(str)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.options = ChartOptions()
        self.runs: list[RunMetrics] = []
        self.charts: dict[str, MetricChart] = {}
        self._dirty = False
        self._queue: list[MetricChart] = []
        self._views: list[RunMetrics] = []

        self.x_combo = QComboBox()
        for key, label in X_MODES:
            self.x_combo.addItem(label, key)
        self.x_combo.setToolTip("What the horizontal axis counts")
        self.x_combo.currentIndexChanged.connect(self._on_options)
        self.smooth_slider = QSlider(Qt.Horizontal)
        self.smooth_slider.setRange(0, 99)
        self.smooth_slider.setValue(int(self.options.smoothing * 100))
        self.smooth_slider.setFixedWidth(120)
        self.smooth_slider.setToolTip("Exponential moving average weight (0 = none)")
        self.smooth_label = QLabel()
        self.smooth_slider.valueChanged.connect(self._on_options)
        self.raw_box = QCheckBox("Raw line")
        self.raw_box.setChecked(True)
        self.raw_box.setToolTip("Show the unsmoothed values faintly behind the smoothed line")
        self.raw_box.toggled.connect(self._on_options)
        self.outlier_box = QCheckBox("Ignore outliers")
        self.outlier_box.setToolTip("Scale the y axis to 98% of the points")
        self.outlier_box.toggled.connect(self._on_options)
        self.png_btn = QPushButton("Export PNG…")
        self.png_btn.clicked.connect(self._export_png_dialog)
        self.csv_btn = QPushButton("Export CSV…")
        self.csv_btn.clicked.connect(self._export_csv_dialog)
        bar = QHBoxLayout()
        bar.addWidget(QLabel("X axis:"))
        bar.addWidget(self.x_combo)
        bar.addSpacing(12)
        bar.addWidget(QLabel("Smoothing:"))
        bar.addWidget(self.smooth_slider)
        bar.addWidget(self.smooth_label)
        bar.addWidget(self.raw_box)
        bar.addWidget(self.outlier_box)
        bar.addStretch(1)
        bar.addWidget(self.png_btn)
        bar.addWidget(self.csv_btn)

        self.empty = QLabel("Select a training to see its charts. Tick several to compare them.")
        self.empty.setAlignment(Qt.AlignCenter)
        self.empty.setStyleSheet(css("text.muted", "padding: 24px"))
        self.grid_host = QWidget()
        self.grid = QGridLayout(self.grid_host)
        self.grid.setContentsMargins(0, 0, 0, 0)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setVerticalScrollBarPolicy(Qt.ScrollBarAlwaysOn)  # no width change later
        scroll.setWidget(self.grid_host)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(bar)
        lay.addWidget(self.empty)
        lay.addWidget(scroll, 1)
        self._scroll = scroll
        scroll.verticalScrollBar().valueChanged.connect(self.mark_dirty)
        # A PlotWidget costs 30-70 ms to build: the first two charts now, the others one per
        # event-loop turn (``_grow``), so the tab paints at once; set_runs flushes the rest.
        self._pending_specs = list(CHART_SPECS)
        self._grow_scheduled = False
        for _ in range(2):
            self._add_chart(self._pending_specs.pop(0))
        self._schedule_grow()
        self._update_smooth_label()

        self._timer = QTimer(self)
        self._timer.setInterval(REDRAW_MS)
        self._timer.timeout.connect(self._redraw_if_dirty)
        self._timer.start()
        self._show_empty(True)

    def shutdown(self) -> None:
        """Stop the redraw timer (the tab is closing)."""
        self._timer.stop()

    def _schedule_grow(self) -> None:
        if not self._grow_scheduled:
            self._grow_scheduled = True
            QTimer.singleShot(0, self, self._grow)  # dropped if the panel is gone

    def _grow(self) -> None:
        """Add one missing chart (a preset, or one for a metric no chart shows) per turn."""
        self._grow_scheduled = False
        if self._pending_specs:
            self._add_chart(self._pending_specs.pop(0))
        elif not self._ensure_charts_for_unknown_metrics(self.views(), limit=1):
            return
        self._dirty = True  # the new chart is drawn on the next redraw tick
        self._schedule_grow()

    def _add_chart(self, spec: ChartSpec) -> MetricChart:
        chart = MetricChart(spec)
        n = len(self.charts)
        self.grid.addWidget(chart, n // 2, n % 2)
        self.charts[spec.title] = chart
        return chart

    def _show_empty(self, empty: bool) -> None:
        self.empty.setVisible(empty)
        self._scroll.setVisible(not empty)

    # ------------------------------------------------------------------ runs

    def set_runs(self, runs: list[RunMetrics], *, progressive: bool = False) -> None:
        """``progressive``: charts still missing are added one per event-loop turn instead
        of all now (a run with a dozen metrics opened while the window must stay live)."""
        self.runs = list(runs)
        self._show_empty(not self.runs)
        self.redraw(progressive=progressive)

    def views(self) -> list[RunMetrics]:
        """The curves' runs: one per job, or one per member of a sweep job."""
        views = [v for run in self.runs for v in run.member_views()]
        for i, v in enumerate(views):
            self.options.colors[v.job_id] = RUN_COLORS[i % len(RUN_COLORS)]
        return views

    def mark_dirty(self) -> None:
        """New data arrived for some shown run; the next timer tick redraws (throttled)."""
        self._dirty = True

    def _redraw_if_dirty(self) -> None:
        """One chart per tick: the next one, in order, that is stale and in view."""
        if not self._dirty or not self.isVisible():
            return
        if not self._queue:
            self._views = self.views()
            if self._ensure_charts_for_unknown_metrics(self._views, limit=1):
                return  # a new chart is a paint of its own; the next tick goes on
            self._queue = [c for c in self.charts.values()]
        while self._queue:
            chart = self._queue.pop(0)
            has = chart.has_data_for(self._views)
            if chart.isVisible() != (has or chart.spec in CHART_SPECS[:3]):
                chart.setVisible(has or chart.spec in CHART_SPECS[:3])
            if not chart.isVisible() or chart.visibleRegion().isEmpty():
                chart.stale = True  # drawn when scrolled into view
                continue
            chart.stale = False
            if chart.update_data(self._views, self.options):
                break  # something changed: let this paint before the next chart
        if not self._queue:
            self._dirty = any(getattr(c, "stale", False) and not c.visibleRegion().isEmpty()
                              for c in self.charts.values())

    def redraw(self, force: bool = False, *, progressive: bool = False) -> None:
        """Everything now (new selection, changed options)."""
        self._dirty = False
        self._queue = []
        views = self.views()
        if progressive:
            self._schedule_grow()
        else:
            while self._pending_specs:
                self._add_chart(self._pending_specs.pop(0))
            self._ensure_charts_for_unknown_metrics(views)
        for chart in self.charts.values():
            has = chart.has_data_for(views)
            chart.setVisible(has or chart.spec in CHART_SPECS[:3])
            chart.update_data(views, self.options, force=force)

    def _ensure_charts_for_unknown_metrics(self, views: list[RunMetrics],
                                           limit: int | None = None) -> int:
        """Add a chart for each metric no chart shows yet (at most ``limit``)."""
        charted = {m for c in [*self.charts.values(), *self._pending_specs]
                   for m in (c.metrics if isinstance(c, ChartSpec) else c.spec.metrics)}
        added = 0
        for run in views:
            names = run.names()
            for name in names:
                if name not in charted and name not in NOT_CHARTED:
                    if limit is not None and added >= limit:
                        return added
                    spec = self._grouped_spec(name, names, charted)
                    if spec is None:
                        spec = ChartSpec(name.replace("_", " ").capitalize(), (name,))
                    if spec.title in self.charts:  # a family's chart takes a new member
                        self.charts[spec.title].spec = spec
                    else:
                        self._add_chart(spec)
                    charted.update(spec.metrics)
                    added += 1
        return added

    @staticmethod
    def _grouped_spec(name: str, names, charted: set) -> ChartSpec | None:
        """The one chart of a family of series (Matryoshka's per-prefix losses), with all
        of the family's names seen so far."""
        for prefix, title, help_text in GROUPED:
            if name.startswith(prefix):
                family = sorted({n for n in [*names, *charted] if n.startswith(prefix)},
                                key=lambda n: (len(n), n))
                return ChartSpec(title, tuple(family), help=help_text)
        return None

    def _on_options(self) -> None:
        self.options.x_mode = self.x_combo.currentData()
        self.options.smoothing = self.smooth_slider.value() / 100.0
        self.options.show_raw = self.raw_box.isChecked()
        self.options.ignore_outliers = self.outlier_box.isChecked()
        self._update_smooth_label()
        self.redraw()
        if self.sender() in (self.x_combo, self.outlier_box):
            for chart in self.charts.values():
                chart.reset_zoom()

    def _update_smooth_label(self) -> None:
        self.smooth_label.setText(f"{self.smooth_slider.value() / 100:.2f}")

    # ------------------------------------------------------------------ export

    def export_png(self, path: str) -> str:
        if not self.grid_host.grab().save(str(path)):
            raise OSError(f"could not write {path}")
        self.exported.emit(str(path))
        return str(path)

    def export_csv(self, path: str) -> str:
        write_metrics_csv(self.runs, path)
        self.exported.emit(str(path))
        return str(path)

    def _export_png_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export charts as PNG", "charts.png",
                                              "PNG image (*.png)")
        if path:
            self._guarded(self.export_png, path)

    def _export_csv_dialog(self) -> None:
        if not self.runs:
            QMessageBox.information(self, "Nothing to export", "Select a training first.")
            return
        path, _ = QFileDialog.getSaveFileName(self, "Export metrics as CSV", "metrics.csv",
                                              "CSV (*.csv)")
        if path:
            self._guarded(self.export_csv, path)

    def _guarded(self, fn, path: str) -> None:
        try:
            fn(path)
        except OSError as exc:
            QMessageBox.warning(self, "Export failed",
                                f"Could not write {path}: {exc.strerror or exc}. "
                                "Choose a folder you can write to.")
