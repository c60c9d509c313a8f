"""What a training card's buttons do (pause, resume, resume from a checkpoint, duplicate,
export, delete) and the checkpoint actions of the Checkpoints page: the Training tab's user
actions, kept apart from its loading and drawing (``tab.py``). A mixin of ``TrainingTab``: it
uses the tab's ``studio``, ``trainings``, ``state``, ``jobs``, ``selected``, ``latest``,
``_guard`` and pages."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QFileDialog, QMessageBox

from mistudio.app.jobs import JobRecord


class TrainingCardActions:
    def _on_card_action(self, action: str, key: str) -> None:
        job = self.latest(key)
        if action == "pause":
            self.studio.jobs.pause(job.id)
        elif action == "resume":
            self.studio.jobs.resume(job.id)
        elif action == "cancel":
            self.studio.jobs.cancel(job.id)
        elif action == "resume_checkpoint":
            self.resume_training(key)
        elif action == "duplicate":
            self.duplicate(key)
        elif action == "export":
            self._export(key)
        elif action == "delete":
            self.delete_training(key, confirm=True)

    def resume_training(self, key: str, checkpoint: str | None = None) -> JobRecord | None:
        job = self._guard(lambda: self.trainings.resume_training(
            self.latest(key).target, checkpoint=checkpoint))
        if job is not None:
            self.state.remember(job)
            self._refresh_card(key)
            self._update_banner()
            if key == self.selected:
                self.select(key)
        return job

    def _resume_from_path(self, path: str) -> None:
        if self.selected:
            self.resume_training(self.selected, path)

    def duplicate(self, key: str) -> None:
        config = self.trainings.settings_to_duplicate(self.latest(key))
        config["name"] = f"{config.get('name') or self.latest(key).title} copy".strip()
        self.pages.setCurrentWidget(self.new_page)
        self.new_training.load_config(config)

    def delete_training(self, key: str, *, confirm: bool = False) -> bool:
        if confirm and QMessageBox.question(
                self, "Delete training?",
                f"Delete '{self.latest(key).title}' with its checkpoints, SAEs and metrics? "
                "This cannot be undone.") != QMessageBox.Yes:
            return False
        if self._guard(self.trainings.delete_training, self.latest(key).target) is None and \
                any(self.studio.jobs.find(j.id) for j in self.jobs[key]):
            return False
        self.state.forget(key)
        self.reload()
        return True

    def _delete_checkpoint(self, path: str) -> None:
        if self.selected and QMessageBox.question(
                self, "Delete checkpoint?", f"Delete the checkpoint {path}?") == QMessageBox.Yes:
            self._guard(self.trainings.delete_checkpoint_at, self.latest(self.selected).target,
                        path)
            self._refresh_checkpoints()

    def export_checkpoint(self, path: str, destination: str):
        """Queue the export of one checkpoint of the selected training as SAELens folder(s)."""
        job = self.latest(self.selected)
        return self._guard(self.studio.workflows.start_checkpoint_export,
                           job.target or job.id, path, destination)

    def _export_checkpoint(self, path: str) -> None:
        if not self.selected or self.selected not in self.jobs:
            return
        dest = QFileDialog.getExistingDirectory(self, "Export checkpoint to folder")
        if dest and self.export_checkpoint(path, dest) is not None:
            QMessageBox.information(self, "Exporting", "The checkpoint is being exported; "
                                    "the Jobs panel shows when it is done.")

    def _export(self, key: str | None) -> None:
        if key is None:
            return
        job = self.latest(key)
        result = self.trainings.job_result(job) or {}
        members = [s["member"] for s in result.get("saes", [])]
        if not members:
            QMessageBox.information(self, "Nothing to export",
                                    "Only a completed training has SAEs to export.")
            return
        dest = QFileDialog.getExistingDirectory(self, "Export SAE to folder")
        if not dest:
            return
        # export writes into a new or empty folder: one named after the training (and the
        # member, for a sweep) inside the chosen one
        folder = Path(dest) / (job.target or job.id)
        for member in members:
            out = self._guard(self.trainings.export_saelens, job.target, member,
                              folder if len(members) == 1 else folder / member)
            if out is None:
                return
        QMessageBox.information(self, "Exported", f"Saved {len(members)} SAE(s) to {folder}.")
