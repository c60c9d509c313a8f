"""Which examples of a feature the explainer sees and which the scorers ask about.

As in delphi: the explainer sees the feature's top examples; the scorers get held-out
activating examples drawn from each of the analysis's quantile groups (delphi's rank
groups, so low and high activations are both tested) and non-activating examples, random
contexts of the analysis where the feature is zero over the whole window. An example is
identified by (sequence, position); no example shown to the explainer is ever scored.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class HeldOut:
    example: object          # mistudio.analysis.results.Example
    activating: bool
    group: int = -1          # quantile group of an activating example (-1: non-activating)


@dataclass
class FeatureExamples:
    feature: int
    max_act: float
    train: list = field(default_factory=list)      # shown to the explainer
    test: list[HeldOut] = field(default_factory=list)  # scored
    logit_tokens: list[str] = field(default_factory=list)
    strict_negatives: bool = True  # every negative window is all zeros

    @property
    def train_keys(self) -> set[tuple[int, int]]:
        return {(e.seq, e.pos) for e in self.train}

    @property
    def test_keys(self) -> set[tuple[int, int]]:
        return {(h.example.seq, h.example.pos) for h in self.test}


def key(example) -> tuple[int, int]:
    return int(example.seq), int(example.pos)


def select(results, feature: int, *, n_train: int = 10, n_test_per_group: int = 2,
           n_negative: int = 8, seed: int = 0) -> FeatureExamples:
    """The explainer's and the scorers' examples of one feature of ``results``
    (an :class:`~mistudio.analysis.results.AnalysisResults`), reproducible with ``seed``."""
    rng = np.random.default_rng([int(seed), int(feature)])
    f = results.check_feature(feature)
    max_act = float(results.columns["max_act"][f])
    train = results.examples(f, "top")[:n_train]
    shown = {key(e) for e in train}
    test: list[HeldOut] = []
    for g, group in enumerate(results.intervals(f, "quantile")):
        pool = [e for e in group.examples if key(e) not in shown
                and key(e) not in {key(h.example) for h in test}]
        for i in rng.permutation(len(pool))[:n_test_per_group]:
            test.append(HeldOut(pool[int(i)], True, g))
    contexts = [e for e in results.random_contexts(f) if key(e) not in shown]
    negatives = [e for e in contexts if max(e.values, default=0.0) <= 0]
    strict = len(negatives) >= n_negative
    if not strict:
        # a dense feature fires somewhere in most windows: then contexts whose own token is
        # zero fill up (the docs say so; such a negative may hold a weaker firing nearby)
        negatives += [e for e in contexts if e.value <= 0 and max(e.values) > 0]
    for i in rng.permutation(len(negatives))[:n_negative]:
        test.append(HeldOut(negatives[int(i)], False))
    lens = results.logit_lens(f, "raw")
    return FeatureExamples(f, max_act, train, test, [s for _, s, _ in lens.top], strict)
