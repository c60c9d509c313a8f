"""The feature map job (UMAP over decoder rows), the lasso geometry and the clustered
heatmap order, checked against independent computations."""

from __future__ import annotations

import numpy as np
import pytest

from mistudio.errors import UserError
from mistudio.feature_map.clustering import cluster_order, decoder_cosine
from mistudio.feature_map.geometry import points_in_polygon
from mistudio.feature_map.projection import prepare


@pytest.mark.timeout(600)  # the session's one cold numba compile happens in this fixture
def test_umap_map_keeps_clusters_together_and_caches_numba(umap_map, clustered_sae_folder):
    coords, data_dir, job, info = umap_map
    _folder, _w, cluster = clustered_sae_folder
    assert coords.shape == (1200, 2) and coords.dtype == np.float32
    assert np.isfinite(coords).all()
    # each point's nearest other point on the map belongs to its own decoder cluster
    d = ((coords[:, None, :] - coords[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    same = cluster[d.argmin(axis=1)] == cluster
    assert same.mean() > 0.98
    # clusters are apart: the centroid distance dwarfs the within-cluster spread
    cents = np.stack([coords[cluster == c].mean(0) for c in range(4)])
    spread = max(coords[cluster == c].std(0).max() for c in range(4))
    gaps = [np.linalg.norm(cents[a] - cents[b]) for a in range(4) for b in range(a + 1, 4)]
    assert min(gaps) > 2 * spread
    assert info["n"] == 1200 and info["method"] == "umap"
    assert list((data_dir / "cache" / "numba").rglob("*.nbi")), "numba cache not in data folder"


def test_map_of_unknown_sae_or_method_is_a_user_error(studio, sae_in_studio):
    sae, _, _ = sae_in_studio
    with pytest.raises(UserError, match="No SAE"):
        studio.feature_maps.start_map("sae_missing")
    with pytest.raises(UserError, match="Unknown map method"):
        studio.feature_maps.start_map(sae.id, "pca3d")
    assert studio.feature_maps.load_map(sae.id) is None  # not computed yet


def test_prepare_unit_rows_and_pca_keep_pairwise_geometry():
    rng = np.random.default_rng(1)
    rows = rng.normal(size=(300, 80)).astype(np.float32) * rng.uniform(0.1, 5, (300, 1))
    x = prepare(rows, dims=80)  # all dims kept: distances equal those of the unit rows
    unit = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    d_ref = np.linalg.norm(unit[:, None] - unit[None], axis=-1)
    d_got = np.linalg.norm(x[:, None] - x[None], axis=-1)
    assert np.allclose(d_ref, d_got, atol=1e-4)
    assert prepare(rows, dims=10).shape == (300, 10)


def test_lasso_selects_points_inside_a_concave_freehand_loop():
    rng = np.random.default_rng(2)
    pts = rng.uniform(-1, 1, size=(5000, 2))
    # an L-shaped (concave) loop: [0,1]x[0,1] minus the top-right quarter
    poly = np.array([[0, 0], [1, 0], [1, 0.5], [0.5, 0.5], [0.5, 1], [0, 1]], float)
    got = points_in_polygon(pts, poly)
    x, y = pts[:, 0], pts[:, 1]
    want = (x > 0) & (x < 1) & (y > 0) & (y < 1) & ~((x > 0.5) & (y > 0.5))
    assert (got == want).all()
    assert not points_in_polygon(pts, poly[:2]).any()


def test_cluster_order_groups_similar_rows(clustered_sae_folder):
    _folder, w_dec, cluster = clustered_sae_folder
    rng = np.random.default_rng(3)
    pick = rng.permutation(len(w_dec))[:60]
    sim = decoder_cosine(w_dec[pick])
    ref = w_dec[pick] @ w_dec[pick].T / np.outer(np.linalg.norm(w_dec[pick], axis=1),
                                                  np.linalg.norm(w_dec[pick], axis=1))
    assert np.allclose(sim, ref, atol=1e-5)
    order = cluster_order(sim)
    assert sorted(order) == list(range(60))
    # in clustered order each cluster is one contiguous run: 3 changes between 4 clusters
    labels = cluster[pick][order]
    assert int((labels[1:] != labels[:-1]).sum()) == 3


def test_heatmap_service_orders_and_limits(studio, sae_in_studio):
    sae, w_dec, cluster = sae_in_studio
    idx, sim = studio.feature_maps.decoder_similarity(sae.id, [0, 1, 2, 3, 4, 5, 6, 7])
    assert sorted(idx) == list(range(8))
    assert np.allclose(np.diag(sim), 1.0, atol=1e-5)
    ref = decoder_cosine(w_dec[idx])
    assert np.allclose(sim, ref, atol=1e-5)  # the matrix follows the returned order
    with pytest.raises(UserError, match="at most 200"):
        studio.feature_maps.decoder_similarity(sae.id, range(201))
    with pytest.raises(UserError, match="at least two"):
        studio.feature_maps.decoder_similarity(sae.id, [3])


def test_activation_correlation_from_csr_equals_numpy_corrcoef():
    from mistudio.feature_map.clustering import activation_correlation

    rng = np.random.default_rng(4)
    dense = rng.random((400, 30)) * (rng.random((400, 30)) < 0.2)
    dense[:, 7] = 0.0  # silent on the sample
    offsets = np.concatenate([[0], np.cumsum((dense > 0).sum(1))])
    r, c = np.nonzero(dense)
    pick = [20, 3, 7, 11, 29]
    got = activation_correlation(offsets, c, dense[r, c], pick)
    with np.errstate(invalid="ignore", divide="ignore"):  # column 7 never varies
        ref = np.corrcoef(dense[:, pick], rowvar=False)
    ok = [0, 1, 3, 4]
    assert np.allclose(got[np.ix_(ok, ok)], ref[np.ix_(ok, ok)])
    assert got[2, 2] == 1.0 and np.all(got[2, [0, 1, 3, 4]] == 0)
