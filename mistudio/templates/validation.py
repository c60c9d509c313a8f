"""The one check for training settings entering the app as a template.

``templates save``, ``templates import`` (every template of a file before any is saved) and
the Templates tab all call :func:`validate_template_settings`, so a template that is stored
is one that ``mistudio train`` and the Training form accept: every name is a training
setting (a misspelling gets the closest valid names), every value has the setting's type,
and the settings over the defaults pass :meth:`TrainingConfig.validate`, the check the
training job runs.
"""

from __future__ import annotations

import math

from mistudio.errors import UserError
from mistudio.sae.config import (TrainingConfig, coerce_setting, setting_names,
                                 unknown_settings_error)

MAX_CONFIG_KEYS = 300
# Stands in for the data a template does not name, so the rest of the settings can be
# checked by the same validation a training runs.
_PLACEHOLDER_DATA = "(the activation set chosen when training)"


def validate_config(config, *, where: str = "The template") -> dict:
    """Check that ``config`` is a flat-ish JSON object of settings; return a clean copy.

    Only the shape (what can be stored as JSON); :func:`validate_template_settings` also
    checks the names and values against the training settings.
    """
    if not isinstance(config, dict):
        raise UserError(f"{where} has no settings object ('config' must be a JSON object, "
                        f"not {type(config).__name__}).",
                        hint="Export a template from the app to see the expected layout.")
    if len(config) > MAX_CONFIG_KEYS:
        raise UserError(f"{where} has {len(config)} settings; at most {MAX_CONFIG_KEYS} are "
                        "allowed.", hint="Is this really a training template file?")

    def check(value, key: str, depth: int):
        if value is None or isinstance(value, (bool, int, str)):
            return value
        if isinstance(value, float):
            if not math.isfinite(value):
                raise UserError(f"{where}: setting '{key}' is {value}, which is not a number "
                                "a training can use.", hint="Use a finite value.")
            return value
        if isinstance(value, (list, tuple)) and depth < 3:
            return [check(v, key, depth + 1) for v in value]
        if isinstance(value, dict) and depth < 3:
            return {str(k): check(v, f"{key}.{k}", depth + 1) for k, v in value.items()}
        raise UserError(f"{where}: setting '{key}' has a value of type {type(value).__name__} "
                        "that a template cannot hold.",
                        hint="Settings are numbers, text, true/false or lists of those.")

    clean = {}
    for key, value in config.items():
        if not isinstance(key, str) or not key.strip():
            raise UserError(f"{where} has a setting with an empty or non-text name.")
        clean[key] = check(value, key, 0)
    return clean


def validate_template_settings(config, *, where: str = "The template") -> dict:
    """The settings of one template, checked as a training would check them.

    Returns a clean copy with each value in its setting's type (``"5"`` for an integer
    setting becomes ``5``); raises :class:`UserError` naming ``where`` and the bad setting.
    """
    clean = validate_config(config, where=where)
    clean.pop("config_version", None)  # written by TrainingConfig.to_dict; not a setting
    unknown = sorted(set(clean) - set(setting_names()))
    if unknown:
        raise unknown_settings_error(unknown, where)
    try:
        typed = {name: coerce_setting(name, value) for name, value in clean.items()}
        full = dict(typed)
        if not (full.get("activation_id") or full.get("activation_path")):
            full["activation_path"] = _PLACEHOLDER_DATA
        if not (full.get("target_activation_id") or full.get("target_activation_path")):
            full["target_activation_path"] = _PLACEHOLDER_DATA
        TrainingConfig.from_dict(full).validate()
    except UserError as exc:
        message = exc.message[:1].lower() + exc.message[1:]
        raise UserError(f"{where}: {message}", hint=exc.hint) from exc
    return typed


__all__ = ["MAX_CONFIG_KEYS", "validate_config", "validate_template_settings"]
