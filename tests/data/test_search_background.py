"""Searching a dataset never blocks the GUI thread: it runs on a worker, matches page in
as they are found, and Stop ends it with the matches so far."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pytestqt")

N_DOCS = 120_000
WORDS = ("apple", "river", "stone", "cloud", "ember", "frost", "grain", "harbor")


@pytest.fixture(scope="module")
def big_docs():
    rng = np.random.default_rng(0)
    picks = rng.integers(0, len(WORDS), size=(N_DOCS, 3))
    return [f"doc {i}: {WORDS[a]} {WORDS[b]} {WORDS[c]}" for i, (a, b, c) in enumerate(picks)]


@pytest.fixture
def browser(qtbot, studio, tmp_path, big_docs, monkeypatch):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mistudio.ui.datasets import browsers

    path = tmp_path / "big.parquet"
    pq.write_table(pa.table({"text": big_docs, "part": [i % 4 for i in range(N_DOCS)]}), path)
    rec, job = studio.datasets.add_local(str(path))
    assert studio.jobs.wait(job.id, 60).status == "completed"
    monkeypatch.setattr(browsers, "SEARCH_CHUNK_ROWS", 10_000)  # several steps per scan
    widget = browsers.DocumentsBrowser(studio)
    qtbot.addWidget(widget)
    widget.set_dataset(studio.datasets.get(rec.id))
    widget.show()
    yield widget
    widget.stop_search()


def _expected(docs, word, part=None):
    return [i for i, d in enumerate(docs) if word in d and (part is None or i % 4 == part)]


def test_search_pages_in_results_without_blocking(qtbot, browser, big_docs):
    browser.search_edit.setText("Ember Frost")  # case-insensitive substring
    browser.run_search()
    # run_search returned before any result: they only arrive through the event loop
    assert browser.searching and len(browser.matches) == 0 and browser.stop_btn.isVisible()
    qtbot.waitUntil(lambda: not browser.searching, timeout=30_000)
    expected = _expected(big_docs, "ember frost")
    assert browser.matches.tolist() == expected and browser.complete
    assert browser.batches_received >= 2 and browser._scanned == (N_DOCS, N_DOCS)
    assert f"{len(expected):,} matching documents" == browser.status.text()
    assert [r["index"] for r in browser.model.rows] == expected[:100]
    browser.pager.go(3)
    assert [r["index"] for r in browser.model.rows] == expected[300:400]
    assert browser.model.rows[0]["text"] == big_docs[expected[300]]


def test_stop_keeps_the_matches_so_far_and_a_new_search_replaces_the_old(qtbot, browser,
                                                                          big_docs):
    browser.search_edit.setText("river")
    browser.run_search()
    browser.stop_search()  # before any result reached the GUI: none of them may land later
    qtbot.wait(300)
    assert not browser.searching and not browser.complete and len(browser.matches) == 0
    assert "stopped" in browser.status.text()

    browser.search_edit.setText("stone")
    browser.run_search()
    first = browser.search
    browser.set_filter("part", "2")  # a new search (text and column) replaces the running one
    assert browser.search is not first
    qtbot.waitUntil(lambda: not browser.searching, timeout=30_000)
    assert browser.matches.tolist() == _expected(big_docs, "stone", part=2)
    browser.clear_search()
    assert browser.matches is None and browser.pager.n_pages == N_DOCS // 100


def test_search_of_a_missing_column_says_so(qtbot, browser):
    browser.set_filter("nope", "x")
    qtbot.waitUntil(lambda: not browser.searching, timeout=10_000)
    assert "no column 'nope'" in browser.status.text()
