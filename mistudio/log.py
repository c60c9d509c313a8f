"""Application logging: a rotating file in the data dir plus stderr."""

from __future__ import annotations

import logging
import logging.handlers
from pathlib import Path

_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def setup_logging(logs_dir: Path, level: int = logging.INFO, *, stderr: bool = True) -> Path:
    logs_dir.mkdir(parents=True, exist_ok=True)
    path = logs_dir / "mistudio.log"
    root = logging.getLogger("mistudio")
    root.setLevel(level)
    for h in list(root.handlers):
        if getattr(h, "_mistudio", False):
            root.removeHandler(h)
            h.close()
    fh = logging.handlers.RotatingFileHandler(path, maxBytes=5 * 2**20, backupCount=3,
                                              encoding="utf-8")
    fh.setFormatter(logging.Formatter(_FORMAT))
    fh._mistudio = True
    root.addHandler(fh)
    if stderr:
        sh = logging.StreamHandler()
        sh.setLevel(logging.WARNING)
        sh.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
        sh._mistudio = True
        root.addHandler(sh)
    return path
