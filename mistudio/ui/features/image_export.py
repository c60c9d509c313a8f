"""Save any view as PNG or SVG (the seed's ``visualizations/``)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QPoint, QRect, QSize
from PySide6.QtGui import QPainter
from PySide6.QtWidgets import QWidget

from mistudio.errors import UserError


def save_widget_image(widget: QWidget, path: str | Path) -> Path:
    """PNG (pixels, as shown) or SVG (vector: pyqtgraph plots and text stay sharp)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".png":
        if not widget.grab().save(str(path)):
            raise UserError(f"Cannot write {path}.", hint="Choose a folder you can write to.")
        return path
    if suffix == ".svg":
        from PySide6.QtSvg import QSvgGenerator

        gen = QSvgGenerator()
        gen.setFileName(str(path))
        size = widget.size()
        gen.setSize(QSize(size.width(), size.height()))
        gen.setViewBox(QRect(0, 0, size.width(), size.height()))
        gen.setTitle(widget.windowTitle() or "MechInterp Studio view")
        painter = QPainter()
        if not painter.begin(gen):
            raise UserError(f"Cannot write {path}.", hint="Choose a folder you can write to.")
        try:
            # QWidget's render: a plot is a QGraphicsView, whose own render() draws the
            # scene and takes other arguments
            QWidget.render(widget, painter, QPoint(0, 0))
        finally:
            painter.end()
        return path
    raise UserError(f"{path.name}: images are saved as .png or .svg.",
                    hint="Give the file a .png or .svg name.")
