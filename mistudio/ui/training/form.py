"""The new-training form, generated from ``TrainingConfig``'s fields.

Every setting is a widget chosen by the field's type (choice lists from the config
module's constants), labelled from ``SETTING_INFO`` (human label, unit, what the automatic
value 0 means; the config name in the tooltip); settings that do not apply to the chosen
architecture are hidden.
The learning rate follows the width (``scaled_learning_rate``) until the user or a
template sets it. Each change re-validates through ``TrainingConfig.validate`` (the same
check the job runs) and refreshes the memory/time estimate.
"""

from __future__ import annotations

import dataclasses
import math
import re

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QCheckBox, QComboBox, QFormLayout, QGroupBox, QHBoxLayout,
                               QLabel, QLineEdit, QVBoxLayout, QWidget)

from mistudio.paths import human_bytes
from mistudio.sae import config as config_module
from mistudio.sae.config import SWEEPABLE, TrainingConfig, setting_info
from mistudio.templates.scaling import estimate_training, scaled_learning_rate
from mistudio.ui.kit.palette import css, verdict_colour

CHOICES = {
    "architecture": config_module.ARCHITECTURES, "kind": ("sae",),
    "lr_schedule": config_module.LR_SCHEDULES,
    "normalize_activations": config_module.NORMALIZATIONS,
    "device": config_module.DEVICES, "dtype": config_module.DTYPES,
}
# Shown elsewhere (data picker, sweep row, name) or filled in by the app.
NOT_IN_FORM = {"name", "activation_id", "activation_path", "target_activation_id",
               "target_activation_path", "sweep", "member_name", "model_name", "hook_name",
               "hook_name_out", "kind"}
ONLY_FOR = {
    "k": config_module.TOPK_FAMILY, "aux_k": config_module.TOPK_FAMILY,
    "aux_k_coefficient": config_module.TOPK_FAMILY, "l1_coefficient": ("relu",),
    "matryoshka_widths": ("matryoshka_batchtopk",),
    "l1_warmup_fraction": ("relu", "jumprelu"), "l0_coefficient": ("jumprelu",),
    "jumprelu_bandwidth": ("jumprelu",), "jumprelu_init_threshold": ("jumprelu",),
}
GROUPS = (
    ("Architecture", ("architecture", "expansion_factor", "d_sae", "k", "matryoshka_widths",
                      "aux_k",
                      "aux_k_coefficient", "l1_coefficient", "l1_warmup_fraction",
                      "l0_coefficient", "jumprelu_bandwidth", "jumprelu_init_threshold")),
    ("Training", ("total_tokens", "batch_size", "lr", "lr_schedule", "lr_warmup_steps",
                  "lr_decay_fraction", "lr_min_fraction", "adam_beta1", "adam_beta2",
                  "adam_eps", "grad_clip_norm", "seed", "shuffle", "normalize_activations",
                  "normalization_tokens")),
    ("Checkpoints and metrics", ("checkpoint_every_tokens", "checkpoint_every_seconds",
                                 "keep_checkpoints",
                                 "metrics_every_steps", "dead_window_tokens")),
    ("Evaluation in the model", ("eval_tokens", "eval_every_steps")),
    ("Device", ("device", "dtype", "compile")),
)
_SUFFIX = {"k": 1e3, "m": 1e6, "b": 1e9, "g": 1e9}


def parse_number(text: str, integer: bool) -> float | int:
    """'2e6', '2M', '500k', '1_000', '0.5' -> number; raises ValueError with a message."""
    t = text.strip().replace("_", "").replace(",", "").lower()
    m = re.fullmatch(r"([-+]?[0-9.]+(?:e[-+]?\d+)?)\s*([kmbg]?)", t)
    if not m:
        raise ValueError(f"'{text}' is not a number")
    value = float(m.group(1)) * _SUFFIX.get(m.group(2), 1)
    if not math.isfinite(value):
        raise ValueError(f"'{text}' is not a finite number")
    if integer:
        if value != int(value):
            raise ValueError(f"'{text}' must be a whole number")
        return int(value)
    return value


def format_number(value, integer: bool) -> str:
    if integer:
        return str(int(value))
    return f"{value:.6g}"


