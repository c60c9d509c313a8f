"""A local stand-in for the Hugging Face Hub API (just what snapshot_download uses).

Serves model folders over HTTP: repo info, the file tree, and file downloads with HEAD
metadata and byte ranges (resume). Repos can be marked gated; unknown repos get 404 with
the Hub's error code; ``fail_after_bytes`` cuts a download to simulate a dropped link.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse

SHA = "0123456789abcdef0123456789abcdef01234567"


class FakeHub:
    def __init__(self):
        self.repos: dict[str, Path] = {}
        self.gated: set[str] = set()
        self.token_ok: str = "hf_good"
        self.fail_after_bytes: int | None = None
        self.bytes_served = 0
        self.range_requests = 0
        self.served: list[str] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def files(self, repo: str) -> list[Path]:
        root = self.repos[repo]
        return sorted(p for p in root.rglob("*") if p.is_file())

    def _handler(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _json(self, code, obj, headers=None):
                body = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _check(self, repo):
                if repo not in hub.repos:
                    self._json(404, {"error": "Repository not found"},
                               {"X-Error-Code": "RepoNotFound",
                                "X-Error-Message": "Repository not found"})
                    return False
                auth = self.headers.get("Authorization", "")
                if repo in hub.gated and auth != f"Bearer {hub.token_ok}":
                    self._json(401, {"error": "gated"},
                               {"X-Error-Code": "GatedRepo",
                                "X-Error-Message": "Access to this repo is restricted"})
                    return False
                return True

            def do_HEAD(self):
                self.do_GET()

            def do_GET(self):
                path = unquote(urlparse(self.path).path)
                m = re.match(r"^/api/models/([^/]+/[^/]+)(?:/revision/([^/]+))?$", path)
                if m:
                    repo = m.group(1)
                    if not self._check(repo):
                        return
                    sib = [{"rfilename": str(p.relative_to(hub.repos[repo])),
                            "size": p.stat().st_size} for p in hub.files(repo)]
                    return self._json(200, {"id": repo, "modelId": repo, "sha": SHA,
                                            "siblings": sib, "private": False,
                                            "gated": repo in hub.gated, "tags": []})
                m = re.match(r"^/api/models/([^/]+/[^/]+)/tree/([^/]+)(/.*)?$", path)
                if m:
                    repo = m.group(1)
                    if not self._check(repo):
                        return
                    items = [{"type": "file", "path": str(p.relative_to(hub.repos[repo])),
                              "size": p.stat().st_size,
                              "oid": hashlib.sha1(p.read_bytes()).hexdigest()}
                             for p in hub.files(repo)]
                    return self._json(200, items)
                m = re.match(r"^/([^/]+/[^/]+)/resolve/([^/]+)/(.+)$", path)
                if m:
                    repo, _rev, fname = m.groups()
                    if not self._check(repo):
                        return
                    f = hub.repos[repo] / fname
                    if not f.is_file():
                        return self._json(404, {"error": "Entry not found"},
                                          {"X-Error-Code": "EntryNotFound"})
                    data = f.read_bytes()
                    etag = hashlib.sha256(data).hexdigest()
                    start = 0
                    rng = self.headers.get("Range")
                    if rng:
                        start = int(re.match(r"bytes=(\d+)-", rng).group(1))
                        hub.range_requests += 1
                    body = data[start:]
                    self.send_response(206 if rng else 200)
                    self.send_header("Content-Length", str(len(body)))
                    self.send_header("ETag", f'"{etag}"')
                    self.send_header("X-Repo-Commit", SHA)
                    if rng:
                        self.send_header("Content-Range",
                                         f"bytes {start}-{len(data) - 1}/{len(data)}")
                    self.end_headers()
                    if self.command == "HEAD":
                        return
                    limit = hub.fail_after_bytes
                    if limit is not None and f.suffix == ".safetensors":
                        self.wfile.write(body[:limit])
                        self.wfile.flush()
                        self.connection.close()  # a dropped connection mid-file
                        return
                    self.wfile.write(body)
                    hub.bytes_served += len(body)
                    hub.served.append(fname)
                    return
                self._json(404, {"error": f"no route {path}"})

        return Handler
