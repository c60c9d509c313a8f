"""The feature map: every feature's decoder direction as a point (UMAP / t-SNE layout).

65k points must show, recolour and pan without stalling the window. pyqtgraph's
``ScatterPlotItem`` keeps a Python-level record per point (0.5-1 s to set or recolour 65k
points here, see benchmarks/features_table_bench.py), so the points are drawn by
``PointCloudItem``, which splats them into one image with numpy at each paint (a point
keeps its pixel size at any zoom). Colours are quantised to a small palette (density) or
two (labelled / in a list).
Click a point to open its feature (nearest point within a few pixels, found with numpy);
with "Lasso" on, drag a freehand loop: the tab turns the points inside into a list.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt, Signal
from PySide6.QtGui import QColor, QImage, QPainterPath, QPen
from PySide6.QtWidgets import QGraphicsPathItem, QToolTip

from mistudio.ui.kit import palette

LEVELS = 32
DEAD = QColor(190, 190, 190, 120)
PLAIN = QColor(120, 120, 140, 110)
MARKED = QColor(230, 80, 20, 230)


POINT_RADIUS_PX = 1  # each point is a (2r+1) x (2r+1) pixel square
PICK_PX = 6.0


def density_palette() -> list[QColor]:
    cmap = pg.colormap.get("viridis")
    return [cmap.map(i / (LEVELS - 1), mode="qcolor") for i in range(LEVELS)]


def argb(colour: QColor) -> int:
    """Opaque premultiplied ARGB32 of a colour (alpha is dropped: points are splatted)."""
    return 0xFF000000 | (colour.red() << 16) | (colour.green() << 8) | colour.blue()


class PointCloudItem(pg.GraphicsObject):
    """Many points in few colours, splatted into an image with numpy at each paint.

    QPainter.drawPoints with a 3-px pen took ~200 ms for 65k points here (the raster
    engine strokes each point); writing 3x3 pixel squares into a numpy ARGB buffer and
    drawing that one image takes a few milliseconds, so panning stays smooth."""

    def __init__(self):
        super().__init__()
        self.xy = np.zeros((0, 2), np.float64)
        self.order = np.zeros(0, np.int64)  # draw order: later groups on top
        self.colours = np.zeros(0, np.uint32)
        self._rect = QRectF()

    def set_points(self, xy: np.ndarray) -> None:
        self.prepareGeometryChange()
        self.xy = np.asarray(xy, dtype=np.float64)
        if len(self.xy):
            lo, hi = self.xy.min(axis=0), self.xy.max(axis=0)
            self._rect = QRectF(lo[0], lo[1], max(hi[0] - lo[0], 1e-9), max(hi[1] - lo[1], 1e-9))
        else:
            self._rect = QRectF()
        self.set_groups(np.zeros(len(self.xy), np.int64), [PLAIN])

    def set_groups(self, codes: np.ndarray, colours: list[QColor]) -> None:
        """``codes[i]``: index into ``colours`` of point i; higher codes are drawn on top."""
        codes = np.asarray(codes, dtype=np.int64)
        table = np.array([argb(c) for c in colours], dtype=np.uint32)
        self.order = np.argsort(codes, kind="stable")
        self.colours = table[codes[self.order]]
        self.update()

    def boundingRect(self) -> QRectF:
        return self._rect

    def paint(self, painter, *_args) -> None:
        t = painter.transform()
        if t.isRotating() or not len(self.order):
            return
        w, h = painter.device().width(), painter.device().height()
        if w <= 0 or h <= 0:
            return
        xy = self.xy[self.order]
        px = np.rint(xy[:, 0] * t.m11() + t.dx()).astype(np.int64)
        py = np.rint(xy[:, 1] * t.m22() + t.dy()).astype(np.int64)
        buf = np.zeros((h, w), np.uint32)
        r = POINT_RADIUS_PX
        for dy in range(-r, r + 1):
            for dx in range(-r, r + 1):
                x, y = px + dx, py + dy
                ok = (x >= 0) & (x < w) & (y >= 0) & (y < h)
                buf[y[ok], x[ok]] = self.colours[ok]
        img = QImage(buf.data, w, h, QImage.Format.Format_ARGB32_Premultiplied)
        painter.save()
        painter.resetTransform()
        painter.drawImage(0, 0, img)
        painter.restore()

    def nearest(self, x: float, y: float, px: tuple[float, float]) -> int | None:
        """Index of the point nearest (x, y) within PICK_PX pixels (``px``: data units per
        pixel along x and y)."""
        if not len(self.xy):
            return None
        d2 = ((self.xy[:, 0] - x) / px[0]) ** 2 + ((self.xy[:, 1] - y) / px[1]) ** 2
        i = int(np.argmin(d2))
        return i if d2[i] <= PICK_PX ** 2 else None


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
    lasso_drawn = Signal(object)  # np.ndarray [m, 2]: the loop, in data coordinates

    def __init__(self, parent=None):
        self.viewbox = LassoViewBox()
        super().__init__(parent, viewBox=self.viewbox)
        self.setBackground("w")
        self.hideAxis("left")
        self.hideAxis("bottom")
        self.points = PointCloudItem()
        self.addItem(self.points)
        self.highlight = pg.ScatterPlotItem(size=12, pen=pg.mkPen(palette.colour("error"), width=2),
                                            brush=None, pxMode=True)
        self.addItem(self.highlight)
        # the points inside are found off the GUI thread (the tab's FeatureAnnotations.lasso)
        self.viewbox.lasso_finished.connect(self.lasso_drawn)
        self.scene().sigMouseClicked.connect(self._clicked)
        self.scene().sigMouseMoved.connect(self._hover)
        self.coords = np.zeros((0, 2), np.float32)
        self.indices = np.zeros(0, np.int64)
        self.labels: dict[int, str] = {}
        self._palette = density_palette()
        self.colour_mode = "density"

    def set_points(self, coords: np.ndarray, indices: np.ndarray | None = None) -> None:
        self.coords = np.asarray(coords, dtype=np.float32)
        self.indices = (np.arange(len(coords)) if indices is None
                        else np.asarray(indices, dtype=np.int64))
        self.points.set_points(self.coords)
        self.viewbox.autoRange()

    def colour_by_density(self, density: np.ndarray) -> None:
        """``density`` per point (same order as the points): log scale, dead in grey."""
        self.colour_mode = "density"
        d = np.asarray(density, dtype=np.float64)
        alive = d > 0
        codes = np.zeros(len(d), np.int64)  # 0: dead (grey, drawn first)
        if alive.any():
            logd = np.log10(d[alive])
            lo, hi = np.percentile(logd, [1, 99]) if alive.sum() > 10 else (logd.min(), logd.max())
            level = np.clip(((logd - lo) / max(hi - lo, 1e-9) * (LEVELS - 1)).round(), 0,
                            LEVELS - 1).astype(np.int64)
            codes[alive] = 1 + level
        self.points.set_groups(codes, [DEAD] + self._palette)

    def colour_by_mask(self, mask: np.ndarray, mode: str) -> None:
        """Points in ``mask`` stand out (labelled features, a list's members)."""
        self.colour_mode = mode
        self.points.set_groups(np.asarray(mask, bool).astype(np.int64), [PLAIN, MARKED])

    def mark(self, feature_index: int | None) -> None:
        hits = np.flatnonzero(self.indices == feature_index) if feature_index is not None else []
        self.highlight.setData(pos=self.coords[hits] if len(hits) else np.zeros((0, 2)))

    def point_at(self, scene_pos) -> int | None:
        """The feature under a scene position, if a point is within a few pixels."""
        if not self.viewbox.sceneBoundingRect().contains(scene_pos):
            return None
        p = self.viewbox.mapSceneToView(scene_pos)
        px = self.viewbox.viewPixelSize()
        i = self.points.nearest(p.x(), p.y(), (max(px[0], 1e-12), max(px[1], 1e-12)))
        return None if i is None else int(self.indices[i])

    def _hover(self, scene_pos) -> None:
        f = self.point_at(scene_pos)
        if f is None:
            QToolTip.hideText()
            return
        label = self.labels.get(f, "")
        QToolTip.showText(self.mapToGlobal(self.mapFromScene(scene_pos)),
                          f"#{f}" + (f"  {label}" if label else ""), self)

    def _clicked(self, ev) -> None:
        if self.viewbox.lasso_mode or ev.button() != Qt.MouseButton.LeftButton:
            return
        f = self.point_at(ev.scenePos())
        if f is not None:
            self.feature_clicked.emit(f)

    def set_lasso_mode(self, on: bool) -> None:
        self.viewbox.lasso_mode = on
        self.viewbox.setMouseEnabled(x=not on, y=not on)
        if not on:
            self.viewbox.clear_lasso()
