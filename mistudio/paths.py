"""Where things live on disk, and helpers to write them safely.

The data directory is ``platformdirs.user_data_dir("mistudio")`` unless the
``MISTUDIO_DATA_DIR`` environment variable (tests, scripts) or the setting chosen in
the Settings dialog (stored in a small pointer file in the platform config dir)
says otherwise. Every entity owns one folder below it.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any, Iterator

import platformdirs

try:
    import fcntl
except ImportError:  # Windows: no folder lock (one process per data folder there)
    fcntl = None

from mistudio.errors import UserError
from mistudio.reliability import crash_point

ENV_DATA_DIR = "MISTUDIO_DATA_DIR"
_POINTER_NAME = "data_dir.txt"

ENTITY_DIRS = (
    "datasets",
    "models",
    "activations",
    "trainings",
    "features",
    "steering",
    "templates",
    "cache",
    "tmp",
    "logs",
    "backups",
    "jobs",
)


def config_dir() -> Path:
    return Path(platformdirs.user_config_dir("mistudio"))


def default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("mistudio"))


def resolve_data_dir(explicit: str | os.PathLike | None = None) -> Path:
    """Explicit argument > $MISTUDIO_DATA_DIR > user's choice in Settings > platform default."""
    if explicit:
        return Path(explicit).expanduser().resolve()
    env = os.environ.get(ENV_DATA_DIR)
    if env:
        return Path(env).expanduser().resolve()
    pointer = config_dir() / _POINTER_NAME
    try:
        chosen = pointer.read_text(encoding="utf-8").strip()
    except OSError:
        chosen = ""
    if chosen:
        return Path(chosen).expanduser()
    return default_data_dir()


def remember_data_dir(path: Path | None) -> None:
    """Persist the data dir chosen in Settings (None: back to the default)."""
    pointer = config_dir() / _POINTER_NAME
    if path is None:
        pointer.unlink(missing_ok=True)
        return
    atomic_write_text(pointer, str(Path(path).expanduser().resolve()))


