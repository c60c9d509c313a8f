"""What steering changed, measured after generation in one batched pass.

For every output (baseline and steered columns) the full text (prompt + generated tokens)
runs through the *unsteered* model, and each steered text also through the steered model:

- ``kl``: per generated token of a steered column, ``KL(P_steered || P_unsteered)`` of the
  next-token distributions (temperature 1) at the position that predicted it, in nats.
- ``perplexity``: ``exp(mean NLL)`` of the generated tokens under the unsteered model.
- ``targets``: each intervened feature's mean activation over the steered positions of the
  column's text, before (the hook point's input) and after the intervention (encoded again).
- ``off_target``: the features (not intervened on) whose mean activation changed most.
"""

from __future__ import annotations

import difflib

import torch


def kl_per_position(steered_logits: torch.Tensor, base_logits: torch.Tensor) -> torch.Tensor:
    """``KL(softmax(steered) || softmax(base))`` along the last axis, float64."""
    ls = torch.log_softmax(steered_logits.double(), dim=-1)
    lb = torch.log_softmax(base_logits.double(), dim=-1)
    return (ls.exp() * (ls - lb)).sum(-1)


def perplexity(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """``exp`` of the mean negative log-likelihood of ``targets [T]`` under ``logits [T, V]``."""
    if targets.numel() == 0:
        return float("nan")
    nll = -torch.log_softmax(logits.double(), dim=-1).gather(-1, targets[:, None].long())[:, 0]
    return float(nll.mean().exp())


def feature_changes(before: torch.Tensor, after: torch.Tensor, targets: list[int],
                    top: int = 10) -> tuple[list[dict], list[dict]]:
    """Mean activations over positions (``before``/``after`` ``[t, d_sae]``): the target
    features' before/after, and the ``top`` other features with the largest change."""
    if before.shape[0] == 0:
        return [], []
    mb, ma = before.double().mean(0), after.double().mean(0)
    target_rows = [{"feature": int(f), "before": float(mb[f]), "after": float(ma[f])}
                   for f in targets]
    change = (ma - mb).abs()
    if targets:
        change[torch.tensor(sorted(set(targets)), dtype=torch.long)] = -1.0
    k = min(top, int((change > 0).sum()))
    idx = change.topk(k).indices.tolist() if k else []
    off = [{"feature": int(f), "before": float(mb[f]), "after": float(ma[f]),
            "change": float(ma[f] - mb[f])} for f in idx]
    return target_rows, off


def token_diff(a: list[str], b: list[str]) -> list[dict]:
    """A token-level diff of two outputs (difflib opcodes: equal/replace/delete/insert),
    each with the token ranges and their text."""
    ops = difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes()
    return [{"op": op, "a": [i1, i2], "b": [j1, j2], "a_text": "".join(a[i1:i2]),
             "b_text": "".join(b[j1:j2])} for op, i1, i2, j1, j2 in ops]


def token_pieces(tokenizer, ids: list[int], prefix_ids: list[int] | None = None) -> list[str]:
    """The text each token adds (decoding growing prefixes, so multi-byte characters split
    over tokens land on the token that completes them)."""
    prefix = list(prefix_ids or [])
    pieces, prev = [], tokenizer.decode(prefix, skip_special_tokens=False) if prefix else ""
    for i in range(len(ids)):
        text = tokenizer.decode(prefix + ids[:i + 1], skip_special_tokens=False)
        pieces.append(text[len(prev):] if text.startswith(prev) else text)
        prev = text
    return pieces
