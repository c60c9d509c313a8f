"""The kinds of job the app can run.

Kinds are declared by name with the dotted path of their function, so that listing
them (UI start-up) never imports torch; the function's module is imported only when
a job of that kind starts.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class JobKind:
    name: str
    target: str  # "package.module:function"
    gpu: bool = False  # GPU-heavy jobs run one at a time by default
    title: str = ""
    pausable: bool = False
    #: What to lower when the job runs out of memory (GPU or RAM): the settings of this
    #: kind, named as the user sets them. Every long kind has one (a test checks).
    memory_hint: str = ""

    def load(self) -> Callable:
        module, _, attr = self.target.partition(":")
        return getattr(importlib.import_module(module), attr)


_KINDS: dict[str, JobKind] = {}


def register(kind: JobKind) -> JobKind:
    _KINDS[kind.name] = kind
    return kind


def get_kind(name: str) -> JobKind:
    try:
        return _KINDS[name]
    except KeyError:
        raise KeyError(f"unknown job kind {name!r}; known: {', '.join(sorted(_KINDS))}") from None


def job_kinds() -> dict[str, JobKind]:
    return dict(_KINDS)


# Built-in kinds (demos for tests and the CLI). Each area registers its own kinds in its
# package's ``job_kinds.py`` (``mistudio.app.job_kinds`` imports them all at start-up).
register(JobKind("demo.sleep", "mistudio.jobs.builtin:sleep_job", title="Wait", pausable=True))
register(JobKind("demo.busy", "mistudio.jobs.builtin:busy_job", gpu=True, title="Busy compute"))
register(JobKind("demo.fail", "mistudio.jobs.builtin:fail_job", title="Always fails"))
