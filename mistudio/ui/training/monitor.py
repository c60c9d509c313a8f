"""GPU / CPU / RAM monitor: bars with numbers and a short history, sampled at 1 Hz.

Sampling (``mistudio.hardware_monitor``) costs well under a millisecond, so it runs on
the GUI thread's timer, and only while the widget is visible.
"""

from __future__ import annotations

from collections import deque

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QGridLayout, QLabel, QProgressBar, QVBoxLayout, QWidget

from mistudio.hardware_monitor import ResourceSample, ResourceSampler
from mistudio.paths import human_bytes
from mistudio.ui.kit.chart_legend import ChartLegend
from mistudio.ui.kit.palette import SERIES, css

HISTORY = 120  # samples (2 minutes at 1 Hz)


def _bar(maximum: int = 100) -> QProgressBar:
    b = QProgressBar()
    b.setRange(0, maximum)
    b.setTextVisible(True)
    b.setFixedHeight(16)
    return b


class ResourceMonitor(QWidget):
    def __init__(self, sampler: ResourceSampler | None = None, parent: QWidget | None = None,
                 interval_ms: int = 1000):
        super().__init__(parent)
        self.sampler = sampler or ResourceSampler()
        self.last: ResourceSample | None = None
        self.history = {k: deque(maxlen=HISTORY) for k in ("cpu", "ram", "gpu", "gpu_mem")}

        self.device_label = QLabel()
        self.device_label.setWordWrap(True)
        self.device_label.setObjectName("device")
        self.note = QLabel()
        self.note.setWordWrap(True)
        self.note.setStyleSheet(css("note"))
        grid = QGridLayout()
        self.bars: dict[str, QProgressBar] = {}
        self.values: dict[str, QLabel] = {}
        rows = [("gpu", "GPU load"), ("gpu_mem", "GPU memory"), ("gpu_temp", "Temperature"),
                ("gpu_power", "Power"), ("cpu", "CPU"), ("ram", "RAM")]
        self._gpu_rows: list[QWidget] = []
        for r, (key, title) in enumerate(rows):
            label = QLabel(title)
            grid.addWidget(label, r, 0)
            row = [label]
            bar = None
            if key not in ("gpu_temp", "gpu_power"):
                bar = self.bars[key] = _bar()
                grid.addWidget(bar, r, 1)
                row.append(bar)
            value = self.values[key] = QLabel("–")
            value.setTextInteractionFlags(Qt.TextSelectableByMouse)
            grid.addWidget(value, r, 2 if bar else 1, 1, 1 if bar else 2)
            row.append(value)
            if key.startswith("gpu"):
                self._gpu_rows += row
        grid.setColumnStretch(1, 1)

        self.plot = pg.PlotWidget(background="w")
        self.plot.setMaximumHeight(140)
        self.plot.setYRange(0, 100)
        self.plot.setMouseEnabled(False, False)
        self.plot.getPlotItem().hideButtons()
        self.plot.getPlotItem().setLabel("left", "%")
        self.plot.getPlotItem().setLabel("bottom", "seconds ago")
        self.plot.setXRange(-HISTORY, 0, padding=0)
        lines = [("cpu", "CPU", SERIES[0]), ("ram", "RAM", SERIES[2])]
        if self.sampler.has_gpu:
            lines += [("gpu", "GPU", SERIES[3]), ("gpu_mem", "GPU mem", SERIES[1])]
        self.curves = {key: self.plot.plot(pen=pg.mkPen(pen, width=2))
                       for key, _name, pen in lines}
        self.legend = ChartLegend()  # above the plot: a legend inside it covers the curves
        self.legend.set_entries([(name, pen, Qt.SolidLine) for _k, name, pen in lines])
        lay = QVBoxLayout(self)
        lay.addWidget(self.device_label)
        lay.addWidget(self.note)
        lay.addLayout(grid)
        lay.addWidget(self.legend)
        lay.addWidget(self.plot)
        lay.addStretch(1)

        self.timer = QTimer(self)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self.refresh)
        self.refresh()

    def showEvent(self, event) -> None:
        super().showEvent(event)
        self.timer.start()

    def hideEvent(self, event) -> None:
        super().hideEvent(event)
        self.timer.stop()

    def refresh(self) -> ResourceSample:
        s = self.sampler.sample()
        self.last = s
        self.show_sample(s)
        return s

    def show_sample(self, s: ResourceSample) -> None:
        g = s.gpus[0] if s.gpus else None
        if g is not None:
            extra = f" (+{len(s.gpus) - 1} more)" if len(s.gpus) > 1 else ""
            mem = f", {human_bytes(g.memory_total_bytes)}" if g.memory_total_bytes else ""
            self.device_label.setText(f"<b>{g.name}</b>{mem}{extra}")
        else:
            self.device_label.setText(f"<b>CPU</b>, {s.cpu_count} cores, "
                                      f"{human_bytes(s.ram_total_bytes)} RAM")
        self.note.setText(s.gpu_note)
        self.note.setVisible(bool(s.gpu_note))
        for w in self._gpu_rows:
            w.setVisible(g is not None)

        self._set("cpu", s.cpu_percent,
                  f"{s.cpu_percent:.0f}% (this app {s.process_cpu_percent:.0f}%)")
        self._set("ram", 100 * s.ram_fraction,
                  f"{human_bytes(s.ram_used_bytes)} / {human_bytes(s.ram_total_bytes)} "
                  f"(this app {human_bytes(s.process_rss_bytes)})")
        self.history["cpu"].append(s.cpu_percent)
        self.history["ram"].append(100 * s.ram_fraction)
        if g is not None:
            self._set("gpu", g.utilization,
                      "not reported" if g.utilization is None else f"{g.utilization:.0f}%")
            if g.memory_fraction is None:
                self._set("gpu_mem", None, "not reported by the driver")
            else:
                own = (f" (this app {human_bytes(g.process_memory_bytes)})"
                       if g.process_memory_bytes is not None else "")
                shared = " shared with the system" if g.unified_memory else ""
                self._set("gpu_mem", 100 * g.memory_fraction,
                          f"{human_bytes(g.memory_used_bytes)} / "
                          f"{human_bytes(g.memory_total_bytes)}{shared}{own}")
            self.values["gpu_temp"].setText(
                "not reported" if g.temperature_c is None else f"{g.temperature_c:.0f} °C")
            power = "not reported" if g.power_w is None else f"{g.power_w:.0f} W"
            if g.power_w is not None and g.power_limit_w:
                power += f" of {g.power_limit_w:.0f} W"
            self.values["gpu_power"].setText(power)
            self.history["gpu"].append(g.utilization if g.utilization is not None else np.nan)
            self.history["gpu_mem"].append(100 * g.memory_fraction
                                           if g.memory_fraction is not None else np.nan)
        for key, curve in self.curves.items():
            data = np.asarray(self.history[key], dtype=float)
            curve.setData(np.arange(1 - len(data), 1) * self.timer.interval() / 1000.0, data,
                          connect="finite")

    def _set(self, key: str, percent: float | None, text: str) -> None:
        bar = self.bars[key]
        bar.setValue(0 if percent is None else int(round(percent)))
        bar.setFormat(f"{percent:.0f}%" if percent is not None else "–")
        self.values[key].setText(text)

    def closeEvent(self, event) -> None:
        self.timer.stop()
        self.sampler.close()
        super().closeEvent(event)
