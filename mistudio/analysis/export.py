"""Exports: Neuronpedia batch JSON and feature vectors (decoder rows).

Neuronpedia batches follow the layout SAEDashboard's converter writes
(``sae_dashboard/neuronpedia/neuronpedia_converter.py`` and ``neuronpedia_dashboard.py``,
sae-dashboard 0.8.0 on PyPI): ``batch-<i>.json`` files, each ``{model_id, layer, sae_set,
sae_id_suffix, features}``,
each feature with the fields of ``NeuronpediaDashboardFeature.to_dict()`` and its
``activations`` those of ``NeuronpediaDashboardActivation.to_dict()``. Values are rounded to 3
decimals as there; ``qualifying_token_index`` is the activating token's index in ``tokens``;
``vector`` stays empty (SAEDashboard fills it only for steering-vector sets). The top
examples come first (``bin_min`` -1, ``bin_max`` the max,
``bin_contains`` -1), then the equal-width intervals (bounds and share of active tokens).
Histogram ``bar_values`` are bin centres, ``bar_heights`` counts (sae_vis's HistogramData).
Explanations, when given, are added as ``explanations`` (a list of ``{"description": ...}``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mistudio.errors import UserError
from mistudio.paths import atomic_write_text

VECTOR_FORMATS = ("npy", "safetensors", "json")
BATCH_FEATURES = 128


def _r(values) -> list[float]:
    return [float(v) for v in np.round(np.asarray(values, dtype=np.float64), 3)]


def _hist(counts, edges) -> tuple[list[float], list[float]]:
    centres = (np.asarray(edges[:-1]) + np.asarray(edges[1:])) / 2
    return _r(centres), _r(counts)


def _activation(example, bin_min, bin_max, bin_contains) -> dict:
    return {"bin_min": bin_min, "bin_max": bin_max, "bin_contains": bin_contains,
            "tokens": list(example.tokens), "values": _r(example.values),
            "qualifying_token_index": int(example.centre)}


def neuronpedia_feature(res, f: int, explanations: list[str] | None = None) -> dict:
    c = res.columns
    neurons = res.neurons(f)
    corr = res.correlated(f)
    cos = dict(res.decoder_neighbours(f))
    lens = res.logit_lens(f, "raw")
    freq_values, freq_heights = _hist(*res.histogram(f)) if not c["dead"][f] else ([], [])
    logit_values, logit_heights = _hist(lens.hist_counts, lens.hist_edges)
    acts = [_activation(e, -1, round(float(c["max_act"][f]), 3), -1)
            for e in res.examples(f, "top")]
    for g in res.intervals(f, "interval"):
        acts += [_activation(e, round(g.lo, 3), round(g.hi, 3), round(g.share, 5))
                 for e in g.examples]
    out = {
        "feature_index": int(f),
        "neuron_alignment_indices": [n for n, _, _ in neurons],
        "neuron_alignment_values": _r([v for _, v, _ in neurons]),
        "neuron_alignment_l1": _r([p / 100 for _, _, p in neurons]),
        "correlated_neurons_indices": [], "correlated_neurons_l1": [],
        "correlated_neurons_pearson": [],
        "correlated_features_indices": [i for i, _ in corr],
        # SAEDashboard fills *_l1 with the decoder cosine similarity of the same features
        "correlated_features_l1": _r([cos.get(i, 0.0) for i, _ in corr]),
        "correlated_features_pearson": _r([v for _, v in corr]),
        "neg_str": [s for _, s, _ in lens.bottom], "neg_values": _r([v for *_, v in lens.bottom]),
        "pos_str": [s for _, s, _ in lens.top], "pos_values": _r([v for *_, v in lens.top]),
        "frac_nonzero": float(c["density"][f]),
        "freq_hist_data_bar_values": freq_values, "freq_hist_data_bar_heights": freq_heights,
        "logits_hist_data_bar_heights": logit_heights,
        "logits_hist_data_bar_values": logit_values,
        "n_prompts_total": int(res.meta.get("n_seq", 0)),
        "n_tokens_in_prompt": int(res.meta.get("seq_len", 0)),
        "dataset": str(res.meta.get("tokenization", "")),
        "decoder_weights_dist": [],
        "activations": acts,
        "vector": [],
    }
    if explanations:
        out["explanations"] = [{"description": d} for d in explanations]
    return out


def write_neuronpedia(res, destination: str | Path, *, features: list[int] | None = None,
                      batch_features: int = BATCH_FEATURES, sae_set: str = "",
                      explanations: dict[int, list[str]] | None = None) -> Path:
    """``destination/batch-<i>.json`` for the chosen features (default: every live one)."""
    dest = Path(destination)
    if dest.exists() and not dest.is_dir():
        raise UserError(f"{dest} is a file; Neuronpedia batches go into a folder.",
                        hint="Give a folder (it is created if missing).")
    chosen = ([res.check_feature(f) for f in features] if features is not None
              else [int(f) for f in np.flatnonzero(~res.columns["dead"])])
    dest.mkdir(parents=True, exist_ok=True)
    hook = str(res.meta.get("hook_name", ""))
    parts = hook.split(".")
    layer = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    for i in range(0, max(len(chosen), 1), batch_features):
        batch = {"model_id": str(res.meta.get("model_name") or res.meta.get("model_id") or ""),
                 "layer": layer,
                 "sae_set": sae_set or str(res.meta.get("sae_id", "")),
                 "sae_id_suffix": None,
                 "features": [neuronpedia_feature(res, f, (explanations or {}).get(f))
                              for f in chosen[i:i + batch_features]]}
        atomic_write_text(dest / f"batch-{i // batch_features}.json", json.dumps(batch))
    return dest


def write_vectors(sae_folder: str | Path, destination: str | Path, *, fmt: str = "npy",
                  features: list[int] | None = None) -> Path:
    """Decoder rows (the features' directions, raw units) as ``.npy`` ``[n, d_out]``,
    ``.safetensors`` (``vectors``, ``feature_indices``) or JSON ``[{feature, vector}]``."""
    from safetensors.numpy import save_file

    from mistudio.sae.formats import load_sae

    if fmt not in VECTOR_FORMATS:
        raise UserError(f"Unknown vector format {fmt!r}.",
                        hint=f"Use one of {', '.join(VECTOR_FORMATS)}.")
    sae, _ = load_sae(sae_folder)
    w = sae.W_dec.detach().float().cpu().numpy()
    idx = np.arange(len(w)) if features is None else np.asarray(features, dtype=np.int64)
    if len(idx) and (idx.min() < 0 or idx.max() >= len(w)):
        raise UserError(f"Feature indices must be in 0..{len(w) - 1}.",
                        hint="Check the feature numbers.")
    dest = Path(destination)
    if dest.suffix != f".{fmt}":
        dest = dest.with_name(dest.name + f".{fmt}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    rows = np.ascontiguousarray(w[idx])
    if fmt == "npy":
        np.save(dest, rows)
    elif fmt == "safetensors":
        save_file({"vectors": rows, "feature_indices": idx.astype(np.int64)}, str(dest))
    else:
        atomic_write_text(dest, json.dumps([{"feature": int(i), "vector": r.tolist()}
                                            for i, r in zip(idx, rows)]))
    return dest
