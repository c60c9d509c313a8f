"""Training templates: built-ins, saved ones, favourites, JSON import/export, last-used settings.

Exposed as ``studio.templates``. Qt-free; the Training tab, the CLI and tests use it.
A template is a named dict of training settings (the training form's field names). The
built-in recipes live in code (:mod:`mistudio.templates.builtin`) and cannot be edited or
deleted, but can be favourited, exported, and saved under a new name.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Iterable

from mistudio.errors import UserError
from mistudio.paths import atomic_write_json
from mistudio.store.db import new_id
from mistudio.templates.builtin import BUILTIN_PREFIX, BUILTIN_TEMPLATES, builtin_by_id
from mistudio.templates.repo import TemplatesRepo, TrainingTemplate
from mistudio.templates.validation import validate_config, validate_template_settings

EXPORT_FORMAT = "mistudio-training-templates"
EXPORT_VERSION = 1
MAX_IMPORT_BYTES = 2 * 2**20
MAX_NAME_LEN = 120
LAST_USED_KEY = "last_used_training_settings"


def _clean_name(name: str) -> str:
    name = " ".join(str(name or "").split())
    if not name:
        raise UserError("A template needs a name.", hint="Type a name, e.g. 'TopK 16x layer 6'.")
    if len(name) > MAX_NAME_LEN:
        raise UserError(f"That name is {len(name)} characters long; at most {MAX_NAME_LEN} "
                        "are allowed.")
    return name


class TemplateService:
    def __init__(self, studio):
        self.studio = studio
        self.repo = TemplatesRepo(studio.store)

    # ------------------------------------------------------------------ reading

    def list(self, *, favourites_first: bool = False) -> list[TrainingTemplate]:
        favs = self.repo.favourites()
        builtins = [TrainingTemplate(id=b.id, name=b.name, description=b.description,
                                     config=dict(b.config), builtin=True,
                                     favourite=b.id in favs) for b in BUILTIN_TEMPLATES]
        items = builtins + self.repo.list()
        if favourites_first:
            items.sort(key=lambda t: not t.favourite)  # stable: keeps built-ins, then by name
        return items

    def get(self, template: str) -> TrainingTemplate:
        """By id (``builtin:topk``, ``tt_...``), built-in key, or name (case-insensitive)."""
        b = builtin_by_id(template)
        if b is not None:
            return TrainingTemplate(id=b.id, name=b.name, description=b.description,
                                    config=dict(b.config), builtin=True,
                                    favourite=b.id in self.repo.favourites())
        t = self.repo.get(template) or self.repo.find_by_name(template)
        if t is None:
            for b in BUILTIN_TEMPLATES:
                if b.name.lower() == str(template).strip().lower():
                    return self.get(b.id)
            raise UserError(f"No training template called {template!r}.",
                            hint="`mistudio templates list` shows the templates.")
        return t

    def name_taken(self, name: str) -> bool:
        low = " ".join(str(name).split()).lower()
        return (self.repo.find_by_name(low) is not None
                or any(b.name.lower() == low for b in BUILTIN_TEMPLATES))

    # ------------------------------------------------------------------ writing

    def save(self, name: str, config: dict, *, description: str = "",
             overwrite: bool = False) -> TrainingTemplate:
        """Save the settings as a template. An existing saved template of that name is
        replaced only with ``overwrite=True``; built-in names are reserved."""
        name = _clean_name(name)
        config = validate_template_settings(config)
        if any(b.name.lower() == name.lower() for b in BUILTIN_TEMPLATES):
            raise UserError(f"'{name}' is the name of a built-in template.",
                            hint="Choose another name.")
        existing = self.repo.find_by_name(name)
        if existing is not None:
            if not overwrite:
                raise UserError(f"A template called '{existing.name}' already exists.",
                                hint="Choose another name, or confirm to replace it.")
            self.repo.update(existing.id, name=name, description=description, config=config)
            return self.repo.get(existing.id)
        template_id = new_id("tt")
        self.repo.insert(template_id, name, description, config)
        return self.repo.get(template_id)

    def rename(self, template_id: str, new_name: str) -> TrainingTemplate:
        t = self.get(template_id)
        if t.builtin:
            raise UserError("Built-in templates cannot be renamed.",
                            hint="Save it under a new name instead.")
        new_name = _clean_name(new_name)
        other = self.repo.find_by_name(new_name)
        if (other is not None and other.id != t.id) or any(
                b.name.lower() == new_name.lower() for b in BUILTIN_TEMPLATES):
            raise UserError(f"A template called '{new_name}' already exists.",
                            hint="Choose another name.")
        self.repo.update(t.id, name=new_name)
        return self.repo.get(t.id)

    def delete(self, template_id: str) -> None:
        t = self.get(template_id)
        if t.builtin:
            raise UserError("Built-in templates cannot be deleted.",
                            hint="Remove it from your favourites instead.")
        self.repo.delete(t.id)

    def set_favourite(self, template_id: str, favourite: bool = True) -> TrainingTemplate:
        t = self.get(template_id)
        self.repo.set_favourite(t.id, favourite)
        return self.get(t.id)

    # ------------------------------------------------------------------ import / export

    def export(self, template_ids: Iterable[str], path: str | Path) -> Path:
        templates = [self.get(i) for i in template_ids]
        if not templates:
            raise UserError("No templates chosen to export.", hint="Select one or more.")
        doc = {"format": EXPORT_FORMAT, "version": EXPORT_VERSION,
               "templates": [t.to_export() for t in templates]}
        return atomic_write_json(Path(path), doc)

    def import_file(self, path: str | Path) -> list[TrainingTemplate]:
        """Import the templates in a JSON file; a name already used gets ' (2)', ' (3)'..."""
        path = Path(path)
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise UserError(f"Cannot read {path}: {exc.strerror or exc}.") from exc
        if size > MAX_IMPORT_BYTES:
            raise UserError(f"{path.name} is {size / 2**20:.1f} MB; a template file is at most "
                            f"{MAX_IMPORT_BYTES // 2**20} MB.", hint="Is this the right file?")
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError as exc:
            raise UserError(f"{path.name} is not a text file.",
                            hint="Pick a .json file exported from MechInterp Studio.") from exc
        except json.JSONDecodeError as exc:
            raise UserError(f"{path.name} is not valid JSON (line {exc.lineno}, column "
                            f"{exc.colno}: {exc.msg}).",
                            hint="Pick a .json file exported from MechInterp Studio.") from exc
        entries = self._entries(doc, path.name)
        # Validate everything before saving anything: an import is all or nothing.
        prepared = []
        for i, entry in enumerate(entries, 1):
            where = f"Template {i} in {path.name}"
            if not isinstance(entry, dict):
                raise UserError(f"{where} is not a JSON object.")
            name = _clean_name(entry.get("name", ""))
            where = f"Template {i} ('{name}') in {path.name}"
            config = validate_template_settings(entry.get("config"), where=where)
            description = str(entry.get("description") or "")
            prepared.append((name, description, config))
        taken = {t.name.lower() for t in self.list()}
        saved = []
        for name, description, config in prepared:
            unique, n = name, 2
            while unique.lower() in taken:
                unique = f"{name} ({n})"
                n += 1
            taken.add(unique.lower())
            saved.append(self.save(unique, config, description=description))
        return saved

    @staticmethod
    def _entries(doc, filename: str) -> list:
        if isinstance(doc, dict) and "templates" in doc:
            fmt = doc.get("format")
            if fmt not in (None, EXPORT_FORMAT):
                raise UserError(f"{filename} is a '{fmt}' file, not a training template file.")
            version = doc.get("version", 1)
            if not isinstance(version, int) or version > EXPORT_VERSION:
                raise UserError(f"{filename} was written by a newer MechInterp Studio "
                                f"(format version {version}).",
                                hint="Update the app to import it.")
            entries = doc["templates"]
            if not isinstance(entries, list):
                raise UserError(f"{filename}: 'templates' must be a list.")
            if not entries:
                raise UserError(f"{filename} holds no templates.")
            return entries
        if isinstance(doc, dict) and "config" in doc:
            return [doc]  # a single template object
        raise UserError(f"{filename} does not look like a training template file (no "
                        "'templates' list and no 'config').",
                        hint="Export a template from the app to see the expected layout.")

    # ------------------------------------------------------------------ last used

    def last_used(self) -> dict | None:
        value = self.repo.get_state(LAST_USED_KEY)
        return value if isinstance(value, dict) else None

    def remember_last_used(self, config: dict) -> None:
        self.repo.set_state(LAST_USED_KEY, validate_config(config, where="The settings"))

    # ------------------------------------------------------------------ applying

    @staticmethod
    def merge(defaults: dict, template: TrainingTemplate | dict,
              known_fields: Iterable[str] | None = None) -> tuple[dict, list[str]]:
        """Defaults overlaid with the template's settings.

        Returns the merged settings and the template's setting names that are not among
        ``known_fields`` (dropped; e.g. from a newer app version), so the UI can say so.
        """
        config = template.config if isinstance(template, TrainingTemplate) else template
        known = set(known_fields) if known_fields is not None else None
        merged = dict(defaults)
        ignored = []
        for key, value in config.items():
            if known is not None and key not in known:
                ignored.append(key)
                continue
            merged[key] = value
        return merged, sorted(ignored)


def _same_setting(a, b) -> bool:
    """Equal as settings: numbers within the precision a form field shows (6 digits)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b if isinstance(a, bool) and isinstance(b, bool) else False
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-12)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same_setting(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same_setting(x, y) for x, y in zip(a, b))
    return a == b


def template_differences(settings: dict, template: TrainingTemplate | dict,
                         compared: Iterable[str] | None = None) -> list[tuple[str, object, object]]:
    """The template's settings that ``settings`` no longer hold: (name, template's value,
    current value), in the template's order. Only names in ``compared`` (default: all of
    ``settings``, plus ``sweep``) are looked at; a missing sweep counts as no sweep."""
    config = template.config if isinstance(template, TrainingTemplate) else template
    names = set(compared) if compared is not None else set(settings) | {"sweep"}
    out = []
    for key, value in config.items():
        if key not in names:
            continue
        current = settings.get(key, {} if key == "sweep" else None)
        if not _same_setting(value, current):
            out.append((key, value, current))
    return out


__all__ = ["BUILTIN_PREFIX", "TemplateService", "TrainingTemplate", "validate_config",
           "template_differences", "validate_template_settings"]
