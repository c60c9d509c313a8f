"""Storage: disk use of the data folder, orphans, the cleanup policy, database backups and
restore, moving the data folder."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from mistudio.app.storage_cleanup import CleanupPolicy, CleanupRunner, CleanupSummary
from mistudio.app.jobs import JobService
from mistudio.errors import UserError
from mistudio.paths import DataPaths
from mistudio.storage import backup as backups
from mistudio.storage.cleanup import CleanupPlan
from mistudio.storage.orphans import Orphan, find_orphans
from mistudio.storage.usage import DiskUsage, disk_usage
from mistudio.store.db import Store
from mistudio.store.migrations import migrate

KEEP_BACKUPS = 7


class StorageService:
    def __init__(self, store: Store, paths: DataPaths, jobs: JobService,
                 row_deleters: dict[str, Callable[[str], None]] | None = None, *,
                 settings=None,
                 checkpoint_deleter: Callable[[str, str], None] | None = None):
        """``row_deleters``: table -> the owning service's delete (its rows and folders
        together); ``checkpoint_deleter(training_id, path)``: the training service's;
        ``settings``: the SettingsService holding the cleanup policy (``cleanup_*``)."""
        self.row_deleters = dict(row_deleters or {})
        self.store = store
        self.paths = paths
        self.jobs = jobs
        self.settings = settings
        self.moved_to = None  # set once move_data_folder switched and removed this folder
        self.cleanup = CleanupRunner(store=store, paths=paths, jobs=jobs,
                                     policy=self.policy, row_deleters=self.row_deleters,
                                     checkpoint_deleter=checkpoint_deleter,
                                     orphans=self.orphans)

    @property
    def backups_dir(self):
        return self.paths.root / "backups"

    def disk_usage(self, items_per_category: int | None = 20) -> DiskUsage:
        return disk_usage(self.paths.root, items_per_category=items_per_category)

    def space_outlook(self, *, with_cleanup: bool = False):
        """Free space on the data disk vs the largest recent free-space estimate of a large
        job (:class:`~mistudio.storage.space.SpaceOutlook`); ``with_cleanup`` adds what the
        cleanup policy would free now."""
        from mistudio.storage.space import space_outlook

        reclaim = self.cleanup_plan().bytes if with_cleanup else None
        return space_outlook(self.paths.root, reclaimable_bytes=reclaim)

    def orphans(self) -> list[Orphan]:
        return find_orphans(self.paths.db_file, self.paths.root)

    # ------------------------------------------------------------------ cleanup

    def live_jobs(self) -> list[str]:
        return self.cleanup.live_jobs()

    def policy(self) -> CleanupPolicy:
        if self.settings is None:
            return CleanupPolicy()
        return CleanupPolicy.from_settings(self.settings.current)

    def set_policy(self, policy: CleanupPolicy) -> CleanupPolicy:
        """Save the policy (the same settings the Settings dialog edits)."""
        if self.settings is None:
            raise UserError("No settings to save the cleanup policy in.")
        self.settings.update(**policy.to_settings())
        return self.policy()

    def cleanup_plan(self, policy: CleanupPolicy | None = None) -> CleanupPlan:
        """What :meth:`clean` would delete now, the bytes it frees, and what it leaves."""
        return self.cleanup.plan(policy)

    def clean(self, *, dry_run: bool = True, expected: CleanupPlan | None = None,
              policy: CleanupPolicy | None = None) -> CleanupPlan:
        """The dry run (default) lists; the real run deletes exactly what a plan made now
        lists (only what ``expected``, the plan a preview showed, lists too), records and
        folders together through their owning services."""
        return self.cleanup.run(dry_run=dry_run, expected=expected, policy=policy)

    def startup_cleanup(self) -> CleanupSummary | None:
        """The policy run at start-up when it is enabled (the window calls it on a
        background thread); None when disabled."""
        policy = self.policy()
        if not policy.at_startup:
            return None
        self.cleanup.run(dry_run=False, trigger="start-up", policy=policy)
        return self.cleanup.last_run()

    def last_cleanup(self) -> CleanupSummary | None:
        return self.cleanup.last_run()

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
        self._refuse_while_jobs_run("a restore would lose what they write")
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

    # ------------------------------------------------------------------ moving the data folder

    def move_data_folder(self, destination: str, ctx=None) -> dict:
        """Copy the data folder to ``destination`` (progress through ``ctx``, a JobContext),
        verify every file (size + SHA-256), switch the configured data folder, and only then
        delete the old one. Refused while jobs run or another process has the database open.
        Until the switch the old folder stays in use; a move stopped or killed before it
        resumes when run again to the same destination. After it this Studio's folder is
        gone: the caller closes it (the window restarts, the command ends)."""
        import logging
        import os

        from mistudio.jobs.context import JobContext
        from mistudio.paths import ENV_DATA_DIR, remember_data_dir
        from mistudio.storage import move

        src = self.paths.root.resolve()
        dest = move.check_destination(src, destination)
        env = os.environ.get(ENV_DATA_DIR)
        if env and Path(env).expanduser().resolve() == src:
            raise UserError(f"The data folder is set by ${ENV_DATA_DIR}, which a move cannot "
                            "change.", hint=f"Unset {ENV_DATA_DIR} (use the setting instead) "
                            "and move again, or copy the folder and point the variable at it.")
        self._refuse_while_jobs_run("a move would leave what they write behind")
        ctx = ctx or JobContext.standalone()
        db = self.paths.db_file.name
        digests: dict = {}  # of the bytes copied: verifying reads only the copies again
        first = move.copy_tree(src, dest, ctx, exclude=(db, *move.DB_SIDE_FILES),
                               digests=digests)
        self.store.close()  # our connections go; the exclusive lock proves no one else's
        try:
            lock = backups.exclusive_lock(self.paths.db_file)
        except UserError:
            self.store.hold()
            raise
        try:
            if self.jobs.active_ids():  # started during the copy (other processes cannot
                # have the database open: we hold its lock alone)
                raise UserError("A job started while the data folder was being copied.",
                                hint="Let it finish, then move again (the copy resumes).")
            backups.checkpoint(self.paths.db_file)  # the database whole in mistudio.db
            resync = move.copy_tree(src, dest, ctx, exclude=move.DB_SIDE_FILES,
                                    phase="Copying what changed and the database",
                                    digests=digests)
            checked = move.verify(src, dest, ctx, exclude=move.DB_SIDE_FILES, digests=digests)
            if backups.integrity(dest / db) != "ok":
                raise UserError(f"The copied database in {dest} fails SQLite's integrity "
                                "check.", hint="Nothing was switched; move again.")
            move.write_marker(dest, src, "switching")
            os.sync()  # every copied byte on the disk before the old copy may go (one flush
            # for all files: an fsync per file made the move ~40% slower)
            remember_data_dir(dest)  # the switch: from now on the new folder is the one
        except BaseException:
            lock.close()
            self.store.hold()  # the old folder is still the data folder
            raise
        lock.close()
        for h in logging.getLogger("mistudio").handlers:  # our log follows the data
            name = getattr(h, "baseFilename", "")
            if name and Path(name).resolve().is_relative_to(src):
                h.close()
                h.baseFilename = str(dest / Path(name).resolve().relative_to(src))
        move.remove_old(src, dest)
        self.moved_to = dest
        return {"from": str(src), "to": str(dest), "files": checked["files"],
                "bytes": checked["bytes"], "copied_first": first["copied"],
                "copied_after_close": resync["copied"]}

    def unfinished_move(self) -> str | None:
        """The old folder a move switched away from but did not get to delete (the process
        ended between the switch and the deletion), or None."""
        from mistudio.storage import move

        marker = move.read_marker(self.paths.root)
        if not marker or marker.get("state") != "switching":
            return None
        source = Path(marker.get("source", ""))
        return str(source) if source.is_dir() and source.resolve() != \
            self.paths.root.resolve() else None

    def finish_move(self) -> str:
        """Delete the old folder of an unfinished move (this folder was verified complete
        before the switch). Refused while jobs run or another process has that folder's
        database open (someone may be using it again)."""
        from mistudio.storage import move

        old = self.unfinished_move()
        if old is None:
            raise UserError("No unfinished move: nothing to delete.")
        self._refuse_while_jobs_run("finish the move when they are done")
        lock = backups.exclusive_lock(Path(old) / backups.DB_NAME)
        try:
            move.remove_old(Path(old), self.paths.root)
        finally:
            lock.close()
        return old

    def _refuse_while_jobs_run(self, why: str) -> None:
        active = self.live_jobs()
        if active:
            raise UserError(f"Jobs are running ({', '.join(active[:5])}); {why}.",
                            hint="Cancel them or let them finish, then try again.")
