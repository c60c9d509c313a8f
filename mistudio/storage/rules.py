"""The cleanup rules that go beyond tmp/ and orphans: cache LRU over a size limit, keep the
last N activation sets, checkpoint thinning, feature visualisations with their features.

Each rule is a pure function of what the service read (records, folders, live jobs) that
returns ``(items, kept)``: what would be deleted, and what was looked at but stays, with why
(naming the record that needs it). Nothing here deletes; the service deletes the listed items
through their owning services.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from mistudio.paths import human_bytes
from mistudio.storage.cleanup import CleanupItem
from mistudio.storage.usage import allocated_bytes, tree_bytes

# cache/ subfolders whose children are separate entries (one Hub repo, one SAE's maps);
# any other child of cache/ (numba's compiled UMAP, ...) is one entry
SPLIT_CACHE_FOLDERS = ("hub", "feature_maps")
# a training in one of these states may resume: its checkpoints are never thinned
UNFINISHED_TRAINING = ("queued", "running", "paused", "interrupted")


@dataclass
class CacheEntry:
    path: Path
    bytes: int
    last_used: float  # newest access or change time of any file in it


def _size_and_last_used(path: Path, seen: set) -> tuple[int, float]:
    """Allocated bytes (as :func:`tree_bytes`) and the newest use, in one walk."""
    total, newest = 0, 0.0
    stack = [path]
    while stack:
        p = stack.pop()
        try:
            st = p.lstat()
        except OSError:
            continue
        if p.is_symlink():
            continue
        if p.is_dir():
            # a folder's access time changes whenever it is listed (this scan included):
            # only its files' reads count as use
            newest = max(newest, st.st_mtime)
            try:
                stack.extend(p.iterdir())
            except OSError:
                pass
            continue
        newest = max(newest, st.st_atime, st.st_mtime)
        key = (st.st_dev, st.st_ino)
        if key not in seen:
            seen.add(key)
            total += allocated_bytes(st)
    return total, newest


def cache_entries(cache_dir: Path) -> list[CacheEntry]:
    out: list[CacheEntry] = []
    seen: set = set()
    if not cache_dir.is_dir():
        return out
    for child in sorted(cache_dir.iterdir()):
        parts = ([c for c in sorted(child.iterdir()) if not c.name.startswith(".")]
                 if child.name in SPLIT_CACHE_FOLDERS and child.is_dir() else [child])
        for p in parts:
            out.append(CacheEntry(p, *_size_and_last_used(p, seen)))
    return out


def _when(ts: float) -> str:
    return _dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M") if ts else "never"


def cache_rule(cache_dir: Path, limit_bytes: int, *, live_jobs: list[str],
               skip: set[str]) -> tuple[list[CleanupItem], list[CleanupItem]]:
    """Least recently used entries of cache/ until the rest fits ``limit_bytes``. Entries in
    ``skip`` (listed by another rule) count as gone. While a job is live nothing is listed:
    a download or a UMAP job may be writing its cache entry."""
    entries = [e for e in cache_entries(cache_dir) if str(e.path) not in skip]
    total = sum(e.bytes for e in entries)
    if total <= limit_bytes:
        return [], []
    over = f"cache/ holds {human_bytes(total)}, over its {human_bytes(limit_bytes)} limit"
    if live_jobs:
        return [], [CleanupItem("cache", str(cache_dir), total,
                                f"{over}, but {len(live_jobs)} job(s) are live "
                                f"({', '.join(live_jobs[:3])}) and may be using it")]
    items = []
    for e in sorted(entries, key=lambda e: (e.last_used, str(e.path))):
        if total <= limit_bytes:
            break
        items.append(CleanupItem("cache", str(e.path), e.bytes,
                                 f"least recently used (last {_when(e.last_used)}); {over}"))
        total -= e.bytes
    return items, []


def _mentions(text: str, rec_id: str, folder: str) -> bool:
    return bool(rec_id and rec_id in text) or bool(folder and folder in text)


def activation_rule(sets: list, keep_last: int, *, users: list[tuple[str, str]],
                    root: Path) -> tuple[list[CleanupItem], list[CleanupItem]]:
    """Sets beyond the newest ``keep_last`` (by creation time). ``users``: (who, text) of
    every record that may need a set (trainings with their SAEs, unfinished jobs); a set
    whose id or folder a text names is kept, and the record named."""
    items, kept = [], []
    ordered = sorted(sets, key=lambda s: (s.created_at, s.id), reverse=True)
    for rec in ordered[keep_last:]:
        where = f"activation_sets:{rec.id}"
        folder = Path(rec.folder) if rec.folder else None
        inside = folder is not None and _inside(folder, root)
        n = tree_bytes(folder) if inside and folder.exists() else 0
        label = f"{rec.name or rec.id} ({rec.hook_name})"
        needed_by = [who for who, text in users if _mentions(text, rec.id, rec.folder)]
        if rec.pinned:
            kept.append(CleanupItem("activation set", where, n, f"{label}: pinned"))
        elif needed_by:
            kept.append(CleanupItem("activation set", where, n, f"{label}: needed by "
                                    + ", ".join(needed_by[:3])
                                    + (f" and {len(needed_by) - 3} more" if len(needed_by) > 3
                                       else "")))
        elif rec.status == "extracting":
            kept.append(CleanupItem("activation set", where, n, f"{label}: being extracted"))
        else:
            items.append(CleanupItem("activation set", where, n,
                                     f"{label}, made {rec.created_at[:16]}: older than the "
                                     f"newest {keep_last} sets"))
    return items, kept


def _inside(path: Path, root: Path) -> bool:
    try:
        return Path(path).resolve().is_relative_to(Path(root).resolve())
    except OSError:
        return False


def log_spaced_steps(steps: list[int], count: int) -> set[int]:
    """``count`` of ``steps`` (sorted) spread evenly on a log scale, the last always among
    them: targets geometrically spaced from the first step to the last, each matched to the
    nearest unused checkpoint in log distance."""
    steps = sorted(set(steps))
    if len(steps) <= count:
        return set(steps)
    keep = {steps[-1]}
    lo, hi = math.log(max(1, steps[0])), math.log(max(1, steps[-1]))
    for i in range(count - 1):
        target = lo + (hi - lo) * i / max(1, count - 1)
        candidates = [s for s in steps if s not in keep]
        if not candidates:
            break
        keep.add(min(candidates, key=lambda s: (abs(math.log(max(1, s)) - target), s)))
    return keep


def checkpoint_rule(trainings: list, checkpoints: dict, count: int, *,
                    guarded: dict[str, str], users: list[tuple[str, str]] = ()
                    ) -> tuple[list[CleanupItem], list[CleanupItem]]:
    """Thin each finished training's checkpoints to a log-spaced set of ``count`` (the newest
    always kept). ``checkpoints``: training id -> CheckpointInfo list; ``guarded``: training
    id -> why it must not be touched (its job is running, paused or interrupted); ``users``:
    (record, folder) of records whose files live in a checkpoint (an SAE registered there),
    which keep it."""
    items, kept = [], []
    for tr in trainings:
        cks = checkpoints.get(tr.id) or []
        if len(cks) <= count:
            continue
        reason = guarded.get(tr.id) or (f"the training is {tr.status}: resume needs its "
                                        "checkpoints" if tr.status in UNFINISHED_TRAINING
                                        else "")
        if reason:
            kept.append(CleanupItem("checkpoint", str(Path(cks[-1].path).parent),
                                    sum(tree_bytes(Path(c.path)) for c in cks),
                                    f"{tr.name or tr.id}: {reason}"))
            continue
        keep = log_spaced_steps([c.step for c in cks], count)
        kept_steps = ", ".join(str(s) for s in sorted(keep))
        for c in cks:
            inside = [who for who, folder in users
                      if folder and (folder == c.path or folder.startswith(c.path + os.sep))]
            if c.step not in keep and inside:
                kept.append(CleanupItem("checkpoint", c.path, tree_bytes(Path(c.path)),
                                        f"{tr.name or tr.id}, step {c.step}: "
                                        f"{', '.join(inside)} lives in it"))
            elif c.step not in keep:
                items.append(CleanupItem(
                    "checkpoint", c.path, tree_bytes(Path(c.path)),
                    f"{tr.name or tr.id}, step {c.step}: thinned (kept steps {kept_steps})",
                    owner=tr.id))
    return items, kept


def feature_visual_rule(cache_dir: Path, sae_ids: set[str], analyses: Iterable, *,
                        active_jobs: set[str], root: Path, needed: dict[str, str] | None = None
                        ) -> tuple[list[CleanupItem], list[CleanupItem]]:
    """Feature maps (cache/feature_maps/<sae id>/) and feature analyses whose SAE record is
    gone: they went with their features. ``needed``: analysis id -> the records that still
    refer to it (auto-interp runs), which keep it."""
    needed = needed or {}
    items, kept = [], []
    maps = cache_dir / "feature_maps"
    if maps.is_dir():
        for d in sorted(maps.iterdir()):
            if d.name not in sae_ids and not d.name.startswith("."):
                items.append(CleanupItem("feature map", str(d), tree_bytes(d),
                                         f"the map of SAE {d.name}, which was deleted"))
    for a in analyses:
        if a.sae_id in sae_ids:
            continue
        folder = Path(a.folder) if a.folder else None
        n = tree_bytes(folder) if folder and _inside(folder, root) and folder.exists() else 0
        where = f"feature_analyses:{a.id}"
        if a.job_id and a.job_id in active_jobs:
            kept.append(CleanupItem("feature analysis", where, n, f"its job {a.job_id} is "
                                    "still running"))
        elif a.id in needed:
            kept.append(CleanupItem("feature analysis", where, n, f"analysis of SAE {a.sae_id} "
                                    f"(deleted), but {needed[a.id]} refer to it"))
        else:
            items.append(CleanupItem("feature analysis", where, n,
                                     f"analysis of SAE {a.sae_id}, which was deleted"))
    return items, kept

