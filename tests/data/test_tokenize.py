"""Tokenization: correctness against the tokenizer called directly, packing and BOS rules."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from tests.data.data_samples import DOCS

from mistudio.data.importer import build_dataset_folder
from mistudio.data.raw_store import RawCorpus
from mistudio.data.sources import SourceSpec
from mistudio.data.token_writer import NpyRowWriter, read_npy_shape
from mistudio.data.tokenize import TokenizeSettings, load_tokenizer, tokenize_corpus
from mistudio.data.tokenized import TokenizedDataset, tokenizer_fingerprint
from mistudio.errors import UserError
from mistudio.jobs.context import JobContext

DOCS_X = DOCS * 5  # 35 documents, enough to span several rows


@pytest.fixture(scope="module")
def tokenizer(tiny_tokenizer_dir):
    return load_tokenizer(str(tiny_tokenizer_dir))


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "d.jsonl"
    import json

    path.write_text("".join(json.dumps({"text": d}) + "\n" for d in DOCS_X))
    build_dataset_folder(SourceSpec(kind="local", path=str(path)), tmp_path / "ds",
                         JobContext.standalone())
    return RawCorpus(tmp_path / "ds")


def run(corpus, tokenizer, tmp_path, **settings):
    out = tmp_path / f"tok{len(list(tmp_path.iterdir()))}"
    out.mkdir()
    s = TokenizeSettings.from_dict({"batch_docs": 4, **settings})
    meta = tokenize_corpus(corpus, tokenizer, s, out, JobContext.standalone())
    return TokenizedDataset(out), meta


def direct_ids(tokenizer, text):
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def test_packed_with_bos_matches_direct_tokenization(corpus, tokenizer, tmp_path):
    td, meta = run(corpus, tokenizer, tmp_path, seq_len=16, prepend_bos=True, separator="eos")
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    stream = []
    for i, d in enumerate(DOCS_X):
        stream += ([eos] if i else []) + direct_ids(tokenizer, d)
    n_full = len(stream) // 15
    expected = [[bos] + stream[r * 15:(r + 1) * 15] for r in range(n_full)]
    rest = stream[n_full * 15:]
    if rest:
        pad = tokenizer.pad_token_id
        expected.append([bos] + rest + [pad] * (15 - len(rest)))
    assert np.array_equal(np.asarray(td.tokens), np.array(expected, dtype=np.int32))
    assert td.tokens.dtype == np.int32 and isinstance(td.tokens, np.memmap)
    assert td.lengths.tolist() == [16] * n_full + ([1 + len(rest)] if rest else [])
    assert meta["n_tokens"] == int(td.lengths.sum()) == len(stream) + len(expected)
    assert meta["tokenizer_fingerprint"] == tokenizer_fingerprint(tokenizer)
    assert meta["packing"] == "packed" and meta["prepend_bos"] is True
    # document boundaries: each document's tokens sit where documents.npy says
    docs = np.load(td.folder / "documents.npy")
    assert docs[:, 0].tolist() == list(range(len(DOCS_X)))
    flat_rows = np.asarray(td.tokens)[:, 1:]
    for row, start, n in docs.tolist():
        got = [int(flat_rows[p // 15, p % 15]) for p in range(start, start + n)]
        assert got == direct_ids(tokenizer, DOCS_X[row])


def test_packed_without_bos_or_separator_and_drop_last(corpus, tokenizer, tmp_path):
    td, _ = run(corpus, tokenizer, tmp_path, seq_len=10, prepend_bos=False, separator="none",
                drop_last=True)
    stream = [t for d in DOCS_X for t in direct_ids(tokenizer, d)]
    n_full = len(stream) // 10
    assert np.array_equal(np.asarray(td.tokens).ravel(), np.array(stream[:n_full * 10]))
    assert (np.asarray(td.lengths) == 10).all()


def test_padded_one_document_per_row_with_truncation(corpus, tokenizer, tmp_path):
    td, meta = run(corpus, tokenizer, tmp_path, seq_len=8, packing="padded", prepend_bos=True)
    bos, pad = tokenizer.bos_token_id, tokenizer.pad_token_id
    assert td.n_seq == len(DOCS_X)
    n_trunc = 0
    for i, d in enumerate(DOCS_X):
        ids = direct_ids(tokenizer, d)
        n_trunc += len(ids) > 7
        kept = ids[:7]
        row = [bos] + kept + [pad] * (7 - len(kept))
        assert td.tokens[i].tolist() == row
        assert int(td.lengths[i]) == 1 + len(kept)
    assert meta["stats"]["n_docs_truncated"] == n_trunc > 0
    assert td.valid_mask(slice(0, 3)).sum() == int(td.lengths[:3].sum())


def test_min_doc_tokens_and_max_sequences(corpus, tokenizer, tmp_path):
    lens = [len(direct_ids(tokenizer, d)) for d in DOCS_X]
    threshold = sorted(lens)[len(lens) // 2]
    td, meta = run(corpus, tokenizer, tmp_path, seq_len=64, packing="padded",
                   min_doc_tokens=threshold)
    expected_rows = [i for i, n in enumerate(lens) if n >= threshold]
    docs = np.load(td.folder / "documents.npy")
    assert docs[:, 0].tolist() == expected_rows
    assert meta["stats"]["n_docs_too_short"] == len(DOCS_X) - len(expected_rows)
    td, meta = run(corpus, tokenizer, tmp_path, seq_len=12, max_sequences=3)
    assert td.n_seq == 3 and meta["stats"]["stopped_at_max_sequences"]
    with pytest.raises(UserError, match="no sequences.*shorter than"):
        run(corpus, tokenizer, tmp_path, seq_len=12, min_doc_tokens=10_000)


def test_token_statistics_match_an_independent_count(corpus, tokenizer, tmp_path):
    td, meta = run(corpus, tokenizer, tmp_path, seq_len=16)
    counted = Counter()
    for row, n in zip(np.asarray(td.tokens), np.asarray(td.lengths)):
        counted.update(row[:n].tolist())
    counts = np.load(td.folder / "token_counts.npy")
    assert {i: int(c) for i, c in enumerate(counts) if c} == dict(counted)
    stats = meta["stats"]
    assert stats["distinct_tokens"] == len(counted)
    assert stats["vocab_coverage"] == pytest.approx(len(counted) / len(tokenizer))
    special = set(tokenizer.all_special_ids)
    content = Counter({k: v for k, v in counted.items() if k not in special})
    top_id, top_count = content.most_common(1)[0]
    assert stats["top_tokens"][0][0] == top_id and stats["top_tokens"][0][2] == top_count
    assert stats["top_tokens"][0][1] == tokenizer.decode([top_id])
    assert stats["n_special_tokens"] == sum(v for k, v in counted.items() if k in special)
    doc_lens = [len(direct_ids(tokenizer, d)) for d in DOCS_X]
    assert stats["doc_tokens"]["median"] == float(np.median(doc_lens))
    assert stats["doc_tokens"]["max"] == max(doc_lens)
    assert sum(stats["doc_tokens"]["hist_counts"]) == len(DOCS_X)


def test_settings_and_tokenizer_errors(corpus, tokenizer, tmp_path):
    with pytest.raises(UserError, match="context length"):
        TokenizeSettings.from_dict({"seq_len": 1})
    with pytest.raises(UserError, match="Unknown packing"):
        TokenizeSettings.from_dict({"packing": "zip"})
    with pytest.raises(UserError, match="does not exist"):
        load_tokenizer(str(tmp_path / "nowhere"))
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(UserError, match="holds no tokenizer files"):
        load_tokenizer(str(tmp_path / "empty_dir"))
    (tmp_path / "broken_dir").mkdir()
    (tmp_path / "broken_dir" / "tokenizer.json").write_text("{not json")
    with pytest.raises(UserError, match="No tokenizer could be loaded"):
        load_tokenizer(str(tmp_path / "broken_dir"))


def test_npy_row_writer_streams_a_normal_npy(tmp_path):
    w = NpyRowWriter(tmp_path / "a.npy", 3, np.int32)
    for i in range(5):
        w.append(np.arange(6, dtype=np.int64).reshape(2, 3) + i)
    assert w.close() == 10
    arr = np.load(tmp_path / "a.npy")
    expected = np.concatenate([np.arange(6).reshape(2, 3) + i for i in range(5)])
    assert arr.dtype == np.int32 and np.array_equal(arr, expected)
    assert read_npy_shape(tmp_path / "a.npy") == (10, 3)
    with pytest.raises(ValueError):
        NpyRowWriter(tmp_path / "b.npy", 3).append(np.zeros((2, 4)))
