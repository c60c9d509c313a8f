"""Paging and searching a 1M-document dataset, and what the GUI thread feels meanwhile.

Builds a synthetic corpus (1,000,000 documents, ~200 characters each) as Parquet, imports it
through the real import job, then measures, each next to a baseline in the same process:

- paging: ``studio.datasets.documents(id, offset, 100)`` (memory-mapped Arrow file) at random
  offsets vs the same slice of an in-memory pyarrow table;
- search: the chunked scan (``RawCorpus.search_chunks``), time to the first page of matches
  and to the end, vs one ``pyarrow.compute.match_substring`` over the whole column;
- GUI: the longest gap between ticks of a 10 ms QTimer while the Documents browser searches
  in the background, vs while the same search runs on the GUI thread (the old way).

Run: python benchmarks/datasets_browse_bench.py [--docs 1000000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

WORDS = np.array("the of and a in to is was for on as with by he at from his an were are which "
                 "river mountain music theory electron novel empire protein painter harbor "
                 "algebra cathedral volcano senate orbit enzyme opera railway glacier".split())


def build_parquet(path: Path, n_docs: int) -> list[str]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    lengths = rng.integers(20, 45, size=n_docs)
    words = WORDS[rng.integers(0, len(WORDS), size=int(lengths.sum()))]
    ends = np.cumsum(lengths)
    docs = [" ".join(words[e - n:e]) for e, n in zip(ends, lengths)]
    topics = np.array(["Arts", "Science", "History", "Geography"])[rng.integers(0, 4, n_docs)]
    pq.write_table(pa.table({"text": docs, "topic": topics}), path, row_group_size=65_536)
    return docs


def timed(fn, repeat: int = 1) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=1_000_000)
    ap.add_argument("--query", default="cathedral volcano")
    args = ap.parse_args()

    import pyarrow as pa
    import pyarrow.compute as pc

    from mistudio.secrets_test_support import MemorySecrets
    from mistudio.studio import Studio

    tmp = Path(tempfile.mkdtemp(prefix="mistudio-browse-bench-"))
    t = time.perf_counter()
    docs = build_parquet(tmp / "corpus.parquet", args.docs)
    chars = sum(map(len, docs))
    print(f"corpus: {args.docs:,} documents, {chars / 1e6:.0f}M characters "
          f"(built in {time.perf_counter() - t:.1f} s)")

    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([])
    from mistudio.ui.workers import qt_thread_factory

    studio = Studio(tmp / "data", secrets=MemorySecrets(), thread_factory=qt_thread_factory)
    t = time.perf_counter()
    rec, job = studio.datasets.add_local(str(tmp / "corpus.parquet"))
    done = studio.jobs.wait(job.id, 3600)
    assert done.status == "completed", done.error
    import_s = time.perf_counter() - t
    print(f"import job: {import_s:.1f} s ({args.docs / import_s:,.0f} documents/s)")

    # ---------------------------------------------------------------- paging
    corpus = studio.datasets.corpus(rec.id)
    in_memory = pa.table({"text": docs})
    offsets = np.random.default_rng(1).integers(0, args.docs - 100, size=200)
    ours = []
    base = []
    for off in offsets:
        ours.append(timed(lambda: studio.datasets.documents(rec.id, int(off), 100))[0])
        base.append(timed(lambda: in_memory.slice(int(off), 100).to_pylist())[0])
    page_ms, base_ms = statistics.median(ours) * 1e3, statistics.median(base) * 1e3
    print(f"page of 100 at a random offset: {page_ms:.2f} ms (median of 200) vs in-memory "
          f"pyarrow slice {base_ms:.2f} ms: ratio {page_ms / base_ms:.2f}x")
    assert studio.datasets.documents(rec.id, 123_456 % args.docs, 1)[0]["text"] == \
        docs[123_456 % args.docs]

    # ---------------------------------------------------------------- search
    query = args.query
    t = time.perf_counter()
    first_page_s = None
    n = 0
    for idx, _scanned in corpus.search_chunks(query):
        n += len(idx)
        if first_page_s is None and n >= 100:
            first_page_s = time.perf_counter() - t
    scan_s = time.perf_counter() - t
    base_s, mask = timed(lambda: pc.match_substring(in_memory["text"], pattern=query,
                                                    ignore_case=True))
    expected = int(pc.sum(mask).as_py() or 0)
    assert n == expected, (n, expected)
    print(f"search {query!r}: {n:,} matches; first page after {first_page_s * 1e3:.0f} ms, "
          f"whole scan {scan_s * 1e3:.0f} ms vs one match_substring over the in-memory column "
          f"{base_s * 1e3:.0f} ms: ratio {scan_s / base_s:.2f}x")

    matches, _ = corpus.search(query, limit=100_000)
    pages = [matches[i:i + 100] for i in range(0, len(matches) - 100, max(100, len(matches) // 50))]
    ours = statistics.median(timed(lambda: corpus.take(p))[0] for p in pages) * 1e3
    base = statistics.median(timed(lambda: corpus.table.take(pa.array(p)).to_pylist())[0]
                             for p in pages[:5]) * 1e3
    print(f"page of 100 search results: {ours:.2f} ms (one-row slices) vs Table.take "
          f"{base:.1f} ms (concatenates the chunks): ratio {base / ours:.0f}x faster")

    # ---------------------------------------------------------------- the GUI thread
    from PySide6.QtCore import QTimer

    from mistudio.ui.datasets.browsers import DocumentsBrowser

    browser = DocumentsBrowser(studio)
    browser.set_dataset(studio.datasets.get(rec.id))
    browser.show()
    ticks: list[float] = []
    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))

    def max_gap() -> float:
        return max(np.diff(ticks)) * 1e3 if len(ticks) > 1 else float("nan")

    browser.search_edit.setText(query)
    timer.start()
    t = time.perf_counter()
    browser.run_search()
    first_rows = None
    while browser.searching:
        app.processEvents()
        if first_rows is None and browser.model.rowCount():
            first_rows = time.perf_counter() - t
        time.sleep(0.002)
    total = time.perf_counter() - t
    timer.stop()
    bg_gap = max_gap()
    assert len(browser.matches) == min(n, 100_000)
    def spin(seconds: float) -> None:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            app.processEvents()
            time.sleep(0.002)

    ticks.clear()
    timer.start()
    spin(0.1)
    t = time.perf_counter()
    corpus.search(query, limit=100_000)  # what a click did before: the scan on the GUI thread
    blocking = time.perf_counter() - t
    spin(0.1)
    timer.stop()
    fg_gap = max_gap()
    print(f"GUI: background search showed its first rows after {first_rows * 1e3:.0f} ms, "
          f"finished after {total * 1e3:.0f} ms; longest GUI stall {bg_gap:.0f} ms vs "
          f"{fg_gap:.0f} ms for the same search on the GUI thread ({blocking * 1e3:.0f} ms): "
          f"ratio {fg_gap / bg_gap:.1f}x")
    studio.close(timeout=5)
    import shutil

    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
