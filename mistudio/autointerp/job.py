"""The ``autointerp.run`` job: explain the features of a list, then (optionally) score the
explanations, appending each feature's result to ``results.jsonl`` as soon as it is made.

A run started again (resume after a crash, a cancel or a pause) reads that file first and
skips the features already done. Params (JSON): ``run_id``, ``analysis_folder``,
``model_folder``, ``model_name``, ``model_id``, ``trust_remote_code``, ``device``,
``dtype``, ``prompt_version``, ``seed``, ``features``, ``scorer`` ('' | detection | fuzz),
``explanations`` ({feature: text} already stored for this model, prompt and seed),
``baseline_pool`` ({feature: text} other stored explanations, for the shuffled baseline),
``results_file``, ``n_train``, ``n_test_per_group``, ``n_negative``, ``max_new_tokens``,
``batch_size`` (scorer prompts per forward pass), ``explain_batch`` (explanations generated
together).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from mistudio.autointerp import examples as ex_mod
from mistudio.autointerp import prompts, scoring


def read_results(path: str | Path) -> list[dict]:
    """Every complete line of a results file (a line cut by a crash is ignored)."""
    p = Path(path)
    if not p.exists():
        return []
    out = []
    for line in p.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def drop_cut_line(path: Path) -> None:
    """Remove a last line cut short by a crash, so that the next result starts a line."""
    if not path.exists():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with open(path, "r+b") as f:
            f.truncate(data.rfind(b"\n") + 1)


def _append(path: Path, item: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(item) + "\n")
        f.flush()
        os.fsync(f.fileno())


def explain(model, results, feature: int, version, params: dict) -> dict:
    """One feature's explanation (and which examples were shown) by ``model``."""
    return explain_many(model, results, [feature], version, params)[0]


def explain_many(model, results, features: list[int], version, params: dict) -> list[dict]:
    """The explanations of ``features``, generated in one batch where the model can
    (``generate_many``; a stand-in with only ``generate`` is asked one at a time)."""
    hidden = getattr(model, "special_tokens", frozenset())
    sels = [ex_mod.select(results, f, **_sizes(params)) for f in features]
    users = [prompts.explainer_user(sel.train, sel.max_act, sel.logit_tokens, version, hidden)
             for sel in sels]
    n_new = int(params.get("max_new_tokens") or 48)
    start = version.explanation_prefix if hasattr(model, "generate_many") else ""
    if start or hasattr(model, "generate_many"):
        raws = model.generate_many(version.explainer_system, users, n_new, prefix=start)
    else:
        raws = [model.generate(version.explainer_system, u, n_new) for u in users]
    out = []
    for f, sel, raw in zip(features, sels, raws):
        # with a prefix the model completes "These examples are all about ...": the
        # explanation is the completion; raw keeps the prefix, so it reads as generated
        text = prompts.clean_explanation(raw) or raw.strip()
        out.append({"type": "explanation", "feature": int(f), "explanation": text,
                    "raw": (start + raw) if start else raw, "shown": sorted(sel.train_keys)})
    return out


def score(model, results, feature: int, explanation: str, version, params: dict,
          scorer: str) -> tuple[scoring.Score, ex_mod.FeatureExamples]:
    sel = ex_mod.select(results, feature, **_sizes(params))
    assert not (sel.train_keys & sel.test_keys), "a shown example would be scored"
    got = scoring.score(model, scorer, explanation, sel.test, version,
                        seed=int(params.get("seed", 0)),
                        batch_size=int(params.get("batch_size") or 16))
    return got, sel


def _sizes(params: dict) -> dict:
    return {"n_train": int(params.get("n_train") or 10),
            "n_test_per_group": int(params.get("n_test_per_group") or 2),
            "n_negative": int(params.get("n_negative") or 8),
            "seed": int(params.get("seed", 0))}


