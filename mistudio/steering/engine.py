"""One steering comparison on a loaded model: plans from columns, generation, metrics.

Row 0 is the baseline (no intervention); rows 1..N are the columns. Everything here works on
tensors and a loaded model; loading, files and the job live in :mod:`mistudio.steering.job`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from mistudio.errors import UserError
from mistudio.models.hooks import HookTarget
from mistudio.steering.generate import Sampling, generate_rows
from mistudio.steering.hook import RowPlan, SteeringHook
from mistudio.steering.interventions import Column
from mistudio.steering.metrics import (feature_changes, kl_per_position, perplexity,
                                       token_diff, token_pieces)

#: Text for the short pass that measures the typical residual norm (no dataset needed).
NORM_TEXTS = (
    "The history of the city goes back more than two thousand years, to a small settlement "
    "on the river.",
    "Photosynthesis converts light energy into chemical energy stored in sugars.",
    "She opened the door, looked around the empty room and sat down by the window.",
    "The algorithm sorts the list in place and returns the number of swaps it made.",
    "Prices rose sharply last year, and the central bank raised interest rates twice.",
    "Once upon a time there was a little girl who loved to explore the forest.",
    "The team won the championship after a dramatic final match in the rain.",
    "Water boils at one hundred degrees Celsius at sea level.",
)


@dataclass
class Units:
    """What a coefficient's units are worth: max activations per feature, the norm."""

    max_acts: dict[int, float] = field(default_factory=dict)
    norm: float | None = None

    def feature_amount(self, iv, w_norm: float) -> float:
        if iv.units == "raw" or iv.kind == "ablate":
            return iv.value
        if iv.units == "max":
            if iv.feature not in self.max_acts:
                raise UserError(f"Feature {iv.feature}'s max activation is not known: 'max' "
                                "units need an analysis of this SAE.",
                                hint="Run the feature analysis first, or use raw or norm units.")
            return iv.value * self.max_acts[iv.feature]
        return iv.value * self._norm() / max(w_norm, 1e-12)

    def _norm(self) -> float:
        if self.norm is None:
            raise UserError("The typical residual norm was not measured.")
        return self.norm


def build_plan(column: Column, sae, units: Units, vectors: dict[int, torch.Tensor],
               d: int) -> RowPlan:
    """The column's interventions in activation units (``vectors``: by intervention index)."""
    add = None
    clamps: dict[int, float] = {}
    features = sorted({int(iv.feature) for iv in column.interventions if iv.feature is not None})
    for i, iv in enumerate(column.interventions):
        if iv.kind == "vector":
            v = vectors[i].double()
            if iv.units == "norm":
                step = iv.value * units._norm() * v / max(float(v.norm()), 1e-12)
            else:
                step = iv.value * v
        else:
            w = sae.W_dec.detach()[iv.feature].double()
            amount = units.feature_amount(iv, float(w.norm()))
            if iv.kind != "add":
                clamps[int(iv.feature)] = float(amount)
                continue
            step = amount * w
        add = step if add is None else add + step
    if add is not None and add.shape[-1] != d:
        raise UserError(f"The steering direction has width {add.shape[-1]}, the hook point "
                        f"{d}.")
    return RowPlan(add=None if add is None else add.float(), clamps=clamps, features=features)


@torch.inference_mode()
def hook_inputs(model, target: HookTarget, sequences: list[list[int]],
                pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The hook point's tensor for right-padded sequences: ``(acts [B, L, d], lengths [B])``."""
    hook = SteeringHook(target, [None] * len(sequences))
    hook.capture = True
    ids, mask = _padded(sequences, pad_id, next(model.parameters()).device)
    with hook.attached(model):
        model(input_ids=ids, attention_mask=mask, use_cache=False)
    return hook.captured, mask.sum(1)


def _padded(sequences, pad_id, device):
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long, device=device)
    mask = torch.zeros_like(ids)
    for r, s in enumerate(sequences):
        ids[r, :len(s)] = torch.tensor(s, dtype=torch.long)
        mask[r, :len(s)] = 1
    return ids, mask


def typical_norm(model, tokenizer, target: HookTarget) -> tuple[float, int]:
    """Mean L2 norm of the hook point's tensor over :data:`NORM_TEXTS` (the first position
    left out: many models park a huge norm there). Returns ``(norm, tokens used)``."""
    seqs = [tokenizer(t)["input_ids"] for t in NORM_TEXTS]
    acts, lengths = hook_inputs(model, target, seqs, _pad_id(tokenizer))
    norms = [acts[r, 1:int(n)].double().norm(dim=-1) for r, n in enumerate(lengths.tolist())]
    allnorms = torch.cat(norms)
    return float(allnorms.mean()), int(allnorms.numel())


def contrastive_direction(model, tokenizer, target: HookTarget, positive: list[str],
                          negative: list[str]) -> torch.Tensor:
    """Mean over ``positive`` minus mean over ``negative`` of the hook point's tensor at each
    prompt's last token (the steering-vectors / CAA reading position)."""
    def mean_last(prompts):
        seqs = [tokenizer(p)["input_ids"] for p in prompts]
        if any(not s for s in seqs):
            raise UserError("A contrastive prompt has no tokens.")
        acts, lengths = hook_inputs(model, target, seqs, _pad_id(tokenizer))
        last = torch.stack([acts[r, int(n) - 1] for r, n in enumerate(lengths.tolist())])
        return last.double().mean(0)

    return (mean_last(positive) - mean_last(negative)).float()


