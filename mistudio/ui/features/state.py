"""What the Features tab is showing, without Qt: tests drive it, the widgets render it."""

from __future__ import annotations

from dataclasses import dataclass, field

from mistudio.ui.features.table_data import FeatureFilter


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

    @property
    def feature(self) -> int | None:
        return self.history.current

    def select_sae(self, sae_id: str | None) -> bool:
        if sae_id == self.sae_id:
            return False
        self.sae_id = sae_id
        self.analysis_id = None
        self.history.clear()
        self.filter = FeatureFilter()
        return True
