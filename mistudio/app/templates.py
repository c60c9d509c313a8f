"""Training templates: built-ins, saved ones, favourites, JSON import/export, last-used settings.

Exposed as ``studio.templates``. Qt-free; the Training tab, the CLI and tests use it.
Training and extraction templates are one system (``kind``). Sources of truth: the user's
saved templates are rows of ``templates``, favourites, use counts and last use rows of
``template_usage`` (for built-in and saved ones alike); the built-in recipes are code
(:mod:`mistudio.templates.builtin`, :mod:`mistudio.templates.extraction_builtin`);
``export``/``import_file`` write and read the JSON files users share (training templates).
A template is a named dict of training settings (the training form's field names). The
built-in recipes live in code (:mod:`mistudio.templates.builtin`) and cannot be edited or
deleted, but can be favourited, exported, and saved under a new name.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

from mistudio.errors import UserError
from mistudio.paths import atomic_write_json
from mistudio.store.db import Store, new_id
from mistudio.activations.choices import check_extraction_settings
from mistudio.templates.builtin import BUILTIN_PREFIX, BUILTIN_TEMPLATES
from mistudio.templates.extraction_builtin import BUILTIN_EXTRACTION_TEMPLATES
from mistudio.templates.repository import KINDS, Template, TemplatesRepo
from mistudio.templates.validation import validate_config, validate_template_settings

EXPORT_FORMAT = "mistudio-training-templates"
EXPORT_FORMATS = {"training": EXPORT_FORMAT, "extraction": "mistudio-extraction-templates"}
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
    """Training and extraction templates in one system: built-in recipes (code), the user's
    saved ones (rows), favourites, use counts and last use of both kinds (rows)."""

    def __init__(self, *, store: Store):
        self.store = store
        self.repos = {kind: TemplatesRepo(store, kind) for kind in KINDS}
        self.repo = self.repos["training"]  # the training form's last-used state lives here

    def _repo(self, kind: str) -> TemplatesRepo:
        try:
            return self.repos[kind]
        except KeyError:
            raise UserError(f"Unknown template kind {kind!r}.",
                            hint=f"Use one of {', '.join(KINDS)}.") from None

    @staticmethod
    def _builtins(kind: str):
        return BUILTIN_TEMPLATES if kind == "training" else BUILTIN_EXTRACTION_TEMPLATES

    def _builtin(self, b, kind: str, usage: dict) -> Template:
        u = usage.get(b.id)
        return Template(id=b.id, name=b.name, description=b.description,
                        settings=dict(b.config), kind=kind, builtin=True,
                        favourite=bool(u and u.favourite), use_count=u.use_count if u else 0,
                        last_used_at=u.last_used_at if u else "")

    # ------------------------------------------------------------------ reading

    def list(self, *, kind: str = "training", favourites_first: bool = False) -> list[Template]:
        repo = self._repo(kind)
        usage = repo.usage()
        items = [self._builtin(b, kind, usage) for b in self._builtins(kind)] + repo.list()
        if favourites_first:
            items.sort(key=lambda t: not t.favourite)  # stable: keeps built-ins, then by name
        return items

    def get(self, template: str, *, kind: str = "training") -> Template:
        """By id (``builtin:topk``, ``tt_...``), built-in key, or name (case-insensitive)."""
        repo = self._repo(kind)
        ref = str(template).strip()
        for b in self._builtins(kind):
            if ref in (b.id, b.key) or b.name.lower() == ref.lower():
                return self._builtin(b, kind, repo.usage())
        t = repo.get(ref) or repo.find_by_name(ref)
        if t is None:
            hint = ("`mistudio templates list` shows the templates." if kind == "training"
                    else "`mistudio extract templates` lists them.")
            raise UserError(f"No {kind} template called {template!r}.", hint=hint)
        return t

    def find_saved(self, name: str, *, kind: str = "training") -> Template | None:
        """The user's saved template of this name (any case), or None."""
        return self._repo(kind).find_by_name(" ".join(str(name).split()))

    def name_taken(self, name: str, *, kind: str = "training") -> bool:
        low = " ".join(str(name).split()).lower()
        return (self._repo(kind).find_by_name(low) is not None
                or any(b.name.lower() == low for b in self._builtins(kind)))

    # ------------------------------------------------------------------ writing

    def _check(self, settings, kind: str, where: str = "The template") -> dict:
        if kind == "training":
            return validate_template_settings(settings)
        return check_extraction_settings(settings)

    def save(self, name: str, settings: dict, *, kind: str = "training", description: str = "",
             overwrite: bool = False) -> Template:
        """Save the settings as a template. An existing saved template of that name is
        replaced only with ``overwrite=True``; built-in names are reserved."""
        repo = self._repo(kind)
        name = _clean_name(name)
        settings = self._check(settings, kind)
        if any(b.name.lower() == name.lower() for b in self._builtins(kind)):
            raise UserError(f"'{name}' is the name of a built-in template.",
                            hint="Choose another name.")
        existing = repo.find_by_name(name)
        if existing is not None:
            if not overwrite:
                raise UserError(f"A template called '{existing.name}' already exists.",
                                hint="Choose another name, or confirm to replace it.")
            repo.update(existing.id, name=name, description=description, settings=settings)
            return repo.get(existing.id)
        template_id = new_id("tt" if kind == "training" else "et")
        repo.insert(template_id, name, description, settings)
        return repo.get(template_id)

    def rename(self, template_id: str, new_name: str, *, kind: str = "training") -> Template:
        repo = self._repo(kind)
        t = self.get(template_id, kind=kind)
        if t.builtin:
            raise UserError("Built-in templates cannot be renamed.",
                            hint="Save it under a new name instead.")
        new_name = _clean_name(new_name)
        other = repo.find_by_name(new_name)
        if (other is not None and other.id != t.id) or any(
                b.name.lower() == new_name.lower() for b in self._builtins(kind)):
            raise UserError(f"A template called '{new_name}' already exists.",
                            hint="Choose another name.")
        repo.update(t.id, name=new_name)
        return repo.get(t.id)

    def update(self, template_id: str, settings: dict, *, description: str | None = None,
               kind: str = "training") -> Template:
        """Replace a saved template's settings (checked like a save: errors name the key)."""
        t = self.get(template_id, kind=kind)
        if t.builtin:
            raise UserError("Built-in templates cannot be edited.",
                            hint="Duplicate it and edit the copy.")
        fields = {"settings": self._check(settings, kind)}
        if description is not None:
            fields["description"] = str(description)
        self._repo(kind).update(t.id, **fields)
        return self._repo(kind).get(t.id)

    def free_name(self, name: str, *, kind: str = "training") -> str:
        """``name``, or ``name (2)``, ``name (3)``... whichever no template of ``kind`` uses."""
        unique, n = name, 2
        while self.name_taken(unique, kind=kind):
            unique = f"{name} ({n})"
            n += 1
        return unique

    def duplicate(self, template_id: str, new_name: str | None = None, *,
                  kind: str = "training") -> Template:
        """A saved copy of any template (built-ins included: the way to edit one)."""
        t = self.get(template_id, kind=kind)
        name = _clean_name(new_name) if new_name else self.free_name(f"{t.name} copy", kind=kind)
        return self.save(name, dict(t.settings), kind=kind, description=t.description)

    def delete(self, template_id: str, *, kind: str = "training") -> None:
        t = self.get(template_id, kind=kind)
        if t.builtin:
            raise UserError("Built-in templates cannot be deleted.",
                            hint="Remove it from your favourites instead.")
        self._repo(kind).delete(t.id)

    def set_favourite(self, template_id: str, favourite: bool = True, *,
                      kind: str = "training") -> Template:
        t = self.get(template_id, kind=kind)
        self._repo(kind).set_favourite(t.id, favourite)
        return self.get(t.id, kind=kind)

    def record_use(self, template_id: str, *, kind: str = "training") -> Template:
        """Count one use of a template (applied to a form) and remember when."""
        t = self.get(template_id, kind=kind)
        self._repo(kind).record_use(t.id)
        return self.get(t.id, kind=kind)

    # ---------------------------------------------------- usage of other saved settings
    # Steering presets are files, not template rows; their favourite, use count and last
    # use live in the same usage rows under an id the caller chooses ("preset:<name>").

    def usage(self) -> dict:
        return self.repo.usage()

    def record_usage(self, usage_id: str) -> None:
        self.repo.record_use(usage_id)

    def set_usage_favourite(self, usage_id: str, favourite: bool) -> None:
        self.repo.set_favourite(usage_id, favourite)

    def move_usage(self, old_id: str, new_id: str) -> None:
        self.repo.move_usage(old_id, new_id)

    def forget_usage(self, usage_id: str) -> None:
        self.repo.forget_usage(usage_id)

    # ------------------------------------------------------------------ import / export

    def export(self, template_ids: Iterable[str], path: str | Path, *,
               kind: str = "training") -> Path:
        templates = [self.get(i, kind=kind) for i in template_ids]
        if not templates:
            raise UserError("No templates chosen to export.", hint="Select one or more.")
        doc = {"format": EXPORT_FORMATS[kind], "version": EXPORT_VERSION,
               "templates": [t.to_export() for t in templates]}
        return atomic_write_json(Path(path), doc)

    def import_file(self, path: str | Path, *, kind: str = "training") -> list[Template]:
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
        self._repo(kind)
        entries = self._entries(doc, path.name, kind)
        # Validate everything before saving anything: an import is all or nothing.
        prepared = []
        for i, entry in enumerate(entries, 1):
            where = f"Template {i} in {path.name}"
            if not isinstance(entry, dict):
                raise UserError(f"{where} is not a JSON object.")
            name = _clean_name(entry.get("name", ""))
            where = f"Template {i} ('{name}') in {path.name}"
            if kind == "training":
                config = validate_template_settings(entry.get("config"), where=where)
            else:
                try:
                    config = check_extraction_settings(validate_config(entry.get("config"),
                                                                       where=where))
                except UserError as exc:  # validate_config's message already names it
                    message = exc.message if exc.message.startswith(where) else \
                        f"{where}: {exc.message}"
                    raise UserError(message, hint=exc.hint) from exc
            description = str(entry.get("description") or "")
            prepared.append((name, description, config))
        taken = {t.name.lower() for t in self.list(kind=kind)}
        saved = []
        for name, description, config in prepared:
            unique, n = name, 2
            while unique.lower() in taken:
                unique = f"{name} ({n})"
                n += 1
            taken.add(unique.lower())
            saved.append(self.save(unique, config, kind=kind, description=description))
        return saved

    @staticmethod
    def _entries(doc, filename: str, kind: str = "training") -> list:
        if isinstance(doc, dict) and "templates" in doc:
            fmt = doc.get("format")
            if fmt not in (None, EXPORT_FORMATS[kind]):
                raise UserError(f"{filename} is a '{fmt}' file, not a {kind} template file.",
                                hint="Import it as the kind of template it holds.")
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
        raise UserError(f"{filename} does not look like a {kind} template file (no "
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
    def merge(defaults: dict, template: Template | dict,
              known_fields: Iterable[str] | None = None) -> tuple[dict, list[str]]:
        """Defaults overlaid with the template's settings.

        Returns the merged settings and the template's setting names that are not among
        ``known_fields`` (dropped; e.g. from a newer app version), so the UI can say so.
        """
        config = template.settings if isinstance(template, Template) else template
        known = set(known_fields) if known_fields is not None else None
        merged = dict(defaults)
        ignored = []
        for key, value in config.items():
            if known is not None and key not in known:
                ignored.append(key)
                continue
            merged[key] = value
        return merged, sorted(ignored)


__all__ = ["BUILTIN_PREFIX", "TemplateService", "Template", "validate_config",
           "validate_template_settings"]
