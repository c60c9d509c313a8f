"""Fixtures of the Datasets area: small corpora written in each format, helpers to wait."""

from __future__ import annotations

import json

import pytest

from tests.data.data_samples import DOCS, TOPICS  # noqa: E402


@pytest.fixture
def docs():
    return list(DOCS)


@pytest.fixture
def corpus_files(tmp_path):
    """The same seven documents (with a topic column where the format has columns)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = tmp_path / "corpus"
    root.mkdir()
    files = {}
    files["txt"] = root / "blocks.txt"
    files["txt"].write_text("\n\n".join(DOCS) + "\n", encoding="utf-8")
    folder = root / "folder"
    (folder / "sub").mkdir(parents=True)
    for i, doc in enumerate(DOCS):
        (folder / ("sub" if i % 2 else "") / f"doc{i}.txt").write_text(doc, encoding="utf-8")
    (folder / "ignored.bin").write_bytes(b"\x00\x01")
    files["txt_folder"] = folder
    files["jsonl"] = root / "docs.jsonl"
    files["jsonl"].write_text("".join(json.dumps({"id": i, "text": d, "topic": t}) + "\n"
                                      for i, (d, t) in enumerate(zip(DOCS, TOPICS))),
                              encoding="utf-8")
    files["json"] = root / "docs.json"
    files["json"].write_text(json.dumps([{"body": d, "topic": t} for d, t in zip(DOCS, TOPICS)]),
                             encoding="utf-8")
    files["csv"] = root / "docs.csv"
    import csv

    with open(files["csv"], "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["content", "topic"])
        w.writerows(zip(DOCS, TOPICS))
    files["parquet"] = root / "docs.parquet"
    pq.write_table(pa.table({"text": DOCS, "topic": TOPICS, "n": list(range(len(DOCS)))}),
                   files["parquet"], row_group_size=3)
    return files
