"""The cleanup policy's rules as a form: one control per rule with its help text. Used by
File > Storage > Cleanup and by File > Settings (both save the same ``cleanup_*`` settings)."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QCheckBox, QDoubleSpinBox, QFormLayout, QSpinBox, QWidget

from mistudio.app.storage_cleanup import CleanupPolicy
from mistudio.settings import Settings
from mistudio.ui.kit.labels import hint_label


class CleanupPolicyForm(QWidget):
    changed = Signal()

    def __init__(self, policy: CleanupPolicy, parent: QWidget | None = None, *,
                 compact: bool = False):
        super().__init__(parent)
        form = QFormLayout(self)
        form.setContentsMargins(0, 0, 0, 0)

        def add(label: str, widget, setting: str):
            form.addRow(label, widget)
            if not compact:
                form.addRow("", hint_label(Settings.help(setting)))
            else:
                widget.setToolTip(Settings.help(setting))

        self.tmp = QCheckBox("Delete tmp/ of no live job")
        add("Temporary files", self.tmp, "cleanup_tmp")
        self.orphans = QCheckBox("Delete orphan folders and records")
        add("Orphans", self.orphans, "cleanup_orphans")
        self.cache_limit = QDoubleSpinBox(minimum=0, maximum=100_000, decimals=2, suffix=" GB")
        self.cache_limit.setSpecialValueText("never trim")
        add("Cache limit", self.cache_limit, "cleanup_cache_limit_gb")
        self.keep_sets = QSpinBox(minimum=0, maximum=100_000)
        self.keep_sets.setSpecialValueText("keep all")
        add("Activation sets kept", self.keep_sets, "cleanup_keep_activation_sets")
        self.thin = QCheckBox("Thin finished trainings' checkpoints")
        add("Checkpoints", self.thin, "cleanup_thin_checkpoints")
        self.kept = QSpinBox(minimum=2, maximum=1000)
        add("Checkpoints kept", self.kept, "cleanup_checkpoints_kept")
        self.visuals = QCheckBox("Delete feature maps and analyses of deleted SAEs")
        add("Feature visualisations", self.visuals, "cleanup_feature_visuals")
        self.at_startup = QCheckBox("Run this policy in the background at start-up")
        add("At start-up", self.at_startup, "cleanup_at_startup")
        for spin in (self.cache_limit, self.keep_sets, self.kept):
            spin.setMaximumWidth(160)
        self.set_policy(policy)
        for box in (self.tmp, self.orphans, self.thin, self.visuals, self.at_startup):
            box.toggled.connect(self._changed)
        for spin in (self.cache_limit, self.keep_sets, self.kept):
            spin.valueChanged.connect(self._changed)

    def _changed(self, *_):
        self.kept.setEnabled(self.thin.isChecked())
        self.changed.emit()

    def set_policy(self, p: CleanupPolicy) -> None:
        self.tmp.setChecked(p.tmp)
        self.orphans.setChecked(p.orphans)
        self.cache_limit.setValue(p.cache_limit_gb)
        self.keep_sets.setValue(p.keep_activation_sets)
        self.thin.setChecked(p.thin_checkpoints)
        self.kept.setValue(p.checkpoints_kept)
        self.kept.setEnabled(p.thin_checkpoints)
        self.visuals.setChecked(p.feature_visuals)
        self.at_startup.setChecked(p.at_startup)

    def policy(self) -> CleanupPolicy:
        return CleanupPolicy(tmp=self.tmp.isChecked(), orphans=self.orphans.isChecked(),
                             cache_limit_gb=self.cache_limit.value(),
                             keep_activation_sets=self.keep_sets.value(),
                             thin_checkpoints=self.thin.isChecked(),
                             checkpoints_kept=self.kept.value(),
                             feature_visuals=self.visuals.isChecked(),
                             at_startup=self.at_startup.isChecked())
