"""Batched generation with the KV cache: a baseline row and steered rows side by side.

Sampling follows ``transformers``' ``generate`` exactly (its own logits warpers, in its
order: temperature, top-k, top-p; float32 scores; ``torch.multinomial`` over the softmax),
with one random generator per row seeded with the same seed. So the baseline row draws the
very numbers a plain ``model.generate(..., do_sample=True)`` draws after
``torch.manual_seed(seed)``, whatever else is in the batch.

Forward passes are shared: every row reads the same prompt, so when no intervention touches
the prompt (scope ``generated``) the prompt is run once and its KV cache repeated for each
row; every decoding step runs all rows in one batch. On the CPU the model's linear layers
compute with weights prepacked for oneDNN (:mod:`mistudio.steering.packed`), which makes a
step of a few rows cost about what one row costs.
"""

from __future__ import annotations

from typing import Callable

import torch

from mistudio.steering.packed import packed_linears
from mistudio.steering.sampling import Sampling


def warpers(s: Sampling):
    from mistudio.hf import transformers_names

    LogitsProcessorList, TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper = \
        transformers_names("LogitsProcessorList", "TemperatureLogitsWarper", "TopKLogitsWarper",
                           "TopPLogitsWarper")

    out = LogitsProcessorList()
    if s.greedy:
        return out
    if s.temperature != 1.0:
        out.append(TemperatureLogitsWarper(s.temperature))
    if s.top_k:
        out.append(TopKLogitsWarper(top_k=s.top_k))
    if s.top_p < 1.0:
        out.append(TopPLogitsWarper(top_p=s.top_p))
    return out


def cache_argument(model) -> str:
    """transformers 5.2x names the KV cache ``cache``; earlier versions ``past_key_values``."""
    import inspect

    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def _model_device(model) -> torch.device:
    return next(model.parameters()).device


StepCallback = Callable[[int, list[int], list[bool]], None]


@torch.inference_mode()
def generate_rows(model, prompt_ids: list[int], n_rows: int, sampling: Sampling, *,
                  hook=None, eos_ids: set[int] | None = None, use_cache: bool = True,
                  on_step: StepCallback | None = None,
                  should_stop: Callable[[], bool] | None = None,
                  packed: bool | None = None) -> list[list[int]]:
    """Generate ``n_rows`` continuations of one prompt; returns each row's new token ids
    (ending with EOS when it stopped there). ``hook``: a
    :class:`~mistudio.steering.hook.SteeringHook` already attached to ``model``.
    ``on_step(step, tokens, finished)`` after each new token; ``should_stop()`` ends early.
    ``packed=False``: plain ``F.linear`` even where packed weights would be used."""
    with packed_linears(model, packed):
        return _generate(model, prompt_ids, n_rows, sampling, hook, eos_ids, use_cache, on_step,
                         should_stop)


def _generate(model, prompt_ids, n_rows, sampling, hook, eos_ids, use_cache, on_step,
              should_stop) -> list[list[int]]:
    device = _model_device(model)
    eos_ids = set(eos_ids or ())
    total = batch_rows(n_rows, device)
    if hook is not None:
        hook.n_rows = total  # padding rows have no plan: they run unsteered
    gens = [torch.Generator(device=device).manual_seed(sampling.seed) for _ in range(total)]
    procs = warpers(sampling)
    prompt = torch.tensor([prompt_ids], dtype=torch.long, device=device)
    shared = hook is None or not hook.enabled or hook.scope == "generated"
    seqs = prompt.expand(total, -1)
    out: list[list[int]] = [[] for _ in range(n_rows)]
    finished = [False] * n_rows
    cache = None
    cache_arg = cache_argument(model)
    extra = {"logits_to_keep": 1} if accepts(model, "logits_to_keep") else {}
    for step in range(sampling.max_new_tokens):
        if use_cache and cache is not None:
            if hook is not None:
                hook.offset = seqs.shape[1] - 1
            res = model(input_ids=seqs[:, -1:], use_cache=True, **{cache_arg: cache}, **extra)
        else:
            # The prompt pass runs one row when every row reads the same unsteered prompt,
            # else the real rows only: padding rows (see batch_rows) only make decoding
            # steps cheaper, and copy row 0's cache afterwards.
            first = (1 if shared else n_rows) if use_cache and step == 0 else total
            if hook is not None:
                hook.offset = 0
                hook.n_rows = first
            res = model(input_ids=seqs[:first], use_cache=use_cache, **extra)
            if hook is not None:
                hook.n_rows = total
        logits = res.logits[:, -1, :].to(dtype=torch.float32, copy=True)
        if use_cache:
            cache = getattr(res, cache_arg)
            rows = logits.shape[0]
            if rows != total:  # a prompt pass of fewer rows: fill the batch
                if rows == 1:
                    logits = logits.expand(total, -1).clone()
                    cache.batch_repeat_interleave(total)
                else:
                    pick = torch.cat([torch.arange(rows, device=device),
                                      torch.zeros(total - rows, dtype=torch.long,
                                                  device=device)])
                    logits = logits[pick]
                    cache.batch_select_indices(pick)
        next_tokens = _choose(logits, seqs, procs, sampling, gens)
        chosen = next_tokens.tolist()[:n_rows]
        for r, t in enumerate(chosen):
            if not finished[r]:
                out[r].append(t)
                finished[r] = t in eos_ids
        seqs = torch.cat([seqs, next_tokens[:, None]], dim=1)
        if on_step is not None:
            on_step(step, chosen, list(finished))
        if all(finished) or (should_stop is not None and should_stop()):
            break
    return out


def batch_rows(n_rows: int, device) -> int:
    """Rows to run for ``n_rows`` outputs. On the CPU 2-3 rows are padded to 4 (the extra rows
    are discarded): with the packed weights a decoding step of SmolLM2-135M (one thread)
    took 1.15-1.3x one row's time for 2 rows, 0.9-1.0x for 3 and 0.85-1.0x for 4; with MKL's
    ``F.linear`` 1.55-1.6x, 1.9x and 1.35-1.45x (it multiplies 2-3 rows one row at a time)."""
    if torch.device(device).type == "cpu" and n_rows in (2, 3):
        return 4
    return n_rows


def accepts(model, name: str) -> bool:
    import inspect

    return name in inspect.signature(model.forward).parameters


def _choose(logits, seqs, procs, sampling: Sampling, gens) -> torch.Tensor:
    if sampling.greedy:
        return logits.argmax(dim=-1)
    scores = procs(seqs, logits)
    probs = torch.softmax(scores, dim=-1)
    return torch.cat([torch.multinomial(probs[r:r + 1], 1, generator=g)[0]
                      for r, g in enumerate(gens)])


@torch.inference_mode()
def plain_generate(model, prompt_ids: list[int], sampling: Sampling, *,
                   eos_ids: set[int] | None = None) -> list[int]:
    """One unsteered row with the same loop (the reference the baseline column equals)."""
    return generate_rows(model, prompt_ids, 1, sampling, eos_ids=eos_ids)[0]