class TrainingForm(QWidget):
    """Emits ``changed()`` after any edit (debounced validation follows)."""

    changed = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.defaults = TrainingConfig()
        self.field_types = {f.name: type(getattr(self.defaults, f.name))
                            for f in dataclasses.fields(TrainingConfig)}
        self.editors: dict[str, QWidget] = {}
        self.rows: dict[str, tuple[QFormLayout, QLabel, QWidget]] = {}
        self.notes: dict[str, QLabel] = {}  # unit and automatic-value note beside an editor
        self.lr_follows_width = True
        self.d_in: int | None = None
        self.num_rows: int | None = None
        self._loading = False
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        for title, names in GROUPS:
            box = QGroupBox(title)
            form = QFormLayout(box)
            form.setFieldGrowthPolicy(QFormLayout.ExpandingFieldsGrow)
            names = [n for n in names if n in self.field_types]  # settings of this engine
            if not names:
                continue
            for name in names:
                editor = self._make_editor(name)
                label, field = self._make_row(name, editor)
                form.addRow(label, field)
                self.editors[name] = editor
                self.rows[name] = (form, label, field)
            lay.addWidget(box)
        # The sweep: several values of one per-SAE setting, trained together in one job.
        sweep_box = QGroupBox("Sweep (optional)")
        sweep_lay = QHBoxLayout(sweep_box)
        self.sweep_key = QComboBox()
        self.sweep_key.addItem("(none)", "")
        for key in SWEEPABLE:
            self.sweep_key.addItem(setting_info(key).label, key)
            self.sweep_key.setItemData(self.sweep_key.count() - 1, tooltip_for(key),
                                       Qt.ToolTipRole)
        self.sweep_values = QLineEdit()
        self.sweep_values.setPlaceholderText("values, comma-separated: 16, 32, 64")
        self.sweep_key.currentIndexChanged.connect(self._edited)
        self.sweep_values.textChanged.connect(self._edited)
        sweep_lay.addWidget(QLabel("Setting:"))
        sweep_lay.addWidget(self.sweep_key)
        sweep_lay.addWidget(QLabel("Values:"))
        sweep_lay.addWidget(self.sweep_values, 1)
        sweep_box.setToolTip("Train one SAE per value on the same data stream (one read).")
        lay.addWidget(sweep_box)
        self.lr_hint = QLabel()
        self.lr_hint.setStyleSheet(css("text.muted", "font-size: 8pt"))
        self.rows["lr"][0].insertRow(self.rows["lr"][0].getWidgetPosition(
            self.rows["lr"][2])[0] + 1, "", self.lr_hint)
        self.set_config(self.defaults.to_dict(), lr_given=False)

    # ------------------------------------------------------------------ editors

    def _make_row(self, name: str, editor: QWidget) -> tuple[QLabel, QWidget]:
        """The label, and the editor with its unit and what the automatic value means."""
        info = setting_info(name)
        tip = tooltip_for(name)
        label = QLabel(info.label)
        label.setToolTip(tip)
        editor.setToolTip(tip)
        note_text = "  ·  ".join(t for t in (info.unit, info.auto) if t)
        field = QWidget()
        row = QHBoxLayout(field)
        row.setContentsMargins(0, 0, 0, 0)
        if isinstance(editor, QLineEdit):
            editor.setFixedWidth(160)  # numbers: the same column for every field, notes after
        row.addWidget(editor)
        if note_text:
            note = QLabel(note_text)
            note.setObjectName(f"{name}_note")
            note.setStyleSheet(css("text.muted"))
            note.setToolTip(tip)
            row.addWidget(note)
            self.notes[name] = note
        row.addStretch(1)
        return label, field

    def _make_editor(self, name: str) -> QWidget:
        ftype = self.field_types[name]
        if name in CHOICES:
            w = QComboBox()
            for c in CHOICES[name]:
                w.addItem(c, c)
            w.currentIndexChanged.connect(lambda *_: self._edited(name))
        elif ftype is bool:
            w = QCheckBox()
            w.toggled.connect(lambda *_: self._edited(name))
        else:
            w = QLineEdit()
            w.textEdited.connect(lambda *_: self._edited(name))
            if ftype is list:
                w.setPlaceholderText("empty: d_sae/16, d_sae/4")
        w.setObjectName(name)
        return w

    def _edited(self, name: str | None = None) -> None:
        if self._loading:
            return
        if name == "lr":
            self.lr_follows_width = False
        if name in ("architecture",):
            self._update_visibility()
        if name in ("expansion_factor", "d_sae") or name is None:
            self._apply_width_scaled_lr()
        self.changed.emit()

    def _update_visibility(self) -> None:
        arch = self.editors["architecture"].currentData()
        for name, archs in ONLY_FOR.items():
            visible = arch in archs
            form, label, field = self.rows[name]
            label.setVisible(visible)
            field.setVisible(visible)
            self.editors[name].setVisible(visible)

    # ------------------------------------------------------------------ values

    def set_value(self, name: str, value) -> None:
        w = self.editors[name]
        if isinstance(w, QComboBox):
            i = w.findData(value)
            if i >= 0:
                w.setCurrentIndex(i)
        elif isinstance(w, QCheckBox):
            w.setChecked(bool(value))
        elif self.field_types[name] is list:
            w.setText(", ".join(str(v) for v in value or []))
        else:
            w.setText(format_number(value, self.field_types[name] is int))

    def set_config(self, config: dict, *, lr_given: bool | None = None) -> None:
        """Fill the form from settings (defaults for anything missing)."""
        self._loading = True
        try:
            merged = {**self.defaults.to_dict(), **config}
            for name in self.editors:
                if name in merged:
                    self.set_value(name, merged[name])
            sweep = merged.get("sweep") or {}
            key = next(iter(sweep), "")
            self.sweep_key.setCurrentIndex(max(0, self.sweep_key.findData(key)))
            self.sweep_values.setText(", ".join(str(v) for v in sweep.get(key, [])))
            self.lr_follows_width = not ("lr" in config if lr_given is None else lr_given)
        finally:
            self._loading = False
        self._update_visibility()
        self._apply_width_scaled_lr()
        self.changed.emit()

    def set_data_shape(self, d_in: int | None, num_rows: int | None) -> None:
        self.d_in, self.num_rows = d_in, num_rows
        self._apply_width_scaled_lr()
        self.changed.emit()

    def d_sae(self) -> int | None:
        try:
            d_sae = parse_number(self.editors["d_sae"].text(), True)
            exp = parse_number(self.editors["expansion_factor"].text(), False)
        except ValueError:
            return None
        if d_sae:
            return int(d_sae)
        return int(round(exp * self.d_in)) if self.d_in else None

    def _apply_width_scaled_lr(self) -> None:
        d_sae = self.d_sae()
        self._show_automatic_width(d_sae)
        if d_sae:
            lr = scaled_learning_rate(d_sae)
            self.lr_hint.setText(f"suggested for {d_sae:,} latents: {lr:.2g}"
                                 + ("" if self.lr_follows_width else " (you set your own)"))
            if self.lr_follows_width:
                self._loading, was = True, self._loading
                self.editors["lr"].setText(format_number(lr, False))
                self._loading = was
        else:
            self.lr_hint.setText("Pick an activation set to get a learning rate for its width.")

    def _show_automatic_width(self, d_sae: int | None) -> None:
        """Beside an SAE width of 0, the width it works out to for the chosen data."""
        info = setting_info("d_sae")
        text = f"{info.unit}  ·  {info.auto}"
        if self.editors["d_sae"].text().strip() in ("0", "") and d_sae:
            text += f" (= {d_sae:,} latents)"
        self.notes["d_sae"].setText(text)

    def config(self) -> tuple[dict, list[str]]:
        """The settings as a TrainingConfig dict, and the problems reading the fields."""
        out, problems = {}, []
        for name, w in self.editors.items():
            if isinstance(w, QComboBox):
                out[name] = w.currentData()
            elif isinstance(w, QCheckBox):
                out[name] = w.isChecked()
            elif self.field_types[name] is list:  # whole numbers, comma-separated
                try:
                    out[name] = [parse_number(v, True) for v in re.split(r"[,\s;]+", w.text())
                                 if v]
                except ValueError as exc:
                    problems.append(f"{name.replace('_', ' ')}: {exc}.")
            else:
                integer = self.field_types[name] is int
                try:
                    out[name] = parse_number(w.text(), integer)
                except ValueError as exc:
                    problems.append(f"{setting_info(name).label}: {exc}.")
        key = self.sweep_key.currentData()
        if key:
            raw = [v for v in re.split(r"[,\s;]+", self.sweep_values.text().strip()) if v]
            if not raw:
                problems.append(f"Sweep: give the values of {setting_info(key).label} "
                                f"({key}), separated by commas.")
            else:
                ftype = self.field_types[key]
                try:
                    values = raw if ftype is str else [parse_number(v, ftype is int) for v in raw]
                    out["sweep"] = {key: values}
                except ValueError as exc:
                    problems.append(f"Sweep values: {exc}.")
        return out, problems

    def estimate(self, device: str, dtype: str, cpu_cores: int):
        config, problems = self.config()
        if problems or not self.d_in:
            return None
        return estimate_training(config, self.d_in, device=device, dtype=dtype,
                                 cpu_cores=cpu_cores)


