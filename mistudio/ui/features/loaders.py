"""What the Features tab reads off the GUI thread: plain functions of the services.

Each returns plain data; ``BackgroundCalls`` runs them on its worker thread.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mistudio.ui.features.table_data import FeatureTable


@dataclass
class TableBundle:
    sae_id: str
    analysis_id: str
    table: FeatureTable
    n_tokens: int
    meta: dict


def load_table(studio, sae_id: str, analysis_id: str) -> TableBundle:
    """Every feature's row: numbers from the analysis, tokens as text, the user's labels."""
    res = studio.features.results(sae_id, analysis_id)
    c = res.columns
    d = res.d_sae
    logit_top = np.full(d, "", dtype=object)
    frequent = np.full(d, "", dtype=object)
    for row in studio.features.feature_rows(sae_id, analysis_id):
        logit_top[row.feature] = row.logit_top
        frequent[row.feature] = row.top_tokens
    # the token at each feature's largest activation
    seq = np.asarray(res.array("top_seq")[:, 0])
    pos = np.asarray(res.array("top_pos")[:, 0])
    tokens = res.array("tokens")
    ids = np.where(seq >= 0, np.asarray(tokens[np.maximum(seq, 0), np.maximum(pos, 0)]), -1)
    vocab = res.vocab
    top_token = np.array([vocab[i] if 0 <= i < len(vocab) else "" for i in ids.tolist()],
                         dtype=object)
    table = FeatureTable(
        {"index": np.arange(d, dtype=np.int64), "density": np.asarray(c["density"], float),
         "max": np.where(c["dead"], np.nan, np.asarray(c["max_act"], float)),
         "mean": np.where(c["dead"], np.nan, np.asarray(c["mean_act"], float)),
         "top_logits": logit_top, "top_token": top_token},
        search_extra=frequent)
    anns = studio.feature_labels.annotations(sae_id)
    table.set_annotations({i: a.label for i, a in anns.items() if a.label},
                          {i: a.notes for i, a in anns.items() if a.notes},
                          {i for i, a in anns.items() if a.favourite})
    return TableBundle(sae_id, res.analysis_id, table, res.n_tokens, dict(res.meta))


def load_detail(studio, sae_id: str, analysis_id: str, feature: int):
    return (studio.features.feature(sae_id, feature, analysis_id),
            studio.feature_labels.annotation(sae_id, feature),
            studio.feature_labels.lists_of(sae_id, feature))


def load_lists(studio, sae_id: str):
    lists = studio.feature_labels.lists(sae_id)
    members = {rec.id: np.asarray(studio.feature_labels.list_members(rec.id), np.int64)
               for rec in lists}
    return lists, members


def load_correlation(studio, sae_id: str, analysis_id: str, indices, what: str):
    """(ordered indices, matrix, what) for the heatmap."""
    from mistudio.feature_map.clustering import activation_correlation, check_size

    indices = np.asarray(sorted({int(i) for i in indices}), dtype=np.int64)
    check_size(len(indices))
    if what == "cosine":
        idx, mat = studio.feature_maps.decoder_similarity(sae_id, indices)
        return idx, mat, "decoder cosine"
    res = studio.features.results(sae_id, analysis_id)
    corr = activation_correlation(res.array("random_codes_offsets"),
                                  res.array("random_codes_features"),
                                  res.array("random_codes_values"), indices)
    idx, mat = studio.feature_maps.clustered(indices, corr)
    return idx, mat, "activation correlation"
