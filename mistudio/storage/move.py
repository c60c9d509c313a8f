"""Moving the data folder to another disk: copy (with progress, resumable), verify (sizes and
SHA-256 of every file), switch the configured folder, and only then remove the old copy.

Until the switch the old folder stays authoritative: a move killed mid-copy leaves it
untouched and in use, and the destination holds a marker (``.mistudio-move.json``) naming
its source, so running the move again to the same destination resumes (files already
copied with the same size and modification time are kept) instead of refusing a non-empty
folder. Files are copied under a temporary name and renamed, so a half-copied file never
looks complete. Symbolic links are copied as links, never followed (a model used in place
stays the user's folder).

The service (``StorageService.move_data_folder``) runs :func:`copy_tree` once while the app
works, then closes the database, copies what changed and the database itself, verifies,
switches and removes the old folder.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from mistudio.errors import UserError
from mistudio.paths import atomic_write_json, check_free_space, human_bytes

MARKER = ".mistudio-move.json"
# the database's side files: never copied (the database is copied whole after a checkpoint)
DB_SIDE_FILES = ("mistudio.db-wal", "mistudio.db-shm", "mistudio.db.lock")
PART_SUFFIX = ".move-part"


@dataclass
class SourceFile:
    rel: str
    size: int
    mtime_ns: int
    link: str | None = None  # a symbolic link's target (copied as a link)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def source_files(src: Path, exclude: Iterable[str] = ()) -> list[SourceFile]:
    """Every file and link below ``src`` (relative paths), symlinks not followed."""
    skip = set(exclude)
    out = []
    for dirpath, dirnames, filenames in os.walk(src):
        base = Path(dirpath)
        for name in list(dirnames):
            if (base / name).is_symlink():  # os.walk lists links to folders as folders
                dirnames.remove(name)
                filenames.append(name)
        for name in filenames:
            p = base / name
            rel = p.relative_to(src).as_posix()
            if rel in skip or name.endswith(PART_SUFFIX):
                continue
            st = p.lstat()
            link = os.readlink(p) if p.is_symlink() else None
            out.append(SourceFile(rel, 0 if link else st.st_size, st.st_mtime_ns, link))
    out.sort(key=lambda f: f.rel)
    return out


def check_destination(src: Path, dest: str | os.PathLike) -> Path:
    """The destination as an absolute path, or a UserError saying why it cannot be one."""
    src = Path(src).resolve()
    dest = Path(dest).expanduser().resolve()
    if dest == src:
        raise UserError(f"{dest} is already the data folder.", hint="Pick another folder.")
    if dest.is_relative_to(src) or src.is_relative_to(dest):
        raise UserError(f"{dest} and the data folder {src} contain one another.",
                        hint="Pick a folder outside the data folder (on the other disk).")
    if dest.exists() and not dest.is_dir():
        raise UserError(f"{dest} is a file.", hint="Pick a folder, or a name to create.")
    if dest.is_dir() and any(dest.iterdir()):
        marker = read_marker(dest)
        if marker is None or Path(marker.get("source", "")) != src:
            raise UserError(f"{dest} is not empty.",
                            hint="Pick an empty folder or a new name: the data folder is "
                                 "copied into it.")
    parent = dest if dest.exists() else dest.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not os.access(parent, os.W_OK):
        raise UserError(f"Cannot write in {parent}.", hint="Pick a folder you can write to.")
    return dest


def read_marker(dest: Path) -> dict | None:
    try:
        return json.loads((Path(dest) / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def write_marker(dest: Path, src: Path, state: str) -> None:
    atomic_write_json(Path(dest) / MARKER, {
        "source": str(src), "state": state,
        "at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")})


def _up_to_date(f: SourceFile, target: Path) -> bool:
    try:
        st = target.lstat()
    except OSError:
        return False
    if f.link is not None:
        return target.is_symlink() and os.readlink(target) == f.link
    return not target.is_symlink() and st.st_size == f.size and st.st_mtime_ns == f.mtime_ns


def _copy_hashing(src: Path, part: Path, ctx) -> str:
    """Copy ``src`` to ``part`` and return the SHA-256 of the bytes read (so verifying the
    copy needs no second read of the source)."""
    h = hashlib.sha256()
    with open(src, "rb") as fin, open(part, "wb") as fout:
        for chunk in iter(lambda: fin.read(1 << 20), b""):
            h.update(chunk)
            fout.write(chunk)
            ctx.check_cancelled()
    return h.hexdigest()


def copy_tree(src: Path, dest: Path, ctx, *, exclude: Iterable[str] = (),
              phase: str = "Copying", digests: dict | None = None) -> dict:
    """Copy every file of ``src`` not already up to date in ``dest``; remove files of
    ``dest`` that ``src`` no longer has (a re-sync). Progress in bytes; cancellable.
    ``digests`` gets rel -> (size, mtime_ns, sha256 of the bytes copied)."""
    src, dest = Path(src), Path(dest)
    files = source_files(src, exclude)
    todo = [f for f in files if not _up_to_date(f, dest / f.rel)]
    need = sum(f.size for f in todo)
    dest.mkdir(parents=True, exist_ok=True)
    if need:
        check_free_space(dest, need, what=f"copying {len(todo)} file(s) of the data folder")
    if read_marker(dest) is None:
        write_marker(dest, src, "copying")
    done = 0
    ctx.progress(0, need, f"{phase}: {len(todo)} file(s), {human_bytes(need)}")
    for f in todo:
        ctx.check_cancelled()
        target = dest / f.rel
        target.parent.mkdir(parents=True, exist_ok=True)
        part = target.with_name(target.name + PART_SUFFIX)
        if f.link is not None:
            part.unlink(missing_ok=True)
            os.symlink(f.link, part)
        else:
            digest = _copy_hashing(src / f.rel, part, ctx)
            os.utime(part, ns=(f.mtime_ns, f.mtime_ns))
            if digests is not None:
                digests[f.rel] = (f.size, f.mtime_ns, digest)
        os.replace(part, target)
        done += f.size
        ctx.progress(done, need, f"{phase}: {f.rel}")
    wanted = {f.rel for f in files} | {MARKER}
    stale = []
    for dirpath, dirnames, filenames in os.walk(dest):  # links to folders are not followed
        base = Path(dirpath)
        for name in filenames + [d for d in dirnames if (base / d).is_symlink()]:
            p = base / name
            if p.relative_to(dest).as_posix() not in wanted:
                stale.append(p)
    for p in stale:
        p.unlink()
    ctx.flush()
    return {"files": len(files), "copied": len(todo), "bytes_copied": need,
            "bytes": sum(f.size for f in files), "removed": len(stale)}


def verify(src: Path, dest: Path, ctx, *, exclude: Iterable[str] = (),
           digests: dict | None = None) -> dict:
    """Every file of ``src`` present in ``dest`` with the same size and SHA-256 (links with
    the same target); raises a UserError naming the first that differs. A source file whose
    size and modification time still match ``digests`` (from :func:`copy_tree`) is not read
    again: its digest is of the very bytes that were copied."""
    digests = digests or {}
    files = source_files(Path(src), exclude)
    total = sum(f.size for f in files)
    done = 0
    ctx.progress(0, total, "Verifying the copy")
    for f in files:
        ctx.check_cancelled()
        target = Path(dest) / f.rel
        if f.link is not None:
            ok = target.is_symlink() and os.readlink(target) == f.link
        else:
            known = digests.get(f.rel)
            want = (known[2] if known and known[:2] == (f.size, f.mtime_ns)
                    else _sha256(Path(src) / f.rel))
            ok = (target.is_file() and target.stat().st_size == f.size
                  and _sha256(target) == want)
        if not ok:
            raise UserError(f"The copy of {f.rel} in {dest} differs from the original.",
                            hint="Nothing was switched; the old data folder is still in use. "
                                 "Check the destination disk, then move again (it resumes).")
        done += f.size
        ctx.progress(done, total, f"Verifying: {f.rel}")
    ctx.flush()
    return {"files": len(files), "bytes": total}


def remove_old(src: Path, dest: Path) -> None:
    """Delete the old folder (after the switch), then the destination's marker. The lock
    file goes last: the caller holds it open until the rest is gone."""
    src = Path(src)
    for child in src.iterdir():
        if child.name == "mistudio.db.lock":
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()
    shutil.rmtree(src)
    (Path(dest) / MARKER).unlink(missing_ok=True)
