"""The feature table's sort, filter and search (numpy) against plain-Python references."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mistudio.ui.features.state import FeatureHistory
from mistudio.ui.features.table_data import FeatureFilter, FeatureTable


@pytest.fixture
def rows():
    rng = np.random.default_rng(0)
    n = 500
    out = []
    for i in range(n):
        d = 0.0 if i % 7 == 0 else float(10 ** rng.uniform(-6, -1))
        out.append({"index": i, "label": ["", "Capital cities", "numbers", "dates"][i % 4]
                    if i % 3 else "", "density": d,
                    "max": float("nan") if d == 0 else float(rng.gamma(2, 2)),
                    "mean": float(rng.random()), "top_logits": f"tok{i % 11} Paris",
                    "top_token": f"t{i % 5}", "favourite": i % 50 == 0})
    return out


def test_sort_every_column_both_ways_matches_python_sorted(rows):
    table = FeatureTable.from_rows(rows)
    for key in ("index", "label", "density", "max", "mean", "top_logits", "favourite"):
        for desc in (False, True):
            got = [rows[r]["index"] for r in table.view(FeatureFilter(), key, desc)]

            def missing(r):
                v = r[key]
                return v == "" or (isinstance(v, float) and math.isnan(v))

            present = [r for r in rows if not missing(r)]
            keyf = (lambda r: r[key].lower()) if isinstance(rows[0][key], str) else (lambda r: r[key])
            ref = sorted(present, key=keyf, reverse=desc)
            # ties may come in any order: compare the sorted values, then membership of gaps
            assert [keyf(rows[i]) for i in got[:len(ref)]] == [keyf(r) for r in ref], (key, desc)
            assert {rows[i]["index"] for i in got[len(ref):]} == \
                {r["index"] for r in rows if missing(r)}


def test_filters_combine_like_a_python_reference(rows):
    table = FeatureTable.from_rows(rows)
    members = np.array([1, 2, 3, 50, 100, 101, 499])
    flt = FeatureFilter(density_min=1e-5, density_max=1e-2, alive="alive", labelled=True,
                        members=members, query="")
    got = {rows[r]["index"] for r in table.view(flt)}
    ref = {r["index"] for r in rows if 1e-5 <= r["density"] <= 1e-2 and r["density"] > 0
           and r["label"] and r["index"] in set(members.tolist())}
    assert got == ref
    dead = {rows[r]["index"] for r in table.view(FeatureFilter(alive="dead"))}
    assert dead == {r["index"] for r in rows if r["density"] == 0}
    favs = {rows[r]["index"] for r in table.view(FeatureFilter(favourites=True))}
    assert favs == {0, 50, 100, 150, 200, 250, 300, 350, 400, 450}


def test_search_over_labels_notes_and_tokens_and_index(rows):
    table = FeatureTable.from_rows(rows)
    table.set_annotation(7, notes="Looks like CAPITAL letters")
    got = {rows[r]["index"] for r in table.view(FeatureFilter(query="capital"))}
    ref = {r["index"] for r in rows if "capital" in r["label"].lower()} | {7}
    assert got == ref
    assert {rows[r]["index"] for r in table.view(FeatureFilter(query="tok10 "))} == \
        {r["index"] for r in rows if r["index"] % 11 == 10}
    assert 123 in {rows[r]["index"] for r in table.view(FeatureFilter(query="#123"))}


def test_edits_update_sort_and_filters(rows):
    table = FeatureTable.from_rows(rows)
    table.set_annotation(3, label="aaa first", favourite=True)
    assert rows[table.view(FeatureFilter(), "label")[0]]["index"] == 3
    assert 3 in {rows[r]["index"] for r in table.view(FeatureFilter(favourites=True))}
    table.set_annotations({5: "zzz"}, {6: "note"}, {9})
    assert table.columns["label"][3] == "" and table.columns["label"][5] == "zzz"
    assert {rows[r]["index"] for r in table.view(FeatureFilter(favourites=True))} == {9}
    assert {rows[r]["index"] for r in table.view(FeatureFilter(query="note"))} == {6}


def test_history_back_and_forward():
    h = FeatureHistory()
    for f in (5, 9, 9, 12):
        h.open(f)
    assert h.back_stack == [5, 9] and h.current == 12
    assert h.back() == 9 and h.back() == 5 and not h.can_back()
    assert h.forward() == 9
    h.open(40)  # a new feature clears the forward history
    assert not h.can_forward() and h.back() == 9
