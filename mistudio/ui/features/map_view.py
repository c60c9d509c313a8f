"""The feature map: every feature's decoder direction as a point (UMAP / t-SNE layout).

A pyqtgraph scatter (65k points pan and zoom smoothly: points are drawn from a cached
symbol atlas, and colours are quantised to a small palette so the atlas stays small).
Click a point to open its feature; with "Lasso" on, drag a freehand loop to select the
points inside, which the tab turns into a list.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QBrush, QColor, QPainterPath, QPen
from PySide6.QtWidgets import QGraphicsPathItem

from mistudio.feature_map.geometry import points_in_polygon

LEVELS = 32
DEAD = QColor(190, 190, 190, 120)
PLAIN = QColor(120, 120, 140, 110)
MARKED = QColor(230, 80, 20, 230)


def density_palette() -> list[QBrush]:
    cmap = pg.colormap.get("viridis")
    return [QBrush(cmap.map(i / (LEVELS - 1), mode="qcolor")) for i in range(LEVELS)]


class LassoViewBox(pg.ViewBox):
    """A ViewBox that, in lasso mode, turns a left-button drag into a closed freehand path."""

    lasso_finished = Signal(object)  # np.ndarray [m, 2] in data coordinates

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.lasso_mode = False
        self._trail: list[tuple[float, float]] = []
        self._path_item = QGraphicsPathItem()
        self._path_item.setPen(QPen(QColor(220, 40, 40), 0))
        self._path_item.setZValue(100)
        self.addItem(self._path_item, ignoreBounds=True)

    def mouseDragEvent(self, ev, axis=None):
        if not self.lasso_mode or ev.button() != Qt.MouseButton.LeftButton:
            return super().mouseDragEvent(ev, axis)
        ev.accept()
        if ev.isStart():
            self._trail = []
        p = self.mapSceneToView(ev.scenePos())
        self._trail.append((p.x(), p.y()))
        path = QPainterPath()
        if self._trail:
            path.moveTo(*self._trail[0])
            for x, y in self._trail[1:]:
                path.lineTo(x, y)
            path.closeSubpath()
        self._path_item.setPath(path)
        if ev.isFinish():
            poly = np.asarray(self._trail, dtype=np.float64)
            self._trail = []
            self.lasso_finished.emit(poly)

    def clear_lasso(self) -> None:
        self._path_item.setPath(QPainterPath())


class FeatureMapPlot(pg.PlotWidget):
    feature_clicked = Signal(int)
    lasso_selected = Signal(object)  # np.ndarray of feature indices

    def __init__(self, parent=None):
        self.viewbox = LassoViewBox()
        super().__init__(parent, viewBox=self.viewbox)
        self.setBackground("w")
        self.hideAxis("left")
        self.hideAxis("bottom")
        self.scatter = pg.ScatterPlotItem(size=4, pen=None, pxMode=True, hoverable=True,
                                          tip=self._tip)
        self.addItem(self.scatter)
        self.highlight = pg.ScatterPlotItem(size=11, pen=pg.mkPen("#d00000", width=2),
                                            brush=None, pxMode=True)
        self.addItem(self.highlight)
        self.scatter.sigClicked.connect(self._clicked)
        self.viewbox.lasso_finished.connect(self._lasso)
        self.coords = np.zeros((0, 2), np.float32)
        self.indices = np.zeros(0, np.int64)
        self.labels: dict[int, str] = {}
        self._palette = density_palette()
        self.colour_mode = "density"

    def set_points(self, coords: np.ndarray, indices: np.ndarray | None = None) -> None:
        self.coords = np.asarray(coords, dtype=np.float32)
        self.indices = (np.arange(len(coords)) if indices is None
                        else np.asarray(indices, dtype=np.int64))
        self.scatter.setData(pos=self.coords, data=self.indices, brush=PLAIN)
        self.viewbox.autoRange()

    def colour_by_density(self, density: np.ndarray) -> None:
        """``density`` per point (same order as the points): log scale, dead in grey."""
        self.colour_mode = "density"
        d = np.asarray(density, dtype=np.float64)
        alive = d > 0
        brushes = np.full(len(d), QBrush(DEAD), dtype=object)
        if alive.any():
            logd = np.log10(d[alive])
            lo, hi = np.percentile(logd, [1, 99]) if alive.sum() > 10 else (logd.min(), logd.max())
            level = np.clip(((logd - lo) / max(hi - lo, 1e-9) * (LEVELS - 1)).round(), 0,
                            LEVELS - 1).astype(int)
            pal = np.asarray(self._palette, dtype=object)
            brushes[alive] = pal[level]
        self.scatter.setBrush(list(brushes))

    def colour_by_mask(self, mask: np.ndarray, mode: str) -> None:
        """Points in ``mask`` stand out (labelled features, a list's members)."""
        self.colour_mode = mode
        marked, plain = QBrush(MARKED), QBrush(PLAIN)
        self.scatter.setBrush([marked if m else plain for m in np.asarray(mask, bool)])

    def mark(self, feature_index: int | None) -> None:
        hits = np.flatnonzero(self.indices == feature_index) if feature_index is not None else []
        self.highlight.setData(pos=self.coords[hits] if len(hits) else np.zeros((0, 2)))

    def _tip(self, x, y, data):
        label = self.labels.get(int(data), "")
        return f"#{int(data)}" + (f"  {label}" if label else "")

    def _clicked(self, _item, points, _ev) -> None:
        if len(points) and not self.viewbox.lasso_mode:
            self.feature_clicked.emit(int(points[0].data()))

    def _lasso(self, polygon: np.ndarray) -> None:
        inside = points_in_polygon(self.coords, polygon)
        self.lasso_selected.emit(self.indices[inside])

    def set_lasso_mode(self, on: bool) -> None:
        self.viewbox.lasso_mode = on
        self.viewbox.setMouseEnabled(x=not on, y=not on)
        if not on:
            self.viewbox.clear_lasso()
