"""Manifests: proof that an artifact folder the database calls complete is complete.

A manifest is a small JSON file written LAST into a folder (atomically, so it is either absent
or whole): every file's size and SHA-256. A reader that finds it knows each file was finished
before it was written; :func:`verify_manifest` checks that nothing was truncated, lost or
changed since. The activation sets', tokenizations' and feature analyses' ``COMPLETE``
markers are manifests (markers written before them hold ``ok``: still read as complete,
verified as "no manifest"); checkpoints, SAE folders and imported datasets hold
``manifest.json``. Database backups have their own (``mistudio.storage.backup``).

Files larger than :data:`HASH_LIMIT` record their size only: hashing a 100 GB activation set
at the end of its extraction would read it all again. The kill harness's artifacts are far
smaller, so there every byte is checked.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from mistudio.paths import atomic_write_json

MANIFEST_FILE = "manifest.json"
HASH_LIMIT = 256 * 2**20
FORMAT = "mistudio-manifest-1"


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _files(folder: Path, skip: set[str]):
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith("."):  # a temporary file of an atomic write
                continue
            path = Path(root) / name
            rel = path.relative_to(folder).as_posix()
            if rel not in skip:
                yield rel, path


def build_manifest(folder: str | os.PathLike, *, name: str = MANIFEST_FILE,
                   exclude: tuple[str, ...] = ()) -> dict:
    folder = Path(folder)
    entries = {}
    for rel, path in _files(folder, {name, *exclude}):
        size = path.stat().st_size
        entries[rel] = {"size": size,
                        "sha256": sha256_file(path) if size <= HASH_LIMIT else None}
    return {"format": FORMAT, "files": entries}


def write_manifest(folder: str | os.PathLike, *, name: str = MANIFEST_FILE,
                   exclude: tuple[str, ...] = ()) -> Path:
    """Record every file under ``folder`` (but ``exclude``, relative paths) in ``name``."""
    from mistudio.paths import remove_partials
    from mistudio.reliability import crash_point

    remove_partials(folder, recursive=True)  # leftovers of writes a kill cut short
    manifest = build_manifest(folder, name=name, exclude=exclude)
    crash_point("manifest.write")
    return atomic_write_json(Path(folder) / name, manifest)


def read_manifest(folder: str | os.PathLike, name: str = MANIFEST_FILE) -> dict | None:
    """The manifest, or None when there is none (or an old ``ok`` marker)."""
    try:
        data = json.loads((Path(folder) / name).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("format") == FORMAT else None


def verify_manifest(folder: str | os.PathLike, name: str = MANIFEST_FILE) -> list[str]:
    """What is wrong with ``folder`` against its manifest ([] when every file matches).

    A missing manifest is itself a problem: call this only for artifacts that should have one.
    """
    folder = Path(folder)
    manifest = read_manifest(folder, name)
    if manifest is None:
        return [f"{folder / name}: no manifest"]
    problems = []
    for rel, want in manifest["files"].items():
        path = folder / rel
        try:
            size = path.stat().st_size
        except OSError:
            problems.append(f"{path}: missing")
            continue
        if size != want["size"]:
            problems.append(f"{path}: {size} bytes, the manifest says {want['size']}")
        elif want.get("sha256") and sha256_file(path) != want["sha256"]:
            problems.append(f"{path}: checksum differs from the manifest")
    return problems
