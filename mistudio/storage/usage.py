"""Disk use of the data folder, per category and per item, largest first.

Sizes are allocated bytes of regular files (``st_blocks * 512`` where the platform has it,
else ``st_size``), counted once per inode so hard links are not counted twice; symbolic
links are never followed (a model used in place is the user's folder, not ours).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

# category -> folder below the data folder (one level; items are its children)
CATEGORIES = {
    "datasets": "datasets",
    "models": "models",
    "activations": "activations",
    "trainings": "trainings",
    "features": "features",
    "steering": "steering",
    "autointerp": "autointerp",
    "templates": "templates",
    "cache": "cache",
    "tmp": "tmp",
    "backups": "backups",
    "logs": "logs",
    "jobs": "jobs",
}


@dataclass
class UsageItem:
    name: str
    path: str
    bytes: int


@dataclass
class CategoryUsage:
    name: str
    path: str
    bytes: int = 0
    items: list[UsageItem] = field(default_factory=list)  # largest first


@dataclass
class DiskUsage:
    root: str
    total_bytes: int
    database_bytes: int
    categories: list[CategoryUsage]  # largest first
    free_bytes: int
    disk_bytes: int

    def to_dict(self) -> dict:
        return {
            "root": self.root, "total_bytes": self.total_bytes,
            "database_bytes": self.database_bytes, "free_bytes": self.free_bytes,
            "disk_bytes": self.disk_bytes,
            "categories": [{"name": c.name, "path": c.path, "bytes": c.bytes,
                            "items": [i.__dict__ for i in c.items]} for c in self.categories],
        }


def allocated_bytes(st: os.stat_result) -> int:
    blocks = getattr(st, "st_blocks", None)
    return int(blocks) * 512 if blocks is not None else int(st.st_size)


def tree_bytes(path: Path, seen: set | None = None) -> int:
    """Bytes under ``path`` (a file or a folder), symlinks not followed."""
    seen = set() if seen is None else seen
    total = 0
    stack = [Path(path)]
    while stack:
        p = stack.pop()
        try:
            st = p.lstat()
        except OSError:
            continue  # vanished while walking (a job deleting its tmp files)
        if p.is_symlink():
            continue
        if os.path.isdir(p):
            try:
                stack.extend(p.iterdir())
            except OSError:
                continue
        else:
            key = (st.st_dev, st.st_ino)
            if key in seen:
                continue
            seen.add(key)
            total += allocated_bytes(st)
    return total


def disk_usage(root: str | os.PathLike, *, items_per_category: int | None = None) -> DiskUsage:
    root = Path(root)
    seen: set = set()
    cats = []
    for name, folder in CATEGORIES.items():
        path = root / folder
        cat = CategoryUsage(name, str(path))
        if path.is_dir():
            for child in path.iterdir():
                n = tree_bytes(child, seen)
                cat.items.append(UsageItem(child.name, str(child), n))
                cat.bytes += n
        cat.items.sort(key=lambda i: (-i.bytes, i.name))
        if items_per_category is not None:
            cat.items = cat.items[:items_per_category]
        cats.append(cat)
    db = sum(tree_bytes(p, seen) for p in root.glob("mistudio.db*") if p.is_file())
    cats.sort(key=lambda c: (-c.bytes, c.name))
    disk = shutil.disk_usage(root)
    return DiskUsage(str(root), db + sum(c.bytes for c in cats), db, cats, disk.free, disk.total)