def tooltip_for(name: str) -> str:
    """The help of setting ``name``, what its automatic value means, and its config name
    (what ``--set``, config files and templates call it)."""
    info = setting_info(name)
    parts = [info.help]
    if info.auto:
        parts.append(info.auto + ".")
    parts.append(f"Config name: {name}")
    return "\n".join(p for p in parts if p)


def describe_estimate(est, available_bytes: int | None, where: str) -> tuple[str, str]:
    """(html text, verdict) for the estimate label."""
    if est is None:
        return "Pick an activation set to see the memory and time estimate.", ""
    verdict = est.verdict(available_bytes)
    color = verdict_colour(verdict)
    t = est.seconds
    time_text = "–" if t is None else (f"{t / 3600:.1f} h" if t >= 3600 else
                                       f"{t / 60:.0f} min" if t >= 60 else f"{t:.0f} s")
    avail = f" of {human_bytes(available_bytes)} free" if available_bytes else ""
    badge = f" <b style='color:{color}'>{verdict}</b>" if verdict else ""
    return (f"{est.saes} SAE(s) of {est.d_sae:,} latents: weights "
            f"{human_bytes(est.weights_bytes)} + optimizer {human_bytes(est.optimizer_bytes)} + "
            f"activations {human_bytes(est.activations_bytes)} = "
            f"<b>{human_bytes(est.total_bytes)}</b>{avail} on {where}{badge}. "
            f"Time: about {time_text} (rough; x2 either way). "
            f"Checkpoint: {human_bytes(est.checkpoint_bytes)} each.", verdict)


__all__ = ["TrainingForm", "describe_estimate", "parse_number", "tooltip_for"]
