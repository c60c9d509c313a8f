"""Detection and fuzzing scores as delphi defines them, answered by next-token probabilities.

Detection: is the (unmarked) example one where the feature fires? Positives are held-out
activating examples, negatives non-activating ones. Fuzzing: activating examples are shown
marked either where the feature fires (correct) or on as many other tokens chosen at random
(incorrect); is the marking correct? Each answer is P(yes) / (P(yes) + P(no)) of the
scorer's next token; 'yes' when it is over 0.5. The score is the balanced accuracy
(mean of the true-positive and true-negative rates), so a scorer that always says yes gets
0.5 whatever the class balance.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mistudio.autointerp import prompts


@dataclass
class Score:
    scorer: str
    balanced_accuracy: float
    tp: int
    tn: int
    fp: int
    fn: int
    mean_answer_mass: float  # P(yes) + P(no): how much of the next token the answers hold
    items: list[dict] = field(default_factory=list)  # per example: key, truth, p_yes
    # threshold-free: does P(yes) rank the true examples above the false ones? A small
    # model that says "No" to everything gets balanced accuracy 0.5 but can still rank
    auroc: float | None = None

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def balanced_accuracy(truth: list[bool], predicted: list[bool]) -> tuple[float, dict]:
    """Mean of the true-positive and true-negative rates (a class with no examples is left
    out of the mean; NaN when there are none at all)."""
    t = np.asarray(truth, dtype=bool)
    p = np.asarray(predicted, dtype=bool)
    counts = {"tp": int((t & p).sum()), "tn": int((~t & ~p).sum()),
              "fp": int((~t & p).sum()), "fn": int((t & ~p).sum())}
    rates = []
    if t.any():
        rates.append(counts["tp"] / int(t.sum()))
    if (~t).any():
        rates.append(counts["tn"] / int((~t).sum()))
    return (float(np.mean(rates)) if rates else float("nan")), counts


def auroc(truth: list[bool], p_yes: list[float]) -> float | None:
    """The probability that a random true example gets a higher P(yes) than a random false
    one (ties count half): the area under the ROC curve. None without both classes."""
    t = np.asarray(truth, dtype=bool)
    p = np.asarray(p_yes, dtype=float)
    pos, neg = p[t], p[~t]
    if not len(pos) or not len(neg):
        return None
    diff = pos[:, None] - neg[None, :]
    return float(((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size)


def _fuzz_marks(example, rng, hidden=frozenset()) -> list[bool]:
    """As many marked tokens as the example has active ones, on (shown) tokens where it is
    zero."""
    values = example.values
    n = max(1, sum(v > 0 for v in values))
    zeros = [i for i, (v, t) in enumerate(zip(values, example.tokens))
             if v <= 0 and t not in hidden]
    chosen = {zeros[int(j)] for j in rng.permutation(len(zeros))[:n]}
    return [i in chosen for i in range(len(values))]


def questions(scorer: str, explanation: str, held_out, seed: int = 0,
              hidden=frozenset()) -> list[tuple[str, bool, tuple]]:
    """(user message, true answer, example key) of every question a scorer asks; ``hidden``
    token strings are left out of the texts."""
    out = []
    if scorer == "detection":
        for h in held_out:
            ex = h.example
            tokens, _ = prompts.visible(ex.tokens, ex.values, hidden)
            out.append((prompts.detection_user(explanation, tokens), h.activating,
                        (ex.seq, ex.pos)))
    elif scorer == "fuzz":
        rng = np.random.default_rng(seed)
        positives = [h for h in held_out if h.activating]
        for i, h in enumerate(positives):
            ex = h.example
            correct = i % 2 == 0
            marks = [v > 0 for v in ex.values] if correct else _fuzz_marks(ex, rng, hidden)
            tokens, marks = prompts.visible(ex.tokens, marks, hidden)
            out.append((prompts.fuzz_user(explanation, tokens, marks), correct,
                        (ex.seq, ex.pos)))
    else:
        from mistudio.errors import UserError

        raise UserError(f"Unknown scorer {scorer!r}.", hint="Use 'detection' or 'fuzz'.")
    return out


def score(model, scorer: str, explanation: str, held_out, version, *, seed: int = 0,
          batch_size: int = 16) -> Score:
    """Ask ``model`` (an :class:`~mistudio.autointerp.model.ChatModel` or a stand-in with
    ``answer_probs``) every question of ``scorer`` in batches; the balanced accuracy."""
    hidden = getattr(model, "special_tokens", frozenset()) if version.hide_special_tokens \
        else frozenset()
    qs = questions(scorer, explanation, held_out, seed, hidden)
    system = version.detection_system if scorer == "detection" else version.fuzz_system
    p_yes, mass = [], []
    for start in range(0, len(qs), batch_size):
        batch = qs[start:start + batch_size]
        probs = np.asarray(model.answer_probs(system, [q for q, _, _ in batch],
                                              (version.yes, version.no)), dtype=float)
        total = probs.sum(axis=1)
        p_yes.extend((probs[:, 0] / np.maximum(total, 1e-30)).tolist())
        mass.extend(total.tolist())
    truth = [t for _, t, _ in qs]
    acc, counts = balanced_accuracy(truth, [p > 0.5 for p in p_yes])
    items = [{"key": list(k), "truth": t, "p_yes": round(p, 4)}
             for (_, t, k), p in zip(qs, p_yes)]
    # from the stored (rounded) P(yes), so the stored details give the same number
    return Score(scorer, acc, mean_answer_mass=float(np.mean(mass)) if mass else 0.0,
                 items=items, auroc=auroc(truth, [i["p_yes"] for i in items]), **counts)


def derangement(features: list[int], seed: int = 0) -> dict[int, int]:
    """For the shuffled baseline: each feature paired with ANOTHER feature's explanation."""
    if len(features) < 2:
        return {}
    rng = np.random.default_rng(seed)
    order = list(features)
    while True:
        perm = [order[i] for i in rng.permutation(len(order))]
        if all(a != b for a, b in zip(order, perm)):
            return dict(zip(order, perm))
