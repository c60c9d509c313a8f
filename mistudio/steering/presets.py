"""Presets: named sets of interventions, saved as JSON in ``steering/presets/``.

A preset records the identity of the SAE it was made with (hook point, ``d_sae``, the
SHA-256 of its weights file) and refuses to apply to another SAE: feature 123 of one SAE
means nothing in another.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

from mistudio.errors import UserError
from mistudio.paths import atomic_write_json
from mistudio.steering.interventions import SCOPES, Column, Intervention

FORMAT = "mistudio.steering.preset"
VERSION = 1

_HASHES: dict[tuple, str] = {}
_HASH_LOCK = threading.Lock()


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file, remembered per (path, size, mtime) for this process."""
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    with _HASH_LOCK:
        if key in _HASHES:
            return _HASHES[key]
    h = hashlib.sha256()
    with open(p, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    digest = h.hexdigest()
    with _HASH_LOCK:
        _HASHES[key] = digest
    return digest


@dataclass
class SAEIdentity:
    hook_name: str
    d_sae: int
    file_hash: str
    sae_id: str = ""
    name: str = ""

    def mismatch(self, other: "SAEIdentity") -> str:
        """'' when ``other`` is the same SAE, else what differs."""
        if self.hook_name != other.hook_name:
            return f"hook point {self.hook_name} (this SAE: {other.hook_name})"
        if int(self.d_sae) != int(other.d_sae):
            return f"{self.d_sae} features (this SAE: {other.d_sae})"
        if self.file_hash != other.file_hash:
            return "different weights (file hash)"
        return ""


@dataclass
class Preset:
    name: str
    sae: SAEIdentity
    interventions: list[Intervention]
    scope: str = "all"
    description: str = ""
    created_at: str = ""
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"format": FORMAT, "version": VERSION, "name": self.name,
                "description": self.description, "created_at": self.created_at,
                "scope": self.scope, "sae": dict(self.sae.__dict__),
                "interventions": [i.to_dict() for i in self.interventions]}

    @classmethod
    def from_dict(cls, data: dict, source: str = "") -> "Preset":
        where = f" ({source})" if source else ""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise UserError(f"This is not a steering preset{where}.",
                            hint="Presets are JSON files exported from the Steering tab or "
                                 "`mistudio steer --save-preset`.")
        if int(data.get("version", 0)) > VERSION:
            raise UserError(f"The preset{where} was written by a newer version of the app.")
        try:
            sae = SAEIdentity(**{k: data["sae"][k] for k in ("hook_name", "d_sae", "file_hash")},
                              sae_id=data["sae"].get("sae_id", ""),
                              name=data["sae"].get("name", ""))
            ivs = [Intervention.from_dict(i) for i in data["interventions"]]
            name = str(data["name"]).strip()
        except (KeyError, TypeError) as exc:
            raise UserError(f"The preset{where} is missing {exc}.",
                            hint="Export it again from the app.") from None
        scope = data.get("scope", "all")
        if scope not in SCOPES:
            raise UserError(f"The preset{where} has an unknown scope {scope!r}.")
        for iv in ivs:
            iv.validate(int(sae.d_sae))
        return cls(name, sae, ivs, scope, data.get("description", ""),
                   data.get("created_at", ""))

    def column(self) -> Column:
        return Column(list(self.interventions), label=self.name)


def slug(name: str) -> str:
    s = re.sub(r"[^A-Za-z0-9._-]+", "-", name.strip()).strip("-.")
    if not s:
        raise UserError("A preset needs a name.", hint="Type a name such as 'more-formal'.")
    return s[:80]


class PresetStore:
    """The files of ``steering/presets/`` (one ``<slug>.json`` per preset)."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    def path(self, name: str) -> Path:
        return self.folder / f"{slug(name)}.json"

    def save(self, preset: Preset, *, overwrite: bool = True) -> Path:
        path = self.path(preset.name)
        if path.exists() and not overwrite:
            raise UserError(f"A preset named {preset.name!r} exists already.",
                            hint="Pick another name, or replace it.")
        self.folder.mkdir(parents=True, exist_ok=True)
        return atomic_write_json(path, preset.to_dict())

    def load_file(self, path: str | Path) -> Preset:
        p = Path(path).expanduser()
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except OSError as exc:
            raise UserError(f"Cannot read the preset {p}: {exc.strerror or exc}.") from None
        except ValueError as exc:
            raise UserError(f"The preset {p} is not valid JSON ({exc}).") from None
        return Preset.from_dict(data, str(p))

    def get(self, name: str) -> Preset:
        path = self.path(name)
        if not path.exists():
            raise UserError(f"No preset named {name!r}.",
                            hint="The Steering tab's preset list (or `mistudio steer "
                                 "--list-presets`) shows them.")
        return self.load_file(path)

    def list(self) -> list[Preset]:
        out = []
        for p in sorted(self.folder.glob("*.json")):
            try:
                out.append(self.load_file(p))
            except UserError:
                continue  # a broken file in the folder must not hide the others
        return out

    def delete(self, name: str) -> None:
        self.path(name).unlink(missing_ok=True)
