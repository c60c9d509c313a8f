"""Exports: Neuronpedia batch JSON in SAEDashboard's layout, decoder vectors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mistudio.analysis.results import AnalysisResults

# The fields SAEDashboard's converter writes (sae-dashboard 0.8.0 from PyPI,
# sae_dashboard/neuronpedia/neuronpedia_dashboard.py: the to_dict() methods).
BATCH_FIELDS = {"model_id", "layer", "sae_set", "sae_id_suffix", "features"}
FEATURE_FIELDS = {
    "feature_index", "neuron_alignment_indices", "neuron_alignment_values",
    "neuron_alignment_l1", "correlated_neurons_indices", "correlated_neurons_l1",
    "correlated_neurons_pearson", "correlated_features_indices", "correlated_features_l1",
    "correlated_features_pearson", "neg_str", "neg_values", "pos_str", "pos_values",
    "frac_nonzero", "freq_hist_data_bar_values", "freq_hist_data_bar_heights",
    "logits_hist_data_bar_heights", "logits_hist_data_bar_values", "n_prompts_total",
    "n_tokens_in_prompt", "dataset", "decoder_weights_dist", "activations", "vector"}
ACTIVATION_FIELDS = {"bin_min", "bin_max", "bin_contains", "tokens", "values",
                     "qualifying_token_index"}


def test_neuronpedia_batches_have_saedashboards_fields_and_our_numbers(small_analysis, tmp_path):
    from mistudio.analysis.export import write_neuronpedia

    folder, _sae, opts = small_analysis
    res = AnalysisResults(folder)
    alive = np.flatnonzero(~res.columns["dead"])
    out = write_neuronpedia(res, tmp_path / "np", batch_features=16,
                            explanations={int(alive[0]): ["capital cities"]})
    files = sorted(out.glob("batch-*.json"))
    assert len(files) == -(-len(alive) // 16)
    features = []
    for path in files:
        batch = json.loads(path.read_text())
        assert set(batch) == BATCH_FIELDS and batch["layer"] == 1
        features += batch["features"]
    assert [f["feature_index"] for f in features] == alive.tolist()
    for feat in features:
        f = feat["feature_index"]
        assert set(feat) - {"explanations"} == FEATURE_FIELDS
        assert ("explanations" in feat) == (f == alive[0])
        assert feat["frac_nonzero"] == pytest.approx(res.columns["density"][f])
        lens = res.logit_lens(f, "raw")
        assert feat["pos_str"] == [s for _, s, _ in lens.top]
        np.testing.assert_allclose(feat["pos_values"], [v for *_, v in lens.top], atol=1e-3)
        counts, edges = res.histogram(f)
        assert feat["freq_hist_data_bar_heights"] == counts.tolist()
        np.testing.assert_allclose(feat["freq_hist_data_bar_values"],
                                   (edges[:-1] + edges[1:]) / 2, atol=1e-3)
        assert feat["correlated_features_indices"] == [i for i, _ in res.correlated(f)]
        acts = feat["activations"]
        top = res.examples(f, "top")
        assert all(set(a) == ACTIVATION_FIELDS for a in acts)
        assert [a["bin_min"] for a in acts[:len(top)]] == [-1] * len(top)
        assert acts[0]["tokens"] == top[0].tokens
        assert acts[0]["qualifying_token_index"] == top[0].centre
        np.testing.assert_allclose(acts[0]["values"], top[0].values, atol=1e-3)
        rest = iter(acts[len(top):])
        for g in res.intervals(f, "interval"):
            for e in g.examples:
                a = next(rest)
                centre = a["values"][e.centre]
                assert a["bin_min"] - 3e-3 <= centre <= a["bin_max"] + 3e-3 and centre > 0
                assert a["bin_contains"] == pytest.approx(g.share, abs=1e-5) and g.share > 0
        assert next(rest, None) is None


def test_neuronpedia_batch_loads_in_saedashboard(small_analysis, tmp_path):
    dashboard = pytest.importorskip("sae_dashboard.neuronpedia.neuronpedia_dashboard")
    from mistudio.analysis.export import write_neuronpedia

    folder, *_ = small_analysis
    out = write_neuronpedia(AnalysisResults(folder), tmp_path / "np")
    batch = json.loads((out / "batch-0.json").read_text())
    loaded = dashboard.NeuronpediaDashboardBatch(**batch)
    assert loaded.to_dict() == batch  # every field known to SAEDashboard, none missing


@pytest.mark.parametrize("fmt", ["npy", "safetensors", "json"])
def test_feature_vectors_are_the_decoder_rows(small_analysis, tmp_path, fmt):
    from mistudio.analysis.export import write_vectors

    folder, sae, _ = small_analysis
    path = write_vectors(folder.parent / "sae", tmp_path / "vec", fmt=fmt, features=[3, 0, 7])
    want = sae.W_dec.detach().numpy()[[3, 0, 7]]
    if fmt == "npy":
        got = np.load(path)
    elif fmt == "safetensors":
        from safetensors.numpy import load_file

        data = load_file(str(path))
        assert data["feature_indices"].tolist() == [3, 0, 7]
        got = data["vectors"]
    else:
        items = json.loads(path.read_text())
        assert [i["feature"] for i in items] == [3, 0, 7]
        got = np.array([i["vector"] for i in items])
    np.testing.assert_allclose(got, want, rtol=1e-6)
