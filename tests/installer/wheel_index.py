"""A real wheel and a PEP 503 index serving it on loopback, for installs without the network.

The wheel is built by hand from the wheel spec (a zip with METADATA, WHEEL and RECORD), with
1 MiB of random bytes so pip shows download progress (it does for files over 512 KiB).
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import os
import socket
import threading
import zipfile
from pathlib import Path


def make_wheel(folder: Path, name: str = "layerprobe", version: str = "1.0",
               payload_bytes: int = 1 << 20) -> Path:
    files = {
        f"{name}/__init__.py": f"VERSION = {version!r}\n".encode(),
        f"{name}/payload.bin": os.urandom(payload_bytes),
        f"{name}-{version}.dist-info/METADATA": (
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n").encode(),
        f"{name}-{version}.dist-info/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: hand\nRoot-Is-Purelib: true\nTag: py3-none-any\n"),
    }
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{name}-{version}.dist-info/RECORD,,")
    files[f"{name}-{version}.dist-info/RECORD"] = ("\n".join(record) + "\n").encode()
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_STORED) as zf:
        for path, data in files.items():
            zf.writestr(path, data)
    return wheel


class WheelIndex:
    """``http://127.0.0.1:PORT/simple/`` listing the wheels of one folder."""

    def __init__(self, folder: Path):
        self.folder = folder
        for wheel in folder.glob("*.whl"):
            project = folder / "simple" / wheel.name.split("-")[0]
            project.mkdir(parents=True, exist_ok=True)
            (project / "index.html").write_text(f'<a href="../../{wheel.name}">{wheel.name}</a>\n')
        handler = lambda *a, **kw: _Quiet(*a, directory=str(folder), **kw)  # noqa: E731
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/simple/"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def closed_port_url() -> str:
    """An index URL on a loopback port nobody listens on (what 'offline' looks like)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/simple/"
