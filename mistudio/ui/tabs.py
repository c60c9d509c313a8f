"""The tabs of the main window: where each lives, and what it says before it exists.

Tabs are imported and built on first view, so start-up stays fast and a tab whose
module is not installed yet shows its truthful empty state instead.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from dataclasses import dataclass

from PySide6.QtWidgets import QStackedLayout, QWidget

from mistudio.ui.empty_state import EmptyState

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TabSpec:
    title: str
    target: str  # "module:Class"; built as Class(studio, bridge, parent)
    empty_title: str
    empty_body: str


TABS = [
    TabSpec("Datasets", "mistudio.ui.datasets.tab:DatasetsTab", "No datasets yet",
            "Datasets hold the text your model reads: from the Hugging Face Hub, local files "
            "(.txt, .jsonl, .csv, .parquet) or the offline demo corpus. Import one, tokenize it "
            "for a model, and browse exactly what the model will be fed."),
    TabSpec("Models", "mistudio.ui.models.tab:ModelsTab", "No models yet",
            "Models are the language models you study: download from the Hub, import a local "
            "folder or a GGUF file, inspect the architecture and extract activations at chosen "
            "layers and hook points. Start by adding a model."),
    TabSpec("Training", "mistudio.ui.training.tab:TrainingTab", "No trainings yet",
            "Train sparse autoencoders (ReLU/L1, TopK, BatchTopK, JumpReLU, transcoders) on "
            "extracted activations, with live charts, checkpoints and resume. First extract "
            "activations in the Models tab."),
    TabSpec("Features", "mistudio.ui.features.tab:FeaturesTab", "No SAE to analyse yet",
            "This tab shows what an SAE learned: a feature table, max-activating examples, "
            "activation histograms, logit lens, correlations, ablations, a UMAP map and your "
            "labels. Train an SAE in the Training tab (or import one), then analyse it here."),
    TabSpec("Steering", "mistudio.ui.steering.tab:SteeringTab", "Nothing to steer yet",
            "Steer a model's generation with SAE features: add a feature's decoder direction, "
            "clamp or ablate it, and compare the steered and unsteered outputs side by side "
            "with per-token KL, perplexity and feature activation changes. It needs a model "
            "(Models tab) and an SAE trained on it (Training tab) or imported."),
    TabSpec("Templates", "mistudio.ui.templates.tab:TemplatesTab", "No templates yet",
            "Templates are saved, named settings: training templates, extraction templates and "
            "steering presets. Browse them as cards, edit, duplicate, import and export them, "
            "and Use one to open the Training tab, the extraction panel or the Steering tab "
            "with it filled in."),
]


def tab_available(spec: TabSpec) -> bool:
    module = spec.target.partition(":")[0]
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


class LazyTab(QWidget):
    """Placeholder that builds the real tab the first time it is shown."""

    def __init__(self, spec: TabSpec, studio, bridge, parent: QWidget | None = None):
        super().__init__(parent)
        self.spec = spec
        self.studio = studio
        self.bridge = bridge
        self.inner: QWidget | None = None
        self._layout = QStackedLayout(self)

    def ensure_built(self) -> QWidget:
        if self.inner is not None:
            return self.inner
        if tab_available(self.spec):
            module, _, cls = self.spec.target.partition(":")
            try:
                widget = getattr(importlib.import_module(module), cls)(self.studio, self.bridge, self)
            except Exception:
                log.exception("could not build the %s tab", self.spec.title)
                raise
        else:
            widget = EmptyState(self.spec.empty_title, self.spec.empty_body, parent=self)
        self.inner = widget
        self._layout.addWidget(widget)
        return widget


def tab_module_names() -> list[str]:
    """Every tab's module, in the tab bar's order."""
    return [spec.target.partition(":")[0] for spec in TABS]


# Libraries most tabs need whose import alone blocks for over 100 ms (pyqtgraph: ~150 ms
# quiet, most of it its Qt shim copying PySide6's enums). Imported before the window's first
# paint, where it costs start-up time (the target is 1 s) instead of a freeze after it.
PRELOAD_LIBRARIES = ("pyqtgraph",)


def preload_tab_libraries() -> None:
    """Import ``PRELOAD_LIBRARIES`` on the GUI thread before the window shows (see
    ``import_tab_module`` for why not on a worker thread)."""
    for name in PRELOAD_LIBRARIES:
        importlib.import_module(name)


def import_tab_module(module: str) -> None:
    """Import one tab's module on the GUI thread, soon after the window shows.

    The first open of a tab imports its module, and most tabs pull in pyqtgraph (its import
    alone is 0.3-2 s): done on the click, that froze the window while the user waited (issue
    #13, the Features tab). The main window imports the modules one per event-loop turn once
    it has painted, so by the time a user clicks a tab its code is loaded. NOT on a worker
    thread: importing pyqtgraph (its Qt shim copies PySide6's enums) beside the GUI thread
    crashed the process about one start in ten (SIGSEGV in shiboken's enum creation, seen
    with faulthandler). Only modules are imported: no widget is built here.
    """
    try:
        importlib.import_module(module)
    except Exception:  # the click on the tab shows the real error; nothing to do here
        log.debug("early import of %s failed", module, exc_info=True)
