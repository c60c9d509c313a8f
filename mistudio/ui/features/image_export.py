"""Save any view as PNG or SVG (the seed's ``visualizations/``).

Two steps, so the window stays responsive: painting (widgets paint only on the GUI thread)
and encoding + writing (a PNG of the feature page, 800 x 4,500 px, takes ~150 ms to
encode), which the tab runs on a worker thread. ``CaptureInTurns`` paints one horizontal
strip per event-loop turn (the whole feature page at once is a 50-150 ms grab); ``capture``
paints at once (small views, scripts).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QBuffer, QByteArray, QIODevice, QObject, QPoint, QRect, QSize, QTimer
from PySide6.QtGui import QImage, QPainter, QRegion
from PySide6.QtWidgets import QWidget

from mistudio.errors import UserError


@dataclass
class Captured:
    """A painted view: pixels (PNG) or the SVG document's bytes."""

    suffix: str
    image: QImage | None = None
    svg: bytes = b""


def _suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in (".png", ".svg"):
        raise UserError(f"{path.name}: images are saved as .png or .svg.",
                        hint="Give the file a .png or .svg name.")
    return suffix


STRIP_PX = 400  # rows painted per event-loop turn (~3-10 ms of text and plots)


class _Target:
    """Where a capture paints: an image, or an SVG document in memory."""

    def __init__(self, widget: QWidget, path: Path):
        self.suffix = _suffix(path)
        size = widget.size()
        if self.suffix == ".png":
            ratio = widget.devicePixelRatioF()
            self.image = QImage(int(size.width() * ratio), int(size.height() * ratio),
                                QImage.Format.Format_ARGB32_Premultiplied)
            self.image.setDevicePixelRatio(ratio)
            self.image.fill(0)
            self.device = self.image
        else:
            from PySide6.QtSvg import QSvgGenerator

            self.data = QByteArray()
            self.buffer = QBuffer(self.data)
            self.buffer.open(QIODevice.OpenModeFlag.WriteOnly)
            self.device = QSvgGenerator()
            self.device.setOutputDevice(self.buffer)
            self.device.setSize(QSize(size.width(), size.height()))
            self.device.setViewBox(QRect(0, 0, size.width(), size.height()))
            self.device.setTitle(widget.windowTitle() or "MechInterp Studio view")
        self.painter = QPainter()
        if not self.painter.begin(self.device):
            raise UserError(f"Cannot draw {path.name}.", hint="Try PNG instead.")

    def paint(self, widget: QWidget, top: int, height: int) -> None:
        # QWidget's render: a plot is a QGraphicsView, whose own render() draws the scene
        # and takes other arguments
        QWidget.render(widget, self.painter, QPoint(0, top),
                       QRegion(QRect(0, top, widget.width(), height)))

    def finish(self) -> Captured:
        self.painter.end()
        if self.suffix == ".png":
            return Captured(self.suffix, image=self.image)
        self.buffer.close()
        return Captured(self.suffix, svg=bytes(self.data.data()))


class CaptureInTurns(QObject):
    """Paint ``widget`` for ``path``'s format one strip per event-loop turn, then call
    ``on_done(Captured)``. A bad file name raises ``UserError`` at once."""

    def __init__(self, widget: QWidget, path: str | Path, on_done, parent: QObject | None = None):
        super().__init__(parent)
        self.widget, self.on_done = widget, on_done
        self.target = _Target(widget, Path(path))
        self.top = 0
        QTimer.singleShot(0, self, self._step)

    def _step(self) -> None:
        h = self.widget.height()
        self.target.paint(self.widget, self.top, min(STRIP_PX, h - self.top))
        self.top += STRIP_PX
        if self.top < h:
            QTimer.singleShot(0, self, self._step)
            return
        shot = self.target.finish()
        self.deleteLater()
        self.on_done(shot)


def capture(widget: QWidget, path: str | Path) -> Captured:
    """Paint ``widget`` for ``path``'s format at once (GUI thread)."""
    target = _Target(widget, Path(path))
    target.paint(widget, 0, widget.height())
    return target.finish()


def write(captured: Captured, path: str | Path) -> Path:
    """Encode and write a capture (any thread)."""
    path = Path(path)
    try:
        if captured.suffix == ".png":
            if not captured.image.save(str(path), "PNG"):
                raise OSError("the PNG writer failed")
        else:
            path.write_bytes(captured.svg)
    except OSError as exc:
        raise UserError(f"Cannot write {path}: {exc}.",
                        hint="Choose a folder you can write to.") from exc
    return path
