"""File > Storage: disk use per category (largest first) with a bar chart, free space against
the largest recent job estimate; the cleanup policy (its rules, editable; a dry run listing
what goes and the bytes freed, then the real run deleting exactly that; the last run's
summary); the database backups (back up now, restore after a confirmation); moving the data
folder (``ui/storage_move.py``).

Every read and write runs off the GUI thread (``ui.kit.background.BackgroundCall``).
"""

from __future__ import annotations

from PySide6.QtCore import QRectF, QSize, Qt
from PySide6.QtGui import QColor, QFontMetrics, QPainter
from PySide6.QtWidgets import (QDialog, QDialogButtonBox, QHBoxLayout, QLabel, QPushButton,
                               QTabWidget, QTreeWidget, QTreeWidgetItem, QVBoxLayout, QWidget)

from mistudio.paths import human_bytes
from mistudio.ui.cleanup_policy_form import CleanupPolicyForm
from mistudio.ui.dialogs import confirm
from mistudio.ui.kit.background import BackgroundCall
from mistudio.ui.kit.labels import hint_label
from mistudio.ui.kit.palette import colour, css

ITEMS_PER_CATEGORY = 20


class UsageBars(QWidget):
    """Horizontal bars, one per category, scaled to the largest; sizes written beside them."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.rows: list[tuple[str, int]] = []

    def set_rows(self, rows: list[tuple[str, int]]) -> None:
        self.rows = [r for r in rows if r[1] > 0]
        self.setMinimumHeight(self.sizeHint().height())  # the tree below must not squeeze it
        self.updateGeometry()
        self.update()

    def sizeHint(self) -> QSize:
        return QSize(420, max(40, 22 * len(self.rows) + 8))

    def paintEvent(self, _event) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        fm = QFontMetrics(self.font())
        if not self.rows:
            p.setPen(QColor(colour("text.muted")))
            p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, "Nothing stored yet.")
            return
        label_w = max(fm.horizontalAdvance(n) for n, _ in self.rows) + 10
        size_w = fm.horizontalAdvance("1023.9 MB") + 10
        span = max(1, self.width() - label_w - size_w - 8)
        top = max(b for _, b in self.rows)
        for i, (name, n) in enumerate(self.rows):
            y = 4 + i * 22
            p.setPen(QColor(colour("text")))
            p.drawText(QRectF(0, y, label_w - 6, 18),
                       Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter, name)
            w = max(2.0, span * n / top)
            p.setPen(Qt.PenStyle.NoPen)
            p.setBrush(QColor(colour("bar.strong" if i == 0 else "bar")))
            p.drawRoundedRect(QRectF(label_w, y + 2, w, 14), 3, 3)
            p.setPen(QColor(colour("text.muted")))
            p.drawText(QRectF(label_w + w + 6, y, size_w, 18), Qt.AlignmentFlag.AlignVCenter,
                       human_bytes(n))


def _tree(headers: list[str]) -> QTreeWidget:
    t = QTreeWidget()
    t.setHeaderLabels(headers)
    t.setRootIsDecorated(len(headers) > 0)
    t.setAlternatingRowColors(True)
    return t


class StorageDialog(QDialog):
    def __init__(self, studio, parent=None, *, load: bool = True):
        super().__init__(parent)
        self.studio = studio
        self.storage = studio.storage
        self.setWindowTitle("Storage")
        self.resize(860, 620)
        self.usage = None
        self.plan = None
        self.backups: list = []
        self._calls: list[BackgroundCall] = []

        self.summary = QLabel("Measuring the data folder...")
        self.summary.setWordWrap(True)
        self.space = QLabel("")
        self.space.setWordWrap(True)
        self.space.setToolTip("The free-space checks before large jobs (extraction, "
                              "tokenization, imports, downloads, checkpoints) record their "
                              "estimates; this compares the largest of the last 30 days with "
                              "the free space now.")
        self.outlook = None
        self.bars = UsageBars()
        self.usage_tree = _tree(["Category / item", "Size"])
        use_page = QWidget()
        uv = QVBoxLayout(use_page)
        uv.addWidget(self.summary)
        uv.addWidget(self.space)
        uv.addWidget(self.bars)
        uv.addWidget(self.usage_tree, 1)
        self.refresh_btn = QPushButton("Measure again")
        self.refresh_btn.clicked.connect(self.load_usage)
        uv.addWidget(self.refresh_btn, 0, Qt.AlignmentFlag.AlignRight)

        self.plan_label = hint_label(
            "The cleanup policy's rules (the ones that delete your work are off until you "
            "turn them on). Records go through the service that owns them, rows and folders "
            "together; files of running, paused or interrupted jobs, pinned activation sets "
            "and models used in place are never touched, and what a kept record needs stays, "
            "with the record named. Preview first: Clean up deletes exactly what the preview "
            "lists.", small=False)
        self.policy_form = CleanupPolicyForm(self.storage.policy(), compact=True)
        self.policy_form.changed.connect(self._policy_edited)
        self.save_policy_btn = QPushButton("Save policy")
        self.save_policy_btn.setEnabled(False)
        self.save_policy_btn.clicked.connect(self.save_policy)
        self.last_run = hint_label("", small=False)
        self.plan_tree = _tree(["What", "Size", "Why"])
        self.preview_btn = QPushButton("Preview cleanup")
        self.preview_btn.clicked.connect(self.preview_cleanup)
        self.clean_btn = QPushButton("Clean up")
        self.clean_btn.setEnabled(False)
        self.clean_btn.clicked.connect(self.run_cleanup)
        clean_page = QWidget()
        cv = QVBoxLayout(clean_page)
        cv.addWidget(self.plan_label)
        cv.addWidget(self.policy_form)
        cv.addWidget(self.last_run)
        cv.addWidget(self.plan_tree, 1)
        row = QHBoxLayout()
        row.addWidget(self.save_policy_btn)
        row.addStretch(1)
        row.addWidget(self.preview_btn)
        row.addWidget(self.clean_btn)
        cv.addLayout(row)

        self.backup_tree = _tree(["Backup", "Taken", "Size", "Label"])
        self.backup_tree.setRootIsDecorated(False)
        self.backup_tree.currentItemChanged.connect(lambda *_: self._update_buttons())
        self.backup_btn = QPushButton("Back up now")
        self.backup_btn.clicked.connect(self.back_up_now)
        self.restore_btn = QPushButton("Restore...")
        self.restore_btn.clicked.connect(self.restore_selected)
        backup_page = QWidget()
        bv = QVBoxLayout(backup_page)
        bv.addWidget(hint_label(
            "The database (every record) and the steering presets, copied with SQLite's "
            "online backup while jobs may write; one a day at start-up and when you ask. "
            "Restore replaces the database with a backup (refused while jobs run); the current "
            "one is kept as a 'before-restore' backup.", small=False))
        bv.addWidget(self.backup_tree, 1)
        row = QHBoxLayout()
        row.addStretch(1)
        row.addWidget(self.backup_btn)
        row.addWidget(self.restore_btn)
        bv.addLayout(row)

        self.pages = QTabWidget()
        self.pages.addTab(use_page, "Disk use")
        self.pages.addTab(clean_page, "Cleanup")
        self.pages.addTab(backup_page, "Backups")
        from mistudio.ui.storage_move import MoveDataFolderPage

        self.move_page = MoveDataFolderPage(self.storage,
                                            lambda t, m: self._confirm(t, m))
        self.move_page.moved.connect(self._after_move)
        self.pages.addTab(self.move_page, "Move")
        self.message = QLabel()
        self.message.setWordWrap(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addWidget(self.pages, 1)
        lay.addWidget(self.message)
        lay.addWidget(buttons)
        self._update_buttons()
        self._show_last_run(None)
        if load:
            self.load_usage()
            self.load_backups()
            self.load_last_run()

    # ------------------------------------------------------------------ plumbing

    def _run(self, fn, on_done) -> None:
        self._calls = [c for c in self._calls if c.running()]
        self._calls.append(BackgroundCall(fn, on_done, self._on_error))

    def busy(self) -> bool:
        return any(c.running() for c in self._calls)

    def wait(self, timeout: float = 30) -> None:
        for c in list(self._calls):
            c.wait(timeout)

    def _on_error(self, exc) -> None:
        self.say(str(exc), error=True)
        self._update_buttons()

    def say(self, text: str, error: bool = False) -> None:
        self.message.setText(text)
        self.message.setStyleSheet(css("error" if error else "text"))

    def _update_buttons(self) -> None:
        self.clean_btn.setEnabled(bool(self.plan and self.plan.items))
        self.restore_btn.setEnabled(self.backup_tree.currentItem() is not None)

    # ------------------------------------------------------------------ disk use

    def load_usage(self) -> None:
        self._run(lambda: self.storage.disk_usage(ITEMS_PER_CATEGORY), self._show_usage)
        self._run(self.storage.space_outlook, self._show_outlook)

    def _show_outlook(self, outlook) -> None:
        self.outlook = outlook
        self.space.setText(" ".join(outlook.lines()[1:]))
        short = outlook.largest is not None and not outlook.fits
        self.space.setStyleSheet(css("error" if short else "text"))

    def _show_usage(self, du) -> None:
        self.usage = du
        self.summary.setText(
            f"{du.root}: {human_bytes(du.total_bytes)} used (database "
            f"{human_bytes(du.database_bytes)}); {human_bytes(du.free_bytes)} free of "
            f"{human_bytes(du.disk_bytes)} on this disk.")
        self.bars.set_rows([(c.name, c.bytes) for c in du.categories])
        self.usage_tree.clear()
        for c in du.categories:
            top = QTreeWidgetItem([c.name, human_bytes(c.bytes)])
            top.setToolTip(0, c.path)
            for i in c.items:
                child = QTreeWidgetItem([i.name, human_bytes(i.bytes)])
                child.setToolTip(0, i.path)
                top.addChild(child)
            self.usage_tree.addTopLevelItem(top)
        self.usage_tree.resizeColumnToContents(0)

    # ------------------------------------------------------------------ cleanup

    def _policy_edited(self) -> None:
        self.save_policy_btn.setEnabled(self.policy_form.policy() != self.storage.policy())
        if self.plan is not None:  # a preview of another policy must not be run
            self.plan = None
            self.plan_tree.clear()
            self.say("The policy changed: preview again.")
            self._update_buttons()

    def save_policy(self) -> None:
        try:
            self.storage.set_policy(self.policy_form.policy())
        except Exception as exc:  # an invalid value: the settings say which
            self.say(str(exc), error=True)
            return
        self.save_policy_btn.setEnabled(False)
        self.say("Cleanup policy saved" + (" (it runs at start-up)."
                                           if self.policy_form.policy().at_startup else "."))

    def load_last_run(self) -> None:
        self._run(self.storage.last_cleanup, self._show_last_run)

    def _show_last_run(self, summary) -> None:
        self.last_run.setText("Last run: " + summary.text() if summary is not None
                              else "Last run: none yet.")

    def preview_cleanup(self) -> None:
        self.preview_btn.setEnabled(False)
        policy = self.policy_form.policy()
        self._run(lambda: self.storage.clean(dry_run=True, policy=policy), self._show_plan)

    def _show_plan(self, plan) -> None:
        self.plan = plan
        self.preview_btn.setEnabled(True)
        self.plan_tree.clear()
        goes = QTreeWidgetItem([f"Would be deleted: {len(plan.items)}",
                                human_bytes(plan.bytes), ""])
        for i in plan.items:
            goes.addChild(self._plan_row(i))
        kept = QTreeWidgetItem([f"Kept: {len(plan.kept)}", "", ""])
        for i in plan.kept:
            kept.addChild(self._plan_row(i))
        self.plan_tree.addTopLevelItems([goes, kept])
        goes.setExpanded(True)
        kept.setExpanded(True)
        self.plan_tree.resizeColumnToContents(0)
        self.say(f"{len(plan.items)} item(s) would go, freeing {human_bytes(plan.bytes)}."
                 if plan.items else "Nothing to clean up.")
        self._update_buttons()

    def _plan_row(self, item) -> QTreeWidgetItem:
        """Paths shown relative to the data folder (the full path and the reason in tips)."""
        where = item.where
        root = str(self.storage.paths.root).rstrip("/") + "/"
        if where.startswith(root):
            where = where[len(root):]
        row = QTreeWidgetItem([f"{item.rule}: {where}", human_bytes(item.bytes), item.reason])
        row.setToolTip(0, item.where)
        row.setToolTip(2, item.reason)
        return row

    def run_cleanup(self) -> None:
        if not self.plan or not self.plan.items:
            return
        if not self._confirm("Clean up", f"Delete {len(self.plan.items)} item(s), freeing "
                             f"{human_bytes(self.plan.bytes)}? This cannot be undone."):
            return
        self.clean_btn.setEnabled(False)
        shown, policy = self.plan, self.policy_form.policy()
        self._run(lambda: self.storage.clean(dry_run=False, expected=shown, policy=policy),
                  self._cleaned)

    def _cleaned(self, plan) -> None:
        self.plan = None
        self.plan_tree.clear()
        self.say(f"Deleted {len(plan.items)} item(s), freed {human_bytes(plan.bytes)}.")
        self._update_buttons()
        self.load_usage()
        self.load_last_run()

    # ------------------------------------------------------------------ backups

    def load_backups(self) -> None:
        self._run(self.storage.list_backups, self._show_backups)

    def _show_backups(self, backups) -> None:
        self.backups = list(backups)
        self.backup_tree.clear()
        for b in self.backups:
            item = QTreeWidgetItem([b.name, b.created_at[:19].replace("T", " "),
                                    human_bytes(b.bytes), b.label])
            item.setData(0, Qt.ItemDataRole.UserRole, b.name)
            self.backup_tree.addTopLevelItem(item)
        self._update_buttons()

    def back_up_now(self) -> None:
        self.backup_btn.setEnabled(False)
        self._run(lambda: self.storage.backup("manual"), self._backed_up)

    def _backed_up(self, info) -> None:
        self.backup_btn.setEnabled(True)
        self.say(f"Backed up to {info.name} ({human_bytes(info.bytes)}).")
        self.load_backups()

    def restore_selected(self) -> None:
        item = self.backup_tree.currentItem()
        if item is None:
            return
        name = item.data(0, Qt.ItemDataRole.UserRole)
        if not self._confirm("Restore the database",
                             f"Replace the database with the backup {name}? Records made "
                             "since then are dropped from the app (the current database is "
                             "kept as a 'before-restore' backup)."):
            return
        self.restore_btn.setEnabled(False)
        self._run(lambda: self.storage.restore(name), self._restored)

    def _restored(self, result: dict) -> None:
        orphans = result.get("orphans") or []
        self.say(f"Restored {result['restored']['name']}; integrity {result['integrity']}"
                 + (f"; {len(orphans)} orphan(s) found: see Cleanup." if orphans else "."),
                 error=result["integrity"] != "ok")
        self.load_backups()
        self.load_usage()

    # ------------------------------------------------------------------ move

    def _after_move(self, result: dict) -> None:
        self.say(f"The data folder is now {result['to']}. MechInterp Studio closes now: "
                 "start it again to work there.")
        self._quit_app()

    def _quit_app(self) -> None:
        from PySide6.QtWidgets import QApplication, QMainWindow

        for w in QApplication.topLevelWidgets():
            if isinstance(w, QMainWindow):
                w.close()

    # ------------------------------------------------------------------ dialogs (tests patch)

    def _confirm(self, title: str, message: str) -> bool:
        return confirm(self, title, message, destructive=True)
