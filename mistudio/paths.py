"""Where things live on disk, and helpers to write them safely.

The data directory is ``platformdirs.user_data_dir("mistudio")`` unless the
``MISTUDIO_DATA_DIR`` environment variable (tests, scripts) or the setting chosen in
the Settings dialog (stored in a small pointer file in the platform config dir)
says otherwise. Every entity owns one folder below it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any, Iterator

import platformdirs

from mistudio.errors import UserError

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
        return self

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


def _tmp_sibling(path: Path) -> Path:
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` so that ``path`` is either the old file or the complete new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_sibling(path)
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
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
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Build a directory under a temporary name and rename it into place on success.

    An existing directory at ``path`` is replaced only once the new one is complete.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent))
    try:
        yield tmp
        if path.exists():
            old = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.old")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


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
