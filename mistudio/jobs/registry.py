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


# Built-in kinds. Each area adds its own line here.
register(JobKind("demo.sleep", "mistudio.jobs.builtin:sleep_job", title="Wait", pausable=True))
register(JobKind("demo.busy", "mistudio.jobs.builtin:busy_job", gpu=True, title="Busy compute"))
register(JobKind("demo.fail", "mistudio.jobs.builtin:fail_job", title="Always fails"))
register(JobKind("datasets.import", "mistudio.data.importer:run_import", title="Import dataset"))
register(JobKind("datasets.tokenize", "mistudio.data.tokenize:run_tokenize",
                 title="Tokenize dataset"))
register(JobKind("datasets.stats", "mistudio.data.stats:run_stats", title="Dataset statistics"))
register(JobKind("models.download", "mistudio.models.sources:hub_download_job",
                 title="Download model"))
register(JobKind("models.import", "mistudio.models.sources:import_local_job",
                 title="Import model folder"))
register(JobKind("models.convert_gguf", "mistudio.models.sources:convert_gguf_job",
                 title="Convert GGUF model"))
register(JobKind("models.quantize", "mistudio.models.sources:save_quantized_job", gpu=True,
                 title="Save quantized model"))
register(JobKind("activations.extract", "mistudio.activations.extract:run", gpu=True,
                 title="Extract activations", pausable=True))
register(JobKind("sae.train", "mistudio.sae.job:train_job", gpu=True, title="Train SAE",
                 pausable=True))
register(JobKind("sae.import", "mistudio.sae.service:import_job", title="Import SAE"))
register(JobKind("sae.catalogue_download", "mistudio.sae.job:catalogue_import_job",
                 title="Download SAE from the catalogue"))
register(JobKind("sae.evaluate", "mistudio.sae.evaluation:evaluate_job", gpu=True,
                 title="Evaluate SAE spliced into its model"))
register(JobKind("training.export_checkpoint", "mistudio.workflows:export_checkpoint_job",
                 title="Export checkpoint as SAELens folder"))
register(JobKind("features.analyze", "mistudio.analysis.job:run", gpu=True,
                 title="Analyse SAE features", pausable=True))
