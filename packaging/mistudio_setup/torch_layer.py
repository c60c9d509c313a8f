"""The torch layer: PyTorch installed beside the package's venv, not inside it.

The venv under /opt/mistudio belongs to root (dpkg made it), so a user's first launch cannot
install into it. PyTorch goes into a *layer*, a ``pip install --target`` folder that a ``.pth``
file in the venv appends to ``sys.path`` (after the venv's own site-packages, so the venv's
pinned packages always win over the copies pip puts beside torch):

- per user: ``$XDG_DATA_HOME/mistudio-runtime/torch-cp3XX`` (the first-run window);
- system-wide: ``/opt/mistudio/torch-cp3XX`` (``sudo mistudio-setup-torch --system``), removed
  with the package.

The Python tag is in the name: after a distribution upgrade changes python3, the old layer is
simply not used. An install goes to ``<layer>.partial`` and is renamed when complete, so an
interrupted download never looks like an installed torch.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

SYSTEM_ROOT = Path(os.environ.get("MISTUDIO_SYSTEM_ROOT", "/opt/mistudio"))


def python_tag() -> str:
    return f"cp{sys.version_info.major}{sys.version_info.minor}"


def user_layer() -> Path:
    if os.environ.get("MISTUDIO_TORCH_LAYER"):
        return Path(os.environ["MISTUDIO_TORCH_LAYER"])
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "mistudio-runtime" / f"torch-{python_tag()}"


def system_layer() -> Path:
    return SYSTEM_ROOT / f"torch-{python_tag()}"


def add_layers() -> list[str]:
    """Append the existing layers to sys.path (user first); called by the venv's .pth file."""
    added = []
    for layer in (user_layer(), system_layer()):
        p = str(layer)
        if layer.is_dir() and p not in sys.path:
            sys.path.append(p)
            added.append(p)
    return added


def torch_present() -> bool:
    import importlib.util

    add_layers()
    return importlib.util.find_spec("torch") is not None


def pip_command(target: Path, pip_args) -> list[str]:
    """pip installing ``pip_args`` (torch_build's choice: requirement and index) into target."""
    return [sys.executable, "-m", "pip", "install", "--target", str(target), "--no-cache-dir",
           "--only-binary", ":all:", "--progress-bar", "raw", "--disable-pip-version-check",
           "--no-input", "--no-warn-script-location", *pip_args]


# pip settings that keep working for the torch install (certificates, proxies, timeouts); any
# other configuration (extra indexes, find-links, constraints of the user's own projects) could
# pull another torch than the one chosen, so pip runs without config files.
KEPT_PIP_SETTINGS = {"PIP_CERT", "PIP_CLIENT_CERT", "PIP_TRUSTED_HOST", "PIP_PROXY", "PIP_TIMEOUT",
                     "PIP_RETRIES"}


def pip_environment(base: dict | None = None) -> dict:
    env = {k: v for k, v in (os.environ if base is None else base).items()
           if not k.startswith("PIP_") or k in KEPT_PIP_SETTINGS}
    env["PIP_CONFIG_FILE"] = os.devnull
    return env


def index_host(index_url: str | None) -> str:
    return urlparse(index_url or "https://pypi.org/simple").hostname or "pypi.org"


def reachable(index_url: str | None, timeout: float = 5.0) -> str | None:
    """None when the index's host answers on 443, else why not. With a proxy set, or a local
    index, we let pip try (a direct connection says nothing about the proxy)."""
    parsed = urlparse(index_url or "https://pypi.org/simple")
    if parsed.scheme == "file" or any(os.environ.get(v) for v in
                                      ("https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY")):
        return None
    host, port = parsed.hostname or "pypi.org", parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return None
    except OSError as exc:
        return f"{host} cannot be reached ({exc.strerror or exc})"


OFFLINE_PATTERNS = re.compile(
    r"(NewConnectionError|Failed to establish a new connection|Temporary failure in name "
    r"resolution|Name or service not known|Network is unreachable|No route to host|Connection "
    r"refused|ConnectTimeoutError|Read timed out|ProxyError|Max retries exceeded|"
    r"No matching distribution found for torch|SSLError)", re.I)


@dataclass
class Progress:
    name: str = ""  # the file being downloaded
    done: int = 0  # bytes of that file
    total: int = 0
    files_done: int = 0
    bytes_done: int = 0  # all finished files
    phase: str = "Starting"


class PipOutput:
    """Turns pip's output lines (``--progress-bar raw``) into progress the UI can show."""

    DOWNLOADING = re.compile(r"^\s*Downloading (\S+?)(?:\s+\(([\d.]+ [kMG]?B)\))?\s*$")
    RAW = re.compile(r"^Progress (\d+) of (\d+)")

    def __init__(self) -> None:
        self.progress = Progress()
        self.lines: list[str] = []

    def feed(self, line: str) -> Progress:
        line = line.rstrip("\n")
        self.lines.append(line)
        p = self.progress
        if m := self.RAW.match(line):
            p.done, p.total = int(m.group(1)), int(m.group(2))
            if p.done >= p.total > 0:
                p.files_done += 1
                p.bytes_done += p.total
        elif m := self.DOWNLOADING.match(line):
            p.name, p.done, p.total = m.group(1).rsplit("/", 1)[-1], 0, 0
            p.phase = f"Downloading {p.name}"
        elif line.startswith("Collecting "):
            p.phase = line
        elif line.startswith("Installing collected packages"):
            p.phase, p.name, p.done, p.total = "Installing (unpacking the files)", "", 0, 0
        return p

    def failure(self, returncode: int, reason_offline: str | None = None) -> tuple[str, bool]:
        """(message for the user, offline?) for a failed pip run."""
        text = "\n".join(self.lines[-40:])
        offline = bool(reason_offline) or bool(OFFLINE_PATTERNS.search(text))
        errors = [ln for ln in self.lines if ln.startswith("ERROR:")]
        detail = errors[-1][len("ERROR:"):].strip() if errors else f"pip exited with code {returncode}"
        return detail, offline


def offline_message(choice_label: str, index_url: str | None, why: str) -> str:
    return (f"{choice_label} has to be downloaded once from {index_host(index_url)}, and this "
            f"computer cannot reach it now: {why}.\n\nConnect to the internet and press Retry. "
            "An administrator can also install it for every user later with:\n"
            "    sudo mistudio-setup-torch --system")


def finish_install(partial: Path, layer: Path) -> None:
    """Move a complete install into place (replacing an older layer)."""
    if layer.exists():
        shutil.rmtree(layer)
    partial.rename(layer)


def partial_dir(layer: Path) -> Path:
    partial = layer.with_name(layer.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    partial.parent.mkdir(parents=True, exist_ok=True)
    return partial