class DataPaths:
    """The layout of one data directory."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def ensure(self) -> "DataPaths":
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            for name in ENTITY_DIRS:
                (self.root / name).mkdir(exist_ok=True)
        except OSError as exc:
            raise UserError(
                f"Cannot create the data folder {self.root}: {exc.strerror or exc}.",
                hint=f"Choose another folder in Settings or set {ENV_DATA_DIR} to a writable path.",
            ) from exc
        self._check_writable()
        return self

    def _check_writable(self) -> None:
        """mkdir(exist_ok=True) succeeds on a read-only folder; the first write (the log,
        the database) would then fail deep inside. Try one small file now instead."""
        for folder in (self.root, self.logs):
            probe = folder / f".write-test-{os.getpid()}"
            try:
                probe.write_bytes(b"")
                probe.unlink()
            except OSError as exc:
                raise UserError(
                    f"The data folder {self.root} is not writable ({folder}: "
                    f"{exc.strerror or exc}).",
                    hint=f"Make it writable, or choose another folder in Settings "
                         f"(--data-dir or {ENV_DATA_DIR}).") from None

    @property
    def db_file(self) -> Path:
        return self.root / "mistudio.db"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    def entity_dir(self, kind: str, entity_id: str) -> Path:
        if kind not in ENTITY_DIRS:
            raise ValueError(f"unknown entity folder {kind!r}")
        return self.root / kind / entity_id

    def job_dir(self, job_id: str) -> Path:
        return self.root / "jobs" / job_id

    def job_log(self, job_id: str) -> Path:
        return self.logs / f"{job_id}.log"


# ---------------------------------------------------------------- atomic writes


#: write errors that mean "no room": a full disk, a quota, a file-size limit (RLIMIT_FSIZE)
NO_ROOM_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


class DiskFull(UserError):
    """A write failed for want of room; names the file and says to free space and resume."""

    def __init__(self, path: str | os.PathLike, exc: OSError):
        path = Path(path)
        why = ("the file is larger than this system allows (a file-size limit)"
               if exc.errno == errno.EFBIG else "the disk is full")
        try:  # (a file-size limit is not about free space)
            free = ("" if exc.errno == errno.EFBIG
                    else f" ({human_bytes(free_bytes(path.parent))} free on its disk)")
        except OSError:
            free = ""
        super().__init__(
            f"Could not write {path}: {why}{free}.",
            hint="Free some space (delete old activation sets, checkpoints or trainings) or "
            "move the data folder to a larger disk in Settings, then resume the job: what was "
            "saved before is kept, and nothing half-written is used.")
        self.path = path
        self.errno = exc.errno


@contextlib.contextmanager
def no_room_as_user_error(path: str | os.PathLike) -> Iterator[None]:
    """Turn a write's ENOSPC/EDQUOT/EFBIG inside the block into :class:`DiskFull` naming
    ``path``: the OS error alone names no file, and says nothing of what to do."""
    try:
        yield
    except UserError:
        raise
    except Exception as exc:
        no_room = _no_room_errno(exc)
        if no_room is None:
            raise
        raise DiskFull(path, OSError(no_room, os.strerror(no_room))) from exc


def _no_room_errno(exc: BaseException) -> int | None:
    """The errno of a write that found no room, also when a library (torch.save's C++
    writer, safetensors' Rust one) wrapped it in its own exception type; else None."""
    if isinstance(exc, OSError) and exc.errno in NO_ROOM_ERRNOS:
        return exc.errno
    text = str(exc)
    if "No space left on device" in text or "os error 28" in text:
        return errno.ENOSPC
    if "File too large" in text or "os error 27" in text:
        return errno.EFBIG
    if "Disk quota exceeded" in text or "os error 122" in text:
        return errno.EDQUOT
    if "file write failed" in text:  # torch's PytorchStreamWriter says no more than this
        return errno.ENOSPC
    return None


def _tmp_sibling(path: Path) -> Path:
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` so that ``path`` is either the old file or the complete new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_sibling(path)
    try:
        with no_room_as_user_error(path):
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        crash_point("atomic.file.replace")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it into place only on success.

    For writers that want a filename (numpy, safetensors, pyarrow) rather than bytes.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_sibling(path)
    try:
        with no_room_as_user_error(path):
            yield tmp
        crash_point("atomic.file.replace")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Build a directory under a temporary name and rename it into place on success.

    An existing directory at ``path`` is replaced only once the new one is complete: it is
    moved aside (``.<name>.<hex>.old``), the new one moved in, then the old one deleted. A
    kill between the two renames leaves ``path`` missing with the old folder beside it;
    every reader resolves the folder through :func:`settled_dir`, which puts it back.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    recover_replaced_dir(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent))
    try:
        with no_room_as_user_error(path):
            yield tmp
        crash_point("atomic.dir.replace")
        old = None
        with _swap_lock(path.parent):  # no reader repairs the swap between the two renames
            if path.exists():
                old = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.old")
                os.replace(path, old)
                crash_point("atomic.dir.swap")  # the old folder aside, the new not yet in place
            os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def _swap_lock(folder: Path) -> Iterator[None]:
    """An exclusive lock on ``folder`` (the parent of a swapped directory), held across an
    :func:`atomic_dir` swap's two renames and across a reader's repair of a swap cut in
    half. Without it a reader (the window) could put the old folder back between a live
    writer's (a CLI job's) renames, and the writer's second rename would fail. ``flock`` on
    the folder itself: no lock file is left behind, a killed holder releases it, and two
    threads of one process exclude each other too (each open is its own lock)."""
    if fcntl is None:
        yield
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # gone or unreadable: there is nothing to guard
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _set_aside(path: Path) -> list[Path]:
    """The old copies of ``path`` that :func:`atomic_dir` swaps moved aside."""
    return sorted(path.parent.glob(f".{glob.escape(path.name)}.*.old"))


def _put_back_set_aside(path: Path) -> bool:
    """Under the swap lock: if ``path`` is missing, move its set-aside copy back; drop the
    set-aside copies of swaps that finished. Returns whether it put one back."""
    if not _set_aside(path):
        return False
    with _swap_lock(path.parent):
        olds = _set_aside(path)  # again, now that no swap is halfway: another may have fixed it
        restored = False
        if olds and not path.exists():
            os.replace(olds.pop(), path)
            restored = True
        for old in olds:
            shutil.rmtree(old, ignore_errors=True)
    return restored


def settled_dir(path: str | os.PathLike) -> Path:
    """``path``, for reading an artifact folder that :func:`atomic_dir` writes: if a kill
    cut a swap in half (``path`` missing, its old copy set aside beside it), the old copy is
    put back first, so the reader finds the artifact as it was rather than missing. Safe
    while another process writes the same folder (the swap lock). One ``stat`` when
    ``path`` exists (the usual case); it never deletes a half-built ``.partial`` folder,
    which may belong to a live writer."""
    path = Path(path)
    if not path.exists():
        try:
            _put_back_set_aside(path)
        except OSError:
            pass  # a read-only folder: the reader reports the folder missing, as before
    return path


def settle_swaps_in(folder: str | os.PathLike) -> None:
    """:func:`settled_dir` for every child of ``folder`` a cut-short swap left missing:
    call it before listing the folder's artifacts (checkpoints, model variants)."""
    try:
        names = [e.name for e in os.scandir(folder)
                 if e.name.startswith(".") and e.name.endswith(".old")]
    except OSError:
        return
    for name in names:
        final = name[1:-len(".12345678.old")]  # ".<name>.<8 hex>.old"
        if final:
            settled_dir(Path(folder) / final)


def remove_partials(folder: str | os.PathLike, *, recursive: bool = False) -> list[Path]:
    """Delete what killed atomic writes left in ``folder``: hidden ``.*.tmp`` files
    (:func:`atomic_write_bytes`, :func:`atomic_path`) and ``.*.partial`` files or folders
    (:func:`atomic_dir`, streamed activation shards). Call it only where no writer is at work
    (an artifact being completed). Returns what was removed."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    walker = os.walk(folder) if recursive else [(str(folder), [], [])]
    for root, _dirs, _files in walker:
        with os.scandir(root) as entries:
            for entry in entries:
                name = entry.name
                if not (name.startswith(".") and name.endswith((".tmp", ".partial"))):
                    continue
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path, ignore_errors=True)
                else:
                    Path(entry.path).unlink(missing_ok=True)
                removed.append(Path(entry.path))
    return removed


def recover_replaced_dir(path: str | os.PathLike) -> bool:
    """Put back the folder an :func:`atomic_dir` swap had set aside when the process died
    between its two renames (``path`` missing, ``.<name>.<hex>.old`` beside it). Returns
    whether it did; leftovers of a finished swap, and half-built ``.partial`` folders of a
    killed writer of the same path, are removed."""
    path = Path(path)
    if not path.parent.is_dir():
        return False
    for partial in path.parent.glob(f".{glob.escape(path.name)}.*.partial"):
        shutil.rmtree(partial, ignore_errors=True)
    return _put_back_set_aside(path)


# ---------------------------------------------------------------- disk space


class InsufficientDiskSpace(UserError):
    pass


def free_bytes(path: str | os.PathLike) -> int:
    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    return shutil.disk_usage(p).free


def check_free_space(path: str | os.PathLike, required_bytes: int, *, what: str = "this job",
                     margin: float = 1.1) -> None:
    """Raise :class:`InsufficientDiskSpace` if ``path``'s disk lacks ``required_bytes`` (+10%)."""
    need = int(required_bytes * margin)
    free = free_bytes(path)
    record_space_check(path, what, need, free)
    if free < need:
        raise InsufficientDiskSpace(
            f"Not enough disk space for {what}: needs about {human_bytes(need)}, "
            f"{human_bytes(free)} free on the disk holding {path}.",
            hint="Free some space (delete old activation sets or checkpoints) or move the data "
            "folder to a larger disk in Settings.",
        )


SPACE_CHECKS = "space-checks.jsonl"  # under logs/: the Storage view's "what fits" line


def _data_root(path: Path) -> Path | None:
    """The data folder holding ``path`` (the nearest folder up with ``mistudio.db``)."""
    p = Path(path)
    for candidate in [p, *p.parents][:8]:
        if (candidate / "mistudio.db").is_file():
            return candidate
    return None


def record_space_check(path: str | os.PathLike, what: str, need: int, free: int) -> None:
    """Append a free-space check's estimate to the data folder's log of them (the last 200
    kept), so the Storage view can compare the largest recent estimate with free space."""
    root = _data_root(Path(path))
    if root is None:
        return
    import datetime as _dt

    log = root / "logs" / SPACE_CHECKS
    line = json.dumps({"at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                       "what": what, "need": int(need), "free": int(free),
                       "fits": free >= need}) + "\n"
    try:
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "a", encoding="utf-8") as fh:
            fh.write(line)
        if log.stat().st_size > 64 * 1024:
            atomic_write_text(log, "".join(log.read_text(encoding="utf-8").splitlines(True)[-200:]))
    except OSError:
        pass  # a full or read-only disk: the check itself still answers


def read_space_checks(root: str | os.PathLike) -> list[dict]:
    """The recorded free-space checks, oldest first."""
    out = []
    try:
        text = (Path(root) / "logs" / SPACE_CHECKS).read_text(encoding="utf-8")
    except OSError:
        return out
    for line in text.splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def dir_size(path: str | os.PathLike) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def human_bytes(n: float) -> str:
    n = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"
