"""Correlation heatmap of a set of features (<= 200), rows in clustered order.

Hover a cell for the pair and its value; click a cell to open its row's feature.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Signal

TICKS_UP_TO = 40  # feature numbers on the axes only while they stay readable


class CorrelationHeatmap(pg.PlotWidget):
    feature_clicked = Signal(int)
    hovered = Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setBackground("w")
        self.setAspectLocked(True)
        self.getViewBox().invertY(True)
        self.image = pg.ImageItem(axisOrder="row-major")
        self.addItem(self.image)
        self.image.setColorMap(pg.colormap.get("CET-D1A"))  # diverging blue-white-red
        self.colorbar = pg.ColorBarItem(values=(-1, 1), colorMap=pg.colormap.get("CET-D1A"),
                                        interactive=False, width=12)
        self.colorbar.setImageItem(self.image, insert_in=self.getPlotItem())
        self.indices = np.zeros(0, np.int64)
        self.matrix = np.zeros((0, 0))
        self.what = "correlation"
        self.scene().sigMouseMoved.connect(self._moved)
        self.image.mouseClickEvent = self._clicked

    def set_matrix(self, indices, matrix: np.ndarray, what: str = "correlation") -> None:
        self.indices = np.asarray(indices, dtype=np.int64)
        self.matrix = np.asarray(matrix, dtype=np.float32)
        self.what = what
        self.image.setImage(self.matrix, levels=(-1, 1))
        self.colorbar.setLevels((-1, 1))
        n = len(self.indices)
        ticks = [(i + 0.5, str(int(f))) for i, f in enumerate(self.indices)] if n <= TICKS_UP_TO else []
        self.getAxis("left").setTicks([ticks] if ticks else None)
        # horizontal numbers need more room than rows do: every k-th column is labelled
        step = max(1, int(np.ceil(n / 12)))
        self.getAxis("bottom").setTicks([ticks[::step]] if ticks else None)
        self.setTitle(f"{what} of {n} features (clustered order)")
        self.getViewBox().autoRange()

    def cell_at(self, scene_pos) -> tuple[int, int] | None:
        p = self.image.mapFromScene(scene_pos)
        r, c = int(np.floor(p.y())), int(np.floor(p.x()))
        n = len(self.indices)
        return (r, c) if 0 <= r < n and 0 <= c < n else None

    def describe(self, r: int, c: int) -> str:
        return (f"#{self.indices[r]} × #{self.indices[c]}: {self.what} "
                f"{self.matrix[r, c]:+.3f}")

    def _moved(self, scene_pos) -> None:
        cell = self.cell_at(scene_pos)
        text = self.describe(*cell) if cell else ""
        self.setToolTip(text)
        self.hovered.emit(text)

    def _clicked(self, ev) -> None:
        cell = self.cell_at(ev.scenePos())
        if cell is not None:
            ev.accept()
            self.feature_clicked.emit(int(self.indices[cell[0]]))
