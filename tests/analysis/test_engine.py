"""The analysis engine against independent numpy references on a tiny model and SAE.

The reference runs the model with plain transformers (``output_hidden_states``) and the
SAE's dense ``encode``; every statistic is recomputed here with numpy.
"""

from __future__ import annotations

import numpy as np
import pytest

from mistudio.analysis.results import AnalysisResults
from tests.analysis.conftest import dense_codes

EXCLUDED = [0, 1]  # the tiny tokenizer's BOS (<|endoftext|>) and <pad>


@pytest.fixture(scope="module")
def ref(small_analysis, gpt2_dir, analysis_tokens):
    folder, sae, opts = small_analysis
    acts, keys, tokens = dense_codes(sae, gpt2_dir, analysis_tokens,
                                     "blocks.1.hook_resid_post", EXCLUDED)
    return AnalysisResults(folder), acts, keys, tokens, opts, sae


def test_bos_and_padding_are_excluded_and_recorded(ref):
    res, acts, keys, tokens, _, _ = ref
    assert res.n_tokens == len(keys)
    assert res.meta["excluded_token_ids"] == EXCLUDED
    centre = tokens.reshape(-1)[keys]
    assert not np.isin(centre, EXCLUDED).any()


def test_per_feature_statistics_match_numpy(ref):
    res, acts, *_ = ref
    c = res.columns
    fired = acts > 0
    np.testing.assert_array_equal(c["firing_count"], fired.sum(0))
    np.testing.assert_allclose(c["density"], fired.mean(0))
    np.testing.assert_allclose(c["max_act"], acts.max(0), rtol=1e-5, atol=1e-6)
    mean_nz = np.divide(acts.sum(0), fired.sum(0), out=np.zeros(acts.shape[1]),
                        where=fired.sum(0) > 0)
    np.testing.assert_allclose(c["mean_act"], mean_nz, rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(res.dead_features, np.flatnonzero(~fired.any(0)))
    assert 0 < len(res.dead_features) < acts.shape[1]  # the case has both kinds
    for f in np.flatnonzero(fired.any(0)):
        v = acts[fired[:, f], f]
        counts, edges = res.histogram(f)
        want, _ = np.histogram(v, bins=50, range=(0, v.max()))
        assert counts.sum() == len(v)
        # (lo, hi] bins vs numpy's [lo, hi): only a value exactly on an edge may differ
        assert np.abs(counts - want).sum() <= 2 * np.isclose(v[:, None], edges[None, 1:-1]).sum()
    d_counts, d_edges = res.density_histogram()
    alive = fired.mean(0)[fired.any(0)]
    np.testing.assert_array_equal(d_counts, np.histogram(np.log10(alive), bins=50)[0])


def test_top_examples_equal_brute_force(ref):
    res, acts, keys, tokens, opts, _ = ref
    T = tokens.shape[1]
    for f in range(acts.shape[1]):
        col = acts[:, f]
        order = np.lexsort((keys, -col))
        want = [i for i in order if col[i] > 0][:opts["n_top"]]
        got = res.examples(f, "top")
        assert [(e.seq * T + e.pos) for e in got] == [int(keys[i]) for i in want]
        np.testing.assert_allclose([e.value for e in got], col[want], rtol=1e-5, atol=1e-6)


def _window_reference(col, keys, key, T, before, after):
    out = []
    for off in range(-before, after + 1):
        pos = key % T + off
        if 0 <= pos < T:
            hit = np.flatnonzero(keys == key + off)
            out.append(col[hit[0]] if len(hit) else 0.0)
    return out


def test_interval_samples_are_never_zero_and_come_from_their_interval(ref):
    res, acts, keys, tokens, opts, _ = ref
    T = tokens.shape[1]
    checked = 0
    for f in np.flatnonzero((acts > 0).any(0)):
        col = acts[:, f]
        v = col[col > 0]
        groups = res.intervals(f, "interval")
        bounds = np.linspace(0, v.max(), opts["n_intervals"] + 1)
        want_counts = [int(((v > lo) & (v <= hi)).sum()) if i else int((v <= hi).sum())
                       for i, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:]))]
        assert sum(g.count for g in groups) == len(v)
        assert np.abs(np.array([g.count for g in groups]) - want_counts).sum() <= 2
        np.testing.assert_allclose(sum(g.share for g in groups), 1.0)
        for g in groups:
            assert len(g.examples) == min(g.count, opts["per_interval"])
            for e in g.examples:
                row = np.flatnonzero(keys == e.seq * T + e.pos)[0]
                assert col[row] > 0 and e.value > 0
                assert g.lo - 1e-6 <= e.value <= g.hi + 1e-6
                np.testing.assert_allclose(e.value, col[row], rtol=1e-5)
                np.testing.assert_allclose(
                    e.values, _window_reference(col, keys, e.seq * T + e.pos, T,
                                                opts["context_before"], opts["context_after"]),
                    rtol=2e-3, atol=1e-3)
                checked += 1
        # rank quantiles (delphi): example i of group q has rank in [q n / Q, (q+1) n / Q)
        ranked = np.sort(v)
        nq = opts["n_quantiles"]
        for q, g in enumerate(res.intervals(f, "quantile")):
            lo, hi = q * len(v) // nq, -(-(q + 1) * len(v) // nq)
            assert g.count == sum(1 for r in range(len(v)) if r * nq // len(v) == q)
            for e in g.examples:
                assert e.value > 0
                assert ranked[lo] - 1e-6 <= e.value <= ranked[min(hi, len(v)) - 1] + 1e-6
    assert checked > 50


def test_sampling_is_reproducible_by_seed(small_analysis, gpt2_dir, analysis_tokens,
                                          tmp_path):
    from tests.analysis.conftest import make_analysis

    folder, sae, opts = small_analysis
    sae_dir = folder.parent / "sae"
    # another block size and chunk size: the same draws
    again = make_analysis(tmp_path / "again", sae_dir, gpt2_dir, analysis_tokens,
                          **{**opts, "block_features": 96, "chunk_rows": 10_000})
    other = make_analysis(tmp_path / "other", sae_dir, gpt2_dir, analysis_tokens,
                          **{**opts, "seed": opts["seed"] + 1})
    a, b, c = (np.load(p / "interval_seq.npy") * 1000 + np.load(p / "interval_pos.npy")
               for p in (folder, again, other))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_correlations_equal_numpy_corrcoef_on_the_blocked_path(ref):
    res, acts, *_ = ref
    assert res.d_sae > 40  # block_features=40 in the fixture: three blocks
    alive = (acts > 0).any(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.corrcoef(acts, rowvar=False)
    for f in np.flatnonzero(alive):
        row = r[f].copy()
        row[f] = -np.inf
        row[~alive] = -np.inf
        got = res.correlated(f)
        want = np.argsort(-row, kind="stable")[:len(got)]
        np.testing.assert_allclose([v for _, v in got], row[want], rtol=1e-4, atol=1e-5)
        assert len(got) == min(10, alive.sum() - 1)


def test_logit_lens_equals_decoder_times_unembedding_in_both_conventions(ref, gpt2_dir):
    import torch
    from transformers import AutoModelForCausalLM

    res, _, _, _, _, sae = ref
    model = AutoModelForCausalLM.from_pretrained(gpt2_dir)
    w_u = model.lm_head.weight.detach().double().numpy().T
    gain = model.transformer.ln_f.weight.detach().double().numpy()
    w_dec = sae.W_dec.detach().double().numpy()
    for conv, unembed in (("raw", w_u), ("folded", gain[:, None] * w_u)):
        logits = w_dec @ unembed
        for f in range(res.d_sae):
            lens = res.logit_lens(f, conv)
            top = np.argsort(-logits[f])[:10]
            bottom = np.argsort(logits[f])[:10]
            np.testing.assert_allclose([v for _, _, v in lens.top], logits[f, top], rtol=1e-4,
                                       atol=1e-6)
            np.testing.assert_allclose([v for _, _, v in lens.bottom], logits[f, bottom],
                                       rtol=1e-4, atol=1e-6)
            assert lens.top[0][0] == top[0] and lens.bottom[0][0] == bottom[0]
            want, _ = np.histogram(logits[f], bins=50, range=(logits[f].min(), logits[f].max()))
            assert lens.hist_counts.sum() == logits.shape[1]
            assert np.abs(lens.hist_counts - want).sum() <= 4
    assert not torch.equal(torch.tensor(gain), torch.ones(len(gain)))


def test_decoder_neighbours_are_cosine_nearest(ref):
    res, _, _, _, _, sae = ref
    w = sae.W_dec.detach().double().numpy()
    unit = w / np.linalg.norm(w, axis=1, keepdims=True)
    cos = unit @ unit.T
    np.fill_diagonal(cos, -np.inf)
    for f in range(res.d_sae):
        got = res.decoder_neighbours(f)
        np.testing.assert_allclose([v for _, v in got], np.sort(cos[f])[::-1][:10], rtol=1e-5)
        assert got[0][0] == int(np.argmax(cos[f]))


def test_random_contexts_carry_the_codes_of_their_windows(ref):
    res, acts, keys, tokens, opts, _ = ref
    T = tokens.shape[1]
    ctxs = res.random_contexts()
    assert len(ctxs) == 20
    seen = set()
    for e in ctxs:
        key = e.seq * T + e.pos
        assert key in set(keys.tolist()) and key not in seen
        seen.add(key)
        l0 = _window_reference((acts > 0).sum(1), keys, key, T, opts["context_before"],
                               opts["context_after"])
        assert e.values == pytest.approx(l0)
    f = int(np.argmax((acts > 0).sum(0)))
    for e in res.random_contexts(f):
        want = _window_reference(acts[:, f], keys, e.seq * T + e.pos, T, opts["context_before"],
                                 opts["context_after"])
        np.testing.assert_allclose(e.values, want, rtol=1e-5, atol=1e-6)
