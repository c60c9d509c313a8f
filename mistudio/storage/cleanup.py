"""What an on-demand cleanup deletes: tmp/ of no live job, orphan folders, orphan rows.

:func:`cleanup_plan` only lists; the service's real run deletes exactly the listed items,
re-planned at that moment, so a dry run and the run that follows agree. Never listed: tmp/
while any job is live here or in another process (the start-up wipe follows the same rule);
an orphan folder named in a running, paused, queued or interrupted job's settings (its
resume needs it); anything outside the data folder (models used in place are the user's).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from mistudio.storage.orphans import Orphan
from mistudio.storage.usage import tree_bytes

PROTECTING_STATUSES = ("running", "paused", "queued", "interrupted")


# rules whose items are records ("table:id"), deleted by the service owning that table
ROW_RULES = ("orphan row", "activation set", "feature analysis")


@dataclass
class CleanupItem:
    rule: str    # "tmp" | "orphan folder" | "orphan row" | "cache" | "activation set" |
                 # "checkpoint" | "feature map" | "feature analysis"
    where: str   # a path, or "table:id"
    bytes: int
    reason: str
    owner: str = ""  # the record a checkpoint belongs to (its training)

    @property
    def key(self) -> tuple[str, str]:
        return (self.rule, self.where)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class CleanupPlan:
    items: list[CleanupItem]
    kept: list[CleanupItem]  # found but left, each with why

    @property
    def bytes(self) -> int:
        return sum(i.bytes for i in self.items)

    def to_dict(self) -> dict:
        return {"bytes": self.bytes, "items": [i.to_dict() for i in self.items],
                "kept": [i.to_dict() for i in self.kept]}


def tmp_rule(root: Path, live_jobs: list[str]) -> tuple[list[CleanupItem], list[CleanupItem]]:
    """tmp/'s children, all listed when no job is live, all kept while one is. The window's
    and the CLI's start-up wipe (``Studio._clean_tmp``) deletes what this lists."""
    items, kept = [], []
    tmp = Path(root) / "tmp"
    for child in sorted(tmp.iterdir()) if tmp.is_dir() else []:
        n = tree_bytes(child)
        if live_jobs:
            kept.append(CleanupItem("tmp", str(child), n, f"{len(live_jobs)} job(s) are live "
                                    f"({', '.join(live_jobs[:3])}): they may be writing here"))
        else:
            items.append(CleanupItem("tmp", str(child), n, "partial files of no live job"))
    return items, kept


def cleanup_plan(root: Path, orphans: Iterable[Orphan], *, live_jobs: list[str],
                 protecting_jobs: list, row_tables: Iterable[str],
                 tmp: bool = True) -> CleanupPlan:
    """``protecting_jobs``: JobRecords whose files must survive; ``row_tables``: the tables
    whose rows a service can delete (others are listed as kept, with why)."""
    root = Path(root)
    items, kept = tmp_rule(root, live_jobs) if tmp else ([], [])
    guarded = [(j.id, j.status, json.dumps(j.params, default=str) + " " + (j.artifact_dir or ""))
               for j in protecting_jobs]
    rows = set(row_tables)
    for o in orphans:
        if o.kind == "folder":
            path = Path(o.where)
            n = tree_bytes(path)
            owner = next(((jid, st) for jid, st, text in guarded
                          if path.name in text or str(path) in text), None)
            if owner is not None:
                kept.append(CleanupItem("orphan folder", o.where, n,
                                        f"named by the {owner[1]} job {owner[0]}"))
            elif live_jobs:  # a starting job makes its folder a moment before its record
                kept.append(CleanupItem("orphan folder", o.where, n,
                                        f"{o.detail}; left while jobs are live"))
            else:
                items.append(CleanupItem("orphan folder", o.where, n, o.detail))
        else:
            table = o.where.partition(":")[0]
            item = CleanupItem("orphan row", o.where, 0, o.detail)
            if table in rows:
                items.append(item)
            else:
                item.reason += "; no service deletes these records here (use its tab)"
                kept.append(item)
    items.sort(key=lambda i: -i.bytes)
    return CleanupPlan(items, kept)


def delete_items(items: Iterable[CleanupItem],
                 row_deleters: dict[str, Callable[[str], None]],
                 checkpoint_deleter: Callable[[str, str], None] | None = None
                 ) -> list[CleanupItem]:
    """Delete folders/files and, through their owning service, records (rows and folders
    together) and checkpoints. Returns what went."""
    done = []
    for item in items:
        if item.rule in ROW_RULES:
            table, _, rid = item.where.partition(":")
            row_deleters[table](rid)
        elif item.rule == "checkpoint":
            checkpoint_deleter(item.owner, item.where)
        else:
            p = Path(item.where)
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink(missing_ok=True)
        done.append(item)
    return done
