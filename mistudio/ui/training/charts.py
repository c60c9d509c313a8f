"""Live training charts: several runs overlaid, updated in place, downsampled.

Each chart is a :class:`~mistudio.ui.training.metric_chart.MetricChart` (curves updated
in place, downsampled, the user's zoom kept). Live data is drawn time-sliced: every ``REDRAW_MS`` one chart whose data changed (and
that is scrolled into view) gets its ``setData``, so one event-loop step never pays for
repainting every chart at once; a full pass over ~8 charts takes about a second.
Building the charts (a PlotWidget is ~20 ms) and drawing a newly selected run (a chart's
first paint of 2,000 points is 10-35 ms) go through a :class:`~mistudio.ui.training.pacer.Pacer`,
one chart per event-loop turn, so the window repaints between two charts.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (QCheckBox, QComboBox, QFileDialog, QGridLayout, QHBoxLayout,
                               QLabel, QMessageBox, QPushButton, QScrollArea, QSizePolicy,
                               QSlider, QVBoxLayout, QWidget)

from mistudio.ui.kit.palette import css
from mistudio.ui.training.metric_chart import (CHART_HEIGHT, RUN_COLORS, X_MODES,
                                               ChartOptions, ChartSpec, MetricChart)
from mistudio.ui.training.pacer import Pacer
from mistudio.ui.training.series import RunMetrics, write_metrics_csv

REDRAW_MS = 120
EMPTY_TEXT = "Select a training to see its charts. Tick several to compare them."
LOADING_TEXT = "Reading the stored metrics…"


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


class TrainingCharts(QWidget):
    """Toolbar (x axis, smoothing, raw line, outliers, export) over a grid of charts."""

    exported = Signal(str)

    def __init__(self, parent: QWidget | None = None, *, pacer: Pacer | None = None):
        super().__init__(parent)
        self.pacer = pacer or Pacer(self)  # the Training tab shares its own with the cards
        self.options = ChartOptions()
        self.runs: list[RunMetrics] = []
        self.charts: dict[str, MetricChart] = {}
        self._dirty = False
        self._queue: list[MetricChart] = []  # the live redraw timer's pass
        self._draw_queue: list[MetricChart] = []  # a new selection's pass (pacer steps)
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
        # "Reading the stored metrics…" in the toolbar, not in a line over the charts: that
        # line going away moved the charts up and repainted every one of them.
        # It takes the stretch's place and asks no width (a wider toolbar moved the splitter).
        self.loading_note = QLabel()
        self.loading_note.setStyleSheet(css("text.muted"))
        self.loading_note.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Preferred)
        bar.addWidget(self.loading_note, 1)
        bar.addWidget(self.png_btn)
        bar.addWidget(self.csv_btn)

        self.empty = QLabel(EMPTY_TEXT)
        self.empty.setAlignment(Qt.AlignCenter)
        self.empty.setStyleSheet(css("text.muted", "padding: 24px"))
        self.grid_host = QWidget()
        self.grid = QGridLayout(self.grid_host)
        self.grid.setContentsMargins(0, 0, 0, 0)
        # Top-aligned, and the host made tall enough before a chart is added (_add_chart):
        # otherwise each new row first squeezed then moved every chart, repainting them all.
        self.grid.setAlignment(Qt.AlignTop)
        # ...and growing the host repaints only what it adds, not every chart in view.
        self.grid_host.setAttribute(Qt.WA_StaticContents)
        for column in (0, 1):  # two equal columns from the first chart on (no resize later)
            self.grid.setColumnStretch(column, 1)
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
        # A PlotWidget costs ~20 ms to build: none now (the tab paints first), then one per
        # pacer step (``_grow_step``); set_runs without ``progressive`` flushes the rest.
        self._pending_specs = list(CHART_SPECS)
        self.pacer.add(self._grow_step)
        self._update_smooth_label()

        self._timer = QTimer(self)
        self._timer.setInterval(REDRAW_MS)
        self._timer.timeout.connect(self._redraw_if_dirty)
        self._timer.start()
        self._show_empty(True)

    def shutdown(self) -> None:
        """Stop the redraw timer and the pacer's steps (the tab is closing)."""
        self._timer.stop()
        self.pacer.stop()

    def _grow_step(self) -> bool:
        """Add one missing chart (a preset, or one for a metric no chart shows): a pacer
        step; whether another may be missing. Only while the charts are on screen: each new
        chart then paints on its own (charts built while hidden all paint at once when shown,
        ~30 ms each the first time); ``showEvent`` and ``set_runs`` start it again."""
        if not self._scroll.isVisible():
            return False
        if self._pending_specs:
            chart = self._add_chart(self._pending_specs.pop(0))
        else:
            before = set(self.charts)
            if not self._ensure_charts_for_unknown_metrics(self.views(), limit=1):
                return False
            chart = next((self.charts[t] for t in self.charts if t not in before), None)
        if chart is not None and self.runs:
            self._draw_queue.append(chart)  # drawn by its own step: a paint of its own
            self.pacer.add(self._draw_step)
        return True

    def _add_chart(self, spec: ChartSpec) -> MetricChart:
        chart = MetricChart(spec)
        n = len(self.charts)
        rows = n // 2 + 1
        need = rows * CHART_HEIGHT + (rows - 1) * max(0, self.grid.verticalSpacing())
        if self.grid_host.minimumHeight() < need:
            self.grid_host.setMinimumHeight(need)
            if self.grid_host.height() < need:
                self.grid_host.resize(self.grid_host.width(), need)
        self.grid.addWidget(chart, n // 2, n % 2)
        self.charts[spec.title] = chart
        return chart

    def _show_empty(self, empty: bool, *, loading: bool = False) -> None:
        """``loading``: the charts show (and grow) while the runs' metrics are read, and the
        toolbar says so."""
        self.empty.setText(EMPTY_TEXT)
        self.empty.setVisible(empty and not loading)
        self._scroll.setVisible(not empty or loading)
        self.loading_note.setText(LOADING_TEXT if loading else "")

    def show_message(self, text: str) -> None:
        """A line over the charts (a read that failed)."""
        self._show_empty(not self.runs)
        self.loading_note.setText("")
        self.empty.setText(text)
        self.empty.setVisible(True)

    def showEvent(self, event) -> None:
        super().showEvent(event)
        if self._scroll.isVisible():
            self.pacer.add(self._grow_step)

    # ------------------------------------------------------------------ runs

    def set_runs(self, runs: list[RunMetrics], *, progressive: bool = False,
                 loading: bool = False) -> None:
        """``progressive``: the charts are drawn, and those still missing added, one per
        pacer step instead of all now (a run with a dozen metrics of 2,000 steps opened while
        the window must stay live). ``loading``: more runs' metrics are being read."""
        self.runs = list(runs)
        self._show_empty(not self.runs, loading=loading)
        if not self.runs:  # the charts built so far drop their curves; none is built now
            self._queue, self._draw_queue = [], []
            for chart in self.charts.values():
                chart.update_data([], self.options)
            return
        if not progressive:
            self.redraw()
            return
        self._queue = []
        self._draw_queue = list(self.charts.values())
        self.pacer.add(self._draw_step)
        self.pacer.add(self._grow_step)  # metrics no chart shows yet get theirs

    def _draw_step(self) -> bool:
        """Draw the next chart of the queue that changed (a pacer step)."""
        views = self.views()
        while self._draw_queue:
            chart = self._draw_queue.pop(0)
            if self._draw(chart, views):
                break  # its repaint is this turn's; the next chart waits for the next
        return bool(self._draw_queue)

    def _draw(self, chart: MetricChart, views: list[RunMetrics]) -> bool:
        """Show ``chart`` for ``views`` if it is in view (else mark it for later); whether
        anything changed."""
        show = chart.has_data_for(views) or chart.spec in CHART_SPECS[:3]
        if chart.isVisible() != show:
            chart.setVisible(show)
        if not chart.isVisible() or chart.visibleRegion().isEmpty():
            chart.stale = True  # drawn when scrolled (or switched) into view
            self._dirty = True
            return False
        chart.stale = False
        return chart.update_data(views, self.options)

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
        if not self._dirty or not self.isVisible() or self._draw_queue:
            return  # (a new selection's charts are drawn by the pacer first, one per turn)
        if not self._queue:
            self._views = self.views()
            if self._ensure_charts_for_unknown_metrics(self._views, limit=1):
                return  # a new chart is a paint of its own; the next tick goes on
            self._queue = [c for c in self.charts.values()]
        while self._queue:
            if self._draw(self._queue.pop(0), self._views):
                break  # something changed: let this paint before the next chart
        if not self._queue:
            self._dirty = any(getattr(c, "stale", False) and not c.visibleRegion().isEmpty()
                              for c in self.charts.values())

    def redraw(self, force: bool = False) -> None:
        """Everything now (changed options, a caller that needs every chart drawn)."""
        self._dirty = False
        self._queue = []
        self._draw_queue = []
        views = self.views()
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
