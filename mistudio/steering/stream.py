"""Tokens of a running generation, readable from another thread while it runs.

A job pushes each step's new token text per row; the Steering tab (or a test) reads
snapshots by job id. Snapshots are plain copies, so readers never hold the lock long.
"""

from __future__ import annotations

import threading


class GenerationStream:
    def __init__(self, labels: list[str]):
        self._lock = threading.Lock()
        self.labels = list(labels)
        self.pieces: list[list[str]] = [[] for _ in labels]
        self.finished = [False] * len(labels)
        self.version = 0
        self.done = False

    def push(self, pieces: list[str | None], finished: list[bool]) -> None:
        with self._lock:
            for r, piece in enumerate(pieces):
                if piece is not None:
                    self.pieces[r].append(piece)
            self.finished = list(finished)
            self.version += 1

    def close(self) -> None:
        with self._lock:
            self.done = True
            self.version += 1

    def snapshot(self) -> dict:
        with self._lock:
            return {"labels": list(self.labels), "pieces": [list(p) for p in self.pieces],
                    "finished": list(self.finished), "version": self.version,
                    "done": self.done}


_STREAMS: dict[str, GenerationStream] = {}
_LOCK = threading.Lock()
_KEEP = 16  # finished streams kept for late readers


def open_stream(key: str, labels: list[str]) -> GenerationStream:
    stream = GenerationStream(labels)
    with _LOCK:
        _STREAMS[key] = stream
        done = [k for k, s in _STREAMS.items() if s.done]
        for k in done[:-_KEEP] if len(done) > _KEEP else []:
            _STREAMS.pop(k, None)
    return stream


def get_stream(key: str) -> GenerationStream | None:
    with _LOCK:
        return _STREAMS.get(key)
