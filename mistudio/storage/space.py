"""Free space on the data disk against the estimates the free-space checks made before
large jobs (extraction, tokenization, imports, downloads, checkpoints): the largest recent
one, and how many jobs of that size fit ("what fits")."""

from __future__ import annotations

import datetime as _dt
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from mistudio.paths import human_bytes, read_space_checks

RECENT_DAYS = 30


@dataclass
class SpaceOutlook:
    free_bytes: int
    disk_bytes: int
    largest: dict | None  # the largest estimate of the last RECENT_DAYS: what, need, at
    recent: list[dict] = field(default_factory=list)  # newest first (at most 10)
    reclaimable_bytes: int | None = None  # what the cleanup policy would free now

    @property
    def fits(self) -> int | None:
        """How many jobs the size of the largest recent estimate fit in the free space."""
        if not self.largest or self.largest["need"] <= 0:
            return None
        return self.free_bytes // self.largest["need"]

    def lines(self) -> list[str]:
        out = [f"{human_bytes(self.free_bytes)} free of {human_bytes(self.disk_bytes)} on the "
               "data disk."]
        if self.largest is None:
            out.append(f"No large job checked the free space in the last {RECENT_DAYS} days "
                       "(extraction, tokenization, imports and downloads do).")
            return out
        big = self.largest
        head = (f"Largest recent estimate: {big['what']}, about {human_bytes(big['need'])} "
                f"({big['at'][:10]}).")
        if self.fits:
            out.append(f"{head} Fits {self.fits} time(s) in the free space.")
        else:
            short = big["need"] - self.free_bytes
            tip = (f" The cleanup policy would free {human_bytes(self.reclaimable_bytes)}."
                   if self.reclaimable_bytes else "")
            out.append(f"{head} Would NOT fit now: {human_bytes(short)} short.{tip}")
        return out

    def to_dict(self) -> dict:
        return {"free_bytes": self.free_bytes, "disk_bytes": self.disk_bytes,
                "largest": self.largest, "fits": self.fits, "recent": self.recent,
                "reclaimable_bytes": self.reclaimable_bytes, "lines": self.lines()}


def space_outlook(root: str | Path, *, days: int = RECENT_DAYS,
                  reclaimable_bytes: int | None = None) -> SpaceOutlook:
    disk = shutil.disk_usage(root)
    since = _dt.datetime.now(_dt.timezone.utc) - _dt.timedelta(days=days)
    checks = []
    for c in read_space_checks(root):
        try:
            if _dt.datetime.fromisoformat(c["at"]) >= since:
                checks.append(c)
        except (KeyError, ValueError, TypeError):
            continue
    largest = max(checks, key=lambda c: c["need"], default=None)
    return SpaceOutlook(disk.free, disk.total, largest, list(reversed(checks))[:10],
                        reclaimable_bytes)
