"""Named crash points: where a test may kill this process outright, to prove crash safety.

``crash_point("train.checkpoint.renamed")`` marks a write, rename or commit of a job. When the
environment variable ``MISTUDIO_CRASH_AT`` names that point (``phase``: its first hit;
``phase:n``: its n-th hit in this process), the process sends itself SIGKILL there: no
``finally``, no flush, no atexit, exactly like a power cut or the OOM killer. The kill
harness (``scripts/kill_harness.py``, docs/reliability.md) uses it to land kills where random
instants rarely do. Unset (every user), a call costs one global lookup and a comparison.

Qt-free and import-light: every layer may call it.
"""

from __future__ import annotations

import os
import signal

ENV = "MISTUDIO_CRASH_AT"
#: Where the harness records the points a run passed (one name a line), when set.
TRACE_ENV = "MISTUDIO_CRASH_TRACE"


def _parse(value: str) -> tuple[str, int] | None:
    value = value.strip()
    if not value:
        return None
    name, _, nth = value.partition(":")
    try:
        return name, max(1, int(nth)) if nth else 1
    except ValueError:
        return name, 1


# read once: the harness sets it before starting the process
_TARGET = _parse(os.environ.get(ENV, ""))
_TRACE = os.environ.get(TRACE_ENV, "")
_hits: dict[str, int] = {}


def crash_point(name: str) -> None:
    """Kill this process here if ``MISTUDIO_CRASH_AT`` says so (see the module doc)."""
    if _TARGET is None and not _TRACE:
        return
    count = _hits[name] = _hits.get(name, 0) + 1
    if _TRACE:
        with open(_TRACE, "a", encoding="utf-8") as fh:
            fh.write(name + "\n")
    if _TARGET is not None and _TARGET[0] == name and _TARGET[1] == count:
        os.kill(os.getpid(), signal.SIGKILL)


def crash_point_armed() -> bool:
    """Whether crash points may fire (a harness run): code that simulates a torn write asks."""
    return _TARGET is not None or bool(_TRACE)


def configure(value: str | None, trace: str | None = None) -> None:
    """Set the crash target in this process (tests of crash_point itself)."""
    global _TARGET, _TRACE
    _TARGET = _parse(value or "")
    _TRACE = trace or ""
    _hits.clear()