def run_batch(model, results, params: dict, ctx) -> dict:
    """Explain, then score, every feature of ``params['features']`` not yet in the results
    file; ``model`` is a :class:`~mistudio.autointerp.model.ChatModel` (or a stand-in with
    ``generate`` and ``answer_probs``)."""
    version = prompts.get_version(params.get("prompt_version", ""))
    out = Path(params["results_file"])
    features = [int(f) for f in params["features"]]
    scorer = params.get("scorer") or ""
    drop_cut_line(out)
    done = read_results(out)
    explained = {int(k): v for k, v in (params.get("explanations") or {}).items()}
    explained.update({d["feature"]: d["explanation"] for d in done
                      if d.get("type") == "explanation"})
    scored = {d["feature"] for d in done if d.get("type") == "score"}
    todo_explain = [f for f in features if f not in explained]
    todo_score = [f for f in features if f not in scored] if scorer else []
    total = len(todo_explain) + len(todo_score)
    step, t0, n_explained = 0, time.monotonic(), 0
    ctx.progress(0, total, f"{len(features) - len(todo_explain)} of {len(features)} already "
                 "explained")
    chunk = max(1, int(params.get("explain_batch") or 4))
    for start in range(0, len(todo_explain), chunk):
        ctx.pause_point()
        ctx.check_cancelled()
        for item in explain_many(model, results, todo_explain[start:start + chunk], version,
                                 params):
            _append(out, item)
            f = item["feature"]
            explained[f] = item["explanation"]
            n_explained += 1
            step += 1
            ctx.progress(step, total, f"Explained feature {f}: {item['explanation'][:60]}")
    explain_s = time.monotonic() - t0
    if scorer:
        pool = {int(k): v for k, v in (params.get("baseline_pool") or {}).items()}
        pool.update(explained)
        pairs = scoring.derangement(sorted(pool), seed=int(params.get("seed", 0)))
        for f in todo_score:
            ctx.pause_point()
            ctx.check_cancelled()
            real, _ = score(model, results, f, explained[f], version, params, scorer)
            other = pairs.get(f)
            base = score(model, results, f, pool[other], version, params, scorer)[0] \
                if other is not None else None
            _append(out, {"type": "score", "feature": f, "scorer": scorer,
                          **{k: v for k, v in real.to_dict().items() if k != "scorer"},
                          "baseline_feature": other,
                          "baseline": base.balanced_accuracy if base else None,
                          "baseline_auroc": base.auroc if base else None})
            step += 1
            ctx.progress(step, total, f"Scored feature {f}: {real.balanced_accuracy:.2f}"
                         + (f" (shuffled {base.balanced_accuracy:.2f})" if base else ""))
    done = read_results(out)
    return summarise(done, n_explained, explain_s)


def summarise(done: list[dict], n_explained: int = 0, explain_s: float = 0.0) -> dict:
    """Counts and means of a results file's lines. The means leave out features whose held-out
    examples were all of one kind (a rare feature whose every activating example was shown to
    the explainer): their balanced accuracy is one rate alone, e.g. 1.0 from "No" answers."""
    scores = [d for d in done if d.get("type") == "score"]
    both = [d for d in scores if d["tp"] + d["fn"] > 0 and d["tn"] + d["fp"] > 0]

    def mean(key):
        got = [d[key] for d in both if d.get(key) is not None]
        return sum(got) / len(got) if got else None

    return {"explained": sum(d.get("type") == "explanation" for d in done),
            "scored": len(scores), "one_kind_only": len(scores) - len(both),
            "mean_score": mean("balanced_accuracy"), "mean_baseline": mean("baseline"),
            "mean_auroc": mean("auroc"), "mean_baseline_auroc": mean("baseline_auroc"),
            "explained_now": n_explained,
            "explanations_per_minute": 60.0 * n_explained / explain_s if n_explained and
            explain_s > 0 else None}


def run(params: dict, ctx) -> dict:
    from mistudio import hardware
    from mistudio.analysis.results import AnalysisResults
    from mistudio.autointerp.model import ChatModel
    from mistudio.models.pool import MODEL_POOL

    def auto(value, default):
        return default if not value or value == "auto" else value

    device = hardware.resolve_device(auto(params.get("device"), ctx.device))
    dtype = hardware.resolve_dtype(auto(params.get("dtype"), ctx.dtype), device)
    results = AnalysisResults(params["analysis_folder"])
    ctx.progress(0, None, f"Loading {params.get('model_name') or 'the model'} on {device}...")
    with MODEL_POOL.lease(params["model_folder"], dtype=dtype, device=device,
                          trust_remote_code=bool(params.get("trust_remote_code"))) as loaded:
        from mistudio.steering.job import context_length

        model = ChatModel(loaded.model, loaded.tokenizer,
                          max_context=context_length(loaded.model))
        return run_batch(model, results, params, ctx)
