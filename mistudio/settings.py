"""Typed, versioned settings stored in the ``settings`` table; secrets kept out of it.

The Hugging Face token goes to the OS keyring when one works, else to a file only the
user can read (mode 0600) in the config dir. It never enters SQLite or the logs.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from dataclasses import dataclass, field, fields
from pathlib import Path

from mistudio.paths import atomic_write_text, config_dir
from mistudio.store.db import Store, now_iso

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
DEVICES = ("auto", "cuda", "cpu")
DTYPES = ("auto", "float32", "bfloat16", "float16")


@dataclass
class Settings:
    """User preferences. ``help`` metadata is shown next to each field in the dialog."""

    schema_version: int = SCHEMA_VERSION
    default_device: str = field(default="auto", metadata={
        "help": "Where jobs run. 'auto' uses the CUDA GPU when there is one, else the CPU."})
    default_dtype: str = field(default="auto", metadata={
        "help": "Precision for models and training. 'auto': bfloat16 on GPUs that support it, "
                "float32 on CPU."})
    max_concurrent_jobs: int = field(default=2, metadata={
        "help": "Jobs that may run at once. GPU-heavy jobs still run one at a time."})
    max_gpu_jobs: int = field(default=1, metadata={
        "help": "GPU-heavy jobs (extraction, training) that may run at once. More than 1 risks "
                "running out of GPU memory."})
    shutdown_wait_s: float = field(default=10.0, metadata={
        "help": "How long closing the app waits for running jobs to stop and checkpoint."})
    sae_catalogue_file: str = field(default="", metadata={
        "help": "A newer SAELens pretrained_saes.yaml for the SAE catalogue; empty: the "
                "snapshot shipped with the app."})
    allow_cpu_quantization: bool = field(default=False, metadata={
        "help": "Allow 8-/4-bit (bitsandbytes) on the CPU: saves memory, runs slower than full "
                "precision."})
    # The cleanup policy (docs/storage.md): run on demand from File > Storage or
    # `mistudio storage clean`, and at start-up when cleanup_at_startup is on. Rules that
    # delete user work (old activation sets, checkpoint thinning) are off by default.
    cleanup_at_startup: bool = field(default=False, metadata={
        "help": "Run the cleanup policy in the background each time the window starts."})
    cleanup_tmp: bool = field(default=True, metadata={
        "help": "Delete partial files in tmp/ when no job is live (the start-up wipe does the "
                "same)."})
    cleanup_orphans: bool = field(default=True, metadata={
        "help": "Delete folders no record owns and records whose folder is gone."})
    cleanup_cache_limit_gb: float = field(default=20.0, metadata={
        "help": "Trim cache/ (Hub downloads, numba's compiled UMAP, feature maps) to this size, "
                "least recently used first; 0 never trims."})
    cleanup_keep_activation_sets: int = field(default=0, metadata={
        "help": "Keep only the newest N activation sets (pinned sets and sets a kept training "
                "or SAE uses always stay); 0 keeps all."})
    cleanup_thin_checkpoints: bool = field(default=False, metadata={
        "help": "Thin the checkpoints of finished trainings to a log-spaced set plus the "
                "newest (never of running, paused or interrupted ones)."})
    cleanup_checkpoints_kept: int = field(default=6, metadata={
        "help": "How many checkpoints thinning keeps per training, the newest included."})
    cleanup_feature_visuals: bool = field(default=True, metadata={
        "help": "Delete feature maps and feature analyses whose SAE was deleted."})

    def validate(self) -> list[str]:
        problems = []
        if self.default_device not in DEVICES:
            problems.append(f"default_device must be one of {', '.join(DEVICES)}")
        if self.default_dtype not in DTYPES:
            problems.append(f"default_dtype must be one of {', '.join(DTYPES)}")
        if not 1 <= int(self.max_concurrent_jobs) <= 32:
            problems.append("max_concurrent_jobs must be between 1 and 32")
        if not 1 <= int(self.max_gpu_jobs) <= int(self.max_concurrent_jobs):
            problems.append("max_gpu_jobs must be between 1 and max_concurrent_jobs")
        if not 0 <= float(self.shutdown_wait_s) <= 600:
            problems.append("shutdown_wait_s must be between 0 and 600 seconds")
        if not 0 <= float(self.cleanup_cache_limit_gb) <= 100_000:
            problems.append("cleanup_cache_limit_gb must be between 0 and 100000 GB")
        if not 0 <= int(self.cleanup_keep_activation_sets) <= 100_000:
            problems.append("cleanup_keep_activation_sets must be 0 (keep all) or more")
        if not 2 <= int(self.cleanup_checkpoints_kept) <= 1000:
            problems.append("cleanup_checkpoints_kept must be between 2 and 1000")
        return problems

    @staticmethod
    def help(name: str) -> str:
        for f in fields(Settings):
            if f.name == name:
                return f.metadata.get("help", "")
        return ""


def _migrate(raw: dict) -> dict:
    """Bring an older stored settings dict up to ``SCHEMA_VERSION``."""
    version = int(raw.get("schema_version", 1))
    # (no older versions yet; future renames go here, one `if version < N:` block each)
    raw["schema_version"] = max(version, SCHEMA_VERSION)
    return raw


class SettingsRepo:
    def __init__(self, store: Store):
        self.store = store

    def load(self) -> Settings:
        rows = {r["key"]: r["value"] for r in self.store.db["settings"].rows}
        raw = {}
        for key, value in rows.items():
            try:
                raw[key] = json.loads(value)
            except (TypeError, ValueError):
                log.warning("ignoring unreadable setting %s", key)
        raw = _migrate(raw)
        known = {f.name: f for f in fields(Settings)}
        kwargs = {}
        for key, value in raw.items():
            if key in known:
                try:
                    kwargs[key] = type(getattr(Settings(), key))(value)
                except (TypeError, ValueError):
                    log.warning("ignoring bad value for setting %s", key)
        settings = Settings(**kwargs)
        if settings.validate():
            log.warning("stored settings invalid (%s); using defaults", settings.validate())
            return Settings()
        return settings

    def save(self, settings: Settings) -> None:
        problems = settings.validate()
        if problems:
            from mistudio.errors import UserError

            raise UserError("Invalid settings: " + "; ".join(problems) + ".")
        now = now_iso()
        with self.store.db.conn:
            self.store.db["settings"].upsert_all(
                [{"key": k, "value": json.dumps(v), "updated_at": now}
                 for k, v in dataclasses.asdict(settings).items()],
                pk="key",
            )


# ---------------------------------------------------------------- secrets

_KEYRING_SERVICE = "mistudio"


class SecretStore:
    """The Hugging Face token: OS keyring if usable, else a 0600 file in the config dir."""

    def __init__(self, folder: Path | None = None, use_keyring: bool | None = None):
        self.folder = Path(folder) if folder else config_dir()
        if use_keyring is None:
            use_keyring = os.environ.get("MISTUDIO_NO_KEYRING") != "1"
        self._use_keyring = use_keyring
        self._keyring_checked = False
        self._keyring_mod = None

    @property
    def _keyring(self):
        # Looked up on first use: importing keyring costs start-up time.
        if not self._keyring_checked:
            self._keyring_checked = True
            self._keyring_mod = self._usable_keyring() if self._use_keyring else None
        return self._keyring_mod

    @staticmethod
    def _usable_keyring():
        try:
            import keyring
            from keyring.backends import fail

            backend = keyring.get_keyring()
            if isinstance(backend, fail.Keyring) or "null" in type(backend).__name__.lower():
                return None
            if getattr(backend, "priority", 0) < 1:
                return None
            return keyring
        except Exception:  # no backend, no dbus, ...
            return None

    @property
    def backend(self) -> str:
        return "OS keyring" if self._keyring else "private file (mode 0600)"

    def _file(self, name: str) -> Path:
        return self.folder / f"{name}.secret"

    def get(self, name: str) -> str | None:
        if self._keyring:
            try:
                value = self._keyring.get_password(_KEYRING_SERVICE, name)
                if value:
                    return value
            except Exception:
                pass
        try:
            return self._file(name).read_text(encoding="utf-8").strip() or None
        except OSError:
            return None

    def set(self, name: str, value: str | None) -> None:
        value = (value or "").strip()
        if not value:
            self.delete(name)
            return
        if self._keyring:
            try:
                self._keyring.set_password(_KEYRING_SERVICE, name, value)
                self._file(name).unlink(missing_ok=True)
                return
            except Exception:
                log.warning("keyring refused the secret; using a private file instead")
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self._file(name)
        old_umask = os.umask(0o077)
        try:
            atomic_write_text(path, value)
        finally:
            os.umask(old_umask)
        os.chmod(path, 0o600)

    def delete(self, name: str) -> None:
        if self._keyring:
            try:
                self._keyring.delete_password(_KEYRING_SERVICE, name)
            except Exception:
                pass
        self._file(name).unlink(missing_ok=True)


HF_TOKEN = "hf_token"


def mask_secret(text: str, secret: str | None) -> str:
    """Replace a secret in text that may be logged."""
    if secret and secret in text:
        return text.replace(secret, secret[:3] + "***")
    return text
