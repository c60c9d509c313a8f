"""Pairwise similarity of a chosen set of features, in an order that groups similar ones.

For the correlation heatmap: at most ``MAX_FEATURES`` features, ordered by average-linkage
hierarchical clustering on ``1 - similarity`` (scipy), with the leaves in optimal order so
neighbouring rows are as alike as possible.
"""

from __future__ import annotations

import numpy as np

from mistudio.errors import UserError

MAX_FEATURES = 200


def check_size(n: int) -> None:
    if n < 2:
        raise UserError("A heatmap needs at least two features.",
                        hint="Select two or more features in the table or on the map.")
    if n > MAX_FEATURES:
        raise UserError(f"A heatmap shows at most {MAX_FEATURES} features ({n} selected).",
                        hint="Narrow the selection, e.g. filter the table or use a list.")


def decoder_cosine(rows: np.ndarray) -> np.ndarray:
    """Cosine similarity of decoder rows [n, d] -> [n, n]."""
    rows = np.asarray(rows, dtype=np.float64)
    unit = rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
    return np.clip(unit @ unit.T, -1.0, 1.0)


def cluster_order(similarity: np.ndarray) -> np.ndarray:
    """Row order of a symmetric similarity matrix that puts similar rows next to each other."""
    from scipy.cluster.hierarchy import leaves_list, linkage, optimal_leaf_ordering
    from scipy.spatial.distance import squareform

    sim = np.asarray(similarity, dtype=np.float64)
    n = len(sim)
    if n <= 2:
        return np.arange(n)
    dist = 1.0 - np.nan_to_num((sim + sim.T) / 2, nan=0.0)
    np.fill_diagonal(dist, 0.0)
    condensed = squareform(np.clip(dist, 0.0, None), checks=False)
    tree = linkage(condensed, method="average")
    return leaves_list(optimal_leaf_ordering(tree, condensed))


def activation_correlation(offsets: np.ndarray, features: np.ndarray, values: np.ndarray,
                           indices) -> np.ndarray:
    """Pearson correlation over tokens of the chosen features, from sparse codes stored as
    CSR (``offsets`` [T+1], ``features``/``values`` [nnz]): the analysis's random contexts,
    a uniform sample of the analysed tokens. A feature silent on every sampled token has no
    correlation (0, and 1 with itself)."""
    indices = np.asarray(indices, dtype=np.int64)
    offsets = np.asarray(offsets, dtype=np.int64)
    features = np.asarray(features)
    n_rows = len(offsets) - 1
    order = np.argsort(indices)
    wanted = indices[order]
    hit = np.isin(features, wanted)
    rows = np.repeat(np.arange(n_rows), np.diff(offsets))[hit]
    cols = order[np.searchsorted(wanted, features[hit])]
    dense = np.zeros((n_rows, len(indices)), np.float64)
    dense[rows, cols] = np.asarray(values)[hit]
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.corrcoef(dense, rowvar=False)
    corr = np.nan_to_num(np.atleast_2d(corr), nan=0.0)
    np.fill_diagonal(corr, 1.0)
    return corr
