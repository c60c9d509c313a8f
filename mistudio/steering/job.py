"""The ``steering.generate`` job: load (cached), generate baseline + columns, measure, save.

Params (JSON): ``generation_id``, ``model_folder``, ``model_name``, ``trust_remote_code``,
``device``, ``dtype``, ``sae_folder``, ``hook_name``, ``prompt``, ``chat``, ``columns``
(:class:`~mistudio.steering.interventions.Column` dicts), ``scope``, ``sampling``
(:class:`~mistudio.steering.generate.Sampling`), ``max_acts`` ({feature: value}, for 'max'
units), ``norm_cache`` (the JSON file caching typical residual norms), ``out_file`` and
``use_cache``. Tokens stream to :mod:`mistudio.steering.stream` under the job id.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from mistudio.errors import UserError
from mistudio.paths import atomic_write_json

_SAES: dict[tuple, object] = {}
_SAE_LOCK = threading.Lock()


def cached_sae(folder: str, device: str):
    """SAEs stay loaded in the process like models (keyed by folder, device, file time)."""
    from mistudio.sae.formats import WEIGHTS_FILE, load_sae

    weights = Path(folder) / WEIGHTS_FILE
    stamp = weights.stat().st_mtime_ns if weights.exists() else 0
    key = (str(Path(folder).resolve()), device, stamp)
    with _SAE_LOCK:
        sae = _SAES.get(key)
        if sae is None:
            sae = load_sae(folder, device=device)[0]
            sae.requires_grad_(False)
            for old in [k for k in _SAES if k[0] == key[0]]:
                del _SAES[old]
            _SAES[key] = sae
        return sae


def context_length(model_or_config) -> int:
    cfg = getattr(model_or_config, "config", model_or_config)
    if hasattr(cfg, "get_text_config"):
        cfg = cfg.get_text_config()
    for attr in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        v = getattr(cfg, attr, None)
        if isinstance(v, int) and v > 0:
            return v
    return 0


def encode_prompt(tokenizer, prompt: str, chat: bool) -> list[int]:
    if not prompt or not prompt.strip():
        raise UserError("The prompt is empty.", hint="Type the text the model should continue.")
    if chat:
        if not getattr(tokenizer, "chat_template", None):
            raise UserError("This model's tokenizer has no chat template.",
                            hint="Turn off 'chat template' for base models.")
        ids = tokenizer.apply_chat_template([{"role": "user", "content": prompt}],
                                            add_generation_prompt=True, tokenize=True)
        if isinstance(ids, dict) or hasattr(ids, "keys"):
            ids = ids["input_ids"]
        return [int(i) for i in ids]
    return [int(i) for i in tokenizer(prompt)["input_ids"]]


def check_context(n_prompt: int, max_new: int, limit: int) -> None:
    if limit and n_prompt + max_new > limit:
        raise UserError(f"The prompt ({n_prompt} tokens) plus {max_new} new tokens is over the "
                        f"model's context length ({limit} tokens).",
                        hint=f"Shorten the prompt to at most {max(0, limit - max_new)} tokens, "
                             "or generate fewer tokens.")


def resolve_target(model, hook_name: str, sae):
    from mistudio.models import hooks
    from mistudio.steering.engine import target_width

    cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") \
        else model.config
    n_layers = int(getattr(cfg, "num_hidden_layers", 0) or getattr(cfg, "n_layer", 0))
    target = hooks.resolve(hook_name, cfg.model_type, n_layers)
    hooks.get_module(model, target.module_path)
    width = target_width(model)
    if sae is not None and target.hook_type in ("resid_pre", "resid_post", "attn_out",
                                                "mlp_out") and sae.d_in != width:
        raise UserError(f"This SAE reads vectors of width {sae.d_in}, but {hook_name} of this "
                        f"model has width {width}: the SAE belongs to another model.",
                        hint="Pick the model the SAE was trained on.")
    return target


def measured_norm(cache_file: str, key: str, compute) -> tuple[float, str]:
    """The typical residual norm from the cache file, or measured now and cached."""
    path = Path(cache_file) if cache_file else None
    data = {}
    if path is not None and path.exists():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = {}
    hit = data.get(key)
    if isinstance(hit, dict) and "norm" in hit:
        return float(hit["norm"]), hit.get("source", "")
    norm, tokens = compute()
    source = (f"short pass over {tokens} tokens of built-in text (mean L2 norm at the hook "
              "point, first position left out)")
    if path is not None:
        data[key] = {"norm": norm, "tokens": tokens, "source": source,
                     "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, data)
    return norm, source


def _or_auto(value, default):
    return default if not value or value == "auto" else value


def generate_job(params: dict, ctx) -> dict:
    from mistudio import hardware
    from mistudio.models.pool import MODEL_POOL
    from mistudio.steering.generate import Sampling
    from mistudio.steering.interventions import Column

    sampling = Sampling.from_dict(params.get("sampling")).validate()
    columns = [Column.from_dict(c) for c in params["columns"]]
    scope = params.get("scope", "all")
    # 'auto' means the app's default device/dtype (the queue hands them to the context)
    device = hardware.resolve_device(_or_auto(params.get("device"), ctx.device))
    dtype = hardware.resolve_dtype(_or_auto(params.get("dtype"), ctx.dtype), device)
    ctx.progress(0, sampling.max_new_tokens, f"Loading {params.get('model_name') or 'the model'}"
                 f" on {device}...")
    # leased: the pool never evicts a model while a job uses it
    with MODEL_POOL.lease(params["model_folder"], dtype=dtype, device=device,
                          trust_remote_code=bool(params.get("trust_remote_code"))) as loaded:
        return _generate(params, ctx, loaded, sampling, columns, scope, device, dtype)


def _generate(params, ctx, loaded, sampling, columns, scope, device, dtype) -> dict:
    import torch

    from mistudio.steering import engine
    from mistudio.steering.stream import open_stream

    model, tokenizer = loaded.model, loaded.tokenizer
    sae = cached_sae(params["sae_folder"], device) if params.get("sae_folder") else None
    target = resolve_target(model, params["hook_name"], sae)
    prompt_ids = encode_prompt(tokenizer, params["prompt"], bool(params.get("chat")))
    check_context(len(prompt_ids), sampling.max_new_tokens, context_length(model))
    for c in columns:
        for iv in c.interventions:
            iv.validate(sae.d_sae if sae is not None else None, engine.target_width(model))

    units = engine.Units(max_acts={int(k): float(v) for k, v in
                                   (params.get("max_acts") or {}).items()})
    norm_source = ""
    if any(iv.units == "norm" for c in columns for iv in c.interventions):
        ctx.progress(0, sampling.max_new_tokens, "Measuring the typical residual norm...")
        units.norm, norm_source = measured_norm(
            params.get("norm_cache", ""), f"{loaded.folder}|{params['hook_name']}|{dtype}",
            lambda: engine.typical_norm(model, tokenizer, target))
    vectors = []
    for c in columns:
        found = {}
        for i, iv in enumerate(c.interventions):
            if iv.kind == "vector":
                found[i] = (torch.tensor(iv.vector, dtype=torch.float32) if iv.vector is not None
                            else engine.contrastive_direction(model, tokenizer, target,
                                                              iv.positive, iv.negative))
        vectors.append(found)

    labels = ["baseline"] + [c.label for c in columns]
    stream = open_stream(ctx.job_id, labels)
    texts = [tokenizer.decode(prompt_ids)] * len(labels)
    ids = [list(prompt_ids) for _ in labels]
    done = [False] * len(labels)

    def on_step(step, tokens, finished):
        pieces = []
        for r, t in enumerate(tokens):
            if done[r]:
                pieces.append(None)
                continue
            ids[r].append(t)
            text = tokenizer.decode(ids[r])
            pieces.append(text[len(texts[r]):] if text.startswith(texts[r]) else text)
            texts[r] = text
        done[:] = finished
        stream.push(pieces, finished)
        ctx.progress(step + 1, sampling.max_new_tokens, f"Token {step + 1}")

    t0 = time.perf_counter()
    try:
        result = engine.run_comparison(model, tokenizer, sae, target, columns, prompt_ids,
                                       sampling, scope=scope, units=units, vectors=vectors,
                                       use_cache=bool(params.get("use_cache", True)),
                                       on_step=on_step, should_stop=lambda: ctx.cancelled)
    finally:
        stream.close()
    ctx.check_cancelled()
    elapsed = time.perf_counter() - t0
    n_tokens = sum(len(c["tokens"]) for c in result["columns"])
    result.update({
        "generation_id": params.get("generation_id", ""), "prompt": params["prompt"],
        "prompt_pieces": [tokenizer.decode([t]) for t in prompt_ids],
        "chat": bool(params.get("chat")), "scope": scope, "sampling": sampling.to_dict(),
        "model_name": params.get("model_name", ""), "hook_name": params["hook_name"],
        "sae_id": params.get("sae_id", ""), "device": device, "dtype": dtype,
        "typical_norm": units.norm, "norm_source": norm_source,
        "max_acts": {str(k): v for k, v in units.max_acts.items()},
        "seconds": round(elapsed, 3), "tokens_per_s": round(n_tokens / max(elapsed, 1e-9), 2)})
    if params.get("out_file"):
        Path(params["out_file"]).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(Path(params["out_file"]), result)
    ctx.log(f"Generated {n_tokens} tokens in {elapsed:.1f} s ({len(labels)} outputs).")
    return {"generation_id": result["generation_id"], "file": params.get("out_file", ""),
            "summary": [{"label": c["label"], "text": c["text"][:200],
                         "kl_mean": c.get("kl_mean"), "perplexity": c.get("perplexity")}
                        for c in result["columns"]]}
