"""Storage: disk use of the data folder, orphans, database backups and restore."""

from __future__ import annotations

from typing import Callable

from mistudio.app.jobs import JobService
from mistudio.errors import UserError
from mistudio.paths import DataPaths
from mistudio.storage import backup as backups
from mistudio.storage.cleanup import (PROTECTING_STATUSES, CleanupPlan, cleanup_plan,
                                      delete_items)
from mistudio.storage.orphans import Orphan, find_orphans
from mistudio.storage.usage import DiskUsage, disk_usage
from mistudio.store.db import Store
from mistudio.store.migrations import migrate

KEEP_BACKUPS = 7


class StorageService:
    def __init__(self, store: Store, paths: DataPaths, jobs: JobService,
                 row_deleters: dict[str, Callable[[str], None]] | None = None):
        # table -> the owning service's delete (its rows and folders together)
        self.row_deleters = dict(row_deleters or {})
        self.store = store
        self.paths = paths
        self.jobs = jobs

    @property
    def backups_dir(self):
        return self.paths.root / "backups"

    def disk_usage(self, items_per_category: int | None = 20) -> DiskUsage:
        return disk_usage(self.paths.root, items_per_category=items_per_category)

    def orphans(self) -> list[Orphan]:
        return find_orphans(self.paths.db_file, self.paths.root)

    # ------------------------------------------------------------------ cleanup

    def live_jobs(self) -> list[str]:
        return self.jobs.live_ids()

    def cleanup_plan(self) -> CleanupPlan:
        """What :meth:`clean` would delete now, the bytes it frees, and what it leaves."""
        return cleanup_plan(self.paths.root, self.orphans(), live_jobs=self.live_jobs(),
                            protecting_jobs=self.jobs.list(status=PROTECTING_STATUSES),
                            row_tables=self.row_deleters)

    def clean(self, *, dry_run: bool = True) -> CleanupPlan:
        """The dry run (default) lists; the real run deletes exactly what a plan made now
        lists (tmp/ of no live job, orphan folders, orphan rows via their service)."""
        plan = self.cleanup_plan()
        if not dry_run:
            delete_items(plan.items, self.row_deleters)
        return plan

    # ------------------------------------------------------------------ backups

    def backup(self, label: str = "", keep: int = KEEP_BACKUPS) -> backups.BackupInfo:
        return backups.backup_database(self.paths.db_file, self.backups_dir, label=label,
                                       presets_dir=self.paths.root / "steering" / "presets",
                                       keep=keep)

    def backup_if_due(self, keep: int = KEEP_BACKUPS) -> backups.BackupInfo | None:
        """The start-up backup: one a day."""
        if backups.daily_backup_due(self.backups_dir):
            return self.backup("daily", keep=keep)
        return None

    def list_backups(self) -> list[backups.BackupInfo]:
        return backups.list_backups(self.backups_dir)

    def restore(self, ref: str) -> dict:
        """Swap the database for a backup: refused while any job runs (here or in another
        process) or another process has the database open. The current database is kept as
        a 'before-restore' backup first; the orphan check runs after."""
        target = backups.find_backup(self.backups_dir, ref)
        backups.verify_backup(target)
        active = self.jobs.live_ids()
        if active:
            raise UserError(f"Jobs are running ({', '.join(active[:5])}); a restore would lose "
                            "what they write.", hint="Cancel them or let them finish, then "
                            "restore again.")
        safety = self.backup("before-restore", keep=0)
        self.store.close()  # our connections and our shared lock go
        try:
            lock = backups.exclusive_lock(self.paths.db_file)
        except UserError:
            self.store.hold()
            raise
        try:
            backups.swap_in(target, self.paths.db_file)
        finally:
            lock.close()
            self.store.hold()
        migrate(self.store.db)  # an older backup gets this version's tables
        return {"restored": target.to_dict(), "previous": safety.to_dict(),
                "integrity": "ok" if self.store.integrity_ok() else "failed",
                "orphans": [o.to_dict() for o in self.orphans()]}