def _pad_id(tokenizer) -> int:
    for attr in ("pad_token_id", "eos_token_id"):
        v = getattr(tokenizer, attr, None)
        if isinstance(v, int):
            return v
    return 0


def eos_ids(model, tokenizer) -> set[int]:
    ids = set()
    for source in (getattr(model, "generation_config", None), model.config, tokenizer):
        v = getattr(source, "eos_token_id", None)
        if isinstance(v, int):
            ids.add(v)
        elif isinstance(v, (list, tuple)):
            ids.update(int(x) for x in v)
    return ids


def run_comparison(model, tokenizer, sae, target: HookTarget, columns: list[Column],
                   prompt_ids: list[int], sampling: Sampling, *, scope: str = "all",
                   units: Units | None = None, vectors: list[dict[int, torch.Tensor]] | None = None,
                   use_cache: bool = True, with_metrics: bool = True,
                   on_step: Callable | None = None,
                   should_stop: Callable[[], bool] | None = None,
                   packed: bool | None = None) -> dict:
    """Generate the baseline and every column, then measure. Returns a JSON-ready dict.
    ``packed=False``: decode with the plain ``F.linear`` (see :mod:`.packed`)."""
    units = units or Units()
    param = next(model.parameters())
    d = sae.d_out if sae is not None else int(target_width(model))
    plans = [None] + [build_plan(c, sae, units, (vectors or [{}] * len(columns))[i], d)
                      for i, c in enumerate(columns)]
    dtype = param.dtype if param.is_floating_point() else torch.float32
    hook = SteeringHook(target, plans, sae=sae, scope=scope, prompt_len=len(prompt_ids),
                        dtype=dtype, device=param.device)
    with hook.attached(model):
        outs = generate_rows(model, prompt_ids, len(plans), sampling, hook=hook,
                             eos_ids=eos_ids(model, tokenizer), use_cache=use_cache,
                             on_step=on_step, should_stop=should_stop, packed=packed)
    labels = ["baseline"] + [c.label for c in columns]
    pieces = [token_pieces(tokenizer, o, prompt_ids) for o in outs]
    result = {"prompt_len": len(prompt_ids), "columns": []}
    for r, o in enumerate(outs):
        result["columns"].append({
            "label": labels[r], "interventions": [] if r == 0 else
            [iv.to_dict() for iv in columns[r - 1].interventions],
            "tokens": o, "pieces": pieces[r], "text": "".join(pieces[r]),
            "diff": token_diff(pieces[0], pieces[r]) if r else []})
    if with_metrics:
        measure(model, sae, target, plans, prompt_ids, outs, scope, result, _pad_id(tokenizer),
                dtype)
    return result


def target_width(model) -> int:
    cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") \
        else model.config
    return int(getattr(cfg, "hidden_size", 0) or getattr(cfg, "n_embd", 0))


@torch.inference_mode()
def measure(model, sae, target, plans, prompt_ids, outs, scope, result, pad_id, dtype) -> None:
    """Fill each column of ``result`` with kl, perplexity, targets and off_target."""
    n = len(outs)
    p = len(prompt_ids)
    seqs = [prompt_ids + o for o in outs]
    steered = [r for r in range(1, n) if plans[r] is not None]
    batch = seqs + [seqs[r] for r in steered]
    batch_plans = [None] * n + [plans[r] for r in steered]
    hook = SteeringHook(target, batch_plans, sae=sae, scope=scope, prompt_len=p, dtype=dtype,
                        device=next(model.parameters()).device)
    hook.capture = True
    ids, mask = _padded(batch, pad_id, next(model.parameters()).device)
    with hook.attached(model):
        logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits.float()
    x_in = hook.captured
    for r in range(n):
        gen = len(outs[r])
        col = result["columns"][r]
        tgt = torch.tensor(outs[r], dtype=torch.long, device=logits.device)
        col["perplexity"] = perplexity(logits[r, p - 1:p - 1 + gen], tgt)
        if r == 0:
            col["kl"] = [0.0] * gen
            col["kl_mean"] = 0.0
            continue
        srow = n + steered.index(r)
        kl = kl_per_position(logits[srow, p - 1:p - 1 + gen], logits[r, p - 1:p - 1 + gen])
        col["kl"] = [float(v) for v in kl.clamp_min(0)]
        col["kl_mean"] = float(kl.mean()) if gen else 0.0
        col["targets"], col["off_target"] = _feature_effects(sae, plans[r], x_in[r, :p + gen],
                                                             scope, p, target, dtype)


def _feature_effects(sae, plan: RowPlan, x: torch.Tensor, scope: str, prompt_len: int, target,
                     dtype) -> tuple[list[dict], list[dict]]:
    from mistudio.steering.hook import scope_range

    if sae is None:
        return [], []
    lo, hi = scope_range(scope, 0, x.shape[0], prompt_len)
    xs = x[lo:hi]
    one = SteeringHook(target, [plan], sae=sae, scope="all", dtype=dtype, device=x.device)
    after = xs + one.delta(xs[None])[0] if one.enabled else xs
    enc = sae.to(x.device)
    f_before = enc.encode(xs.float())
    f_after = enc.encode(after.float())
    return feature_changes(f_before, f_after, plan.features)

