"""What the Features tab reads off the GUI thread: plain functions of the services.

Each returns plain data; ``BackgroundCalls`` runs them on its worker thread.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mistudio.ui.features.table_data import FeatureTable


@dataclass
class TableBundle:
    sae_id: str
    analysis_id: str
    table: FeatureTable
    n_tokens: int
    meta: dict
    sources: "DocumentSources | None" = None
    chat_models: list = field(default_factory=list)  # (id, name) of models that can explain


@dataclass
class SaeChoices:
    """What the picker lists: the SAEs, the tokenizations to analyse over, and the analyses
    of the SAE it will pick (the one kept, else the first)."""

    saes: list[tuple[str, str]]  # (id, text)
    tokenizations: list[tuple[str, str]]
    picked: str | None
    analyses: list


def load_saes(studio, keep: str | None) -> SaeChoices:
    saes = studio.trainings.list_saes()
    items = [(s.id, f"{s.name or s.id} · {s.d_sae:,} features"
              + (f" · {s.hook_name}" if s.hook_name else "")) for s in saes]
    try:
        toks = [(t.id, f"{t.id} ({getattr(t, 'tokenizer', '')})".replace(" ()", ""))
                for t in studio.datasets.tokenizations()]
    except Exception:  # the datasets area is optional for this tab
        toks = []
    ids = [i for i, _ in items]
    picked = keep if keep in ids else (ids[0] if ids else None)
    analyses = studio.features.list_analyses(picked) if picked else []
    return SaeChoices(items, toks, picked, analyses)


def load_table(studio, sae_id: str, analysis_id: str) -> TableBundle:
    """Every feature's row: numbers from the analysis, tokens as text, the user's labels.

    Runs on the tab's worker thread and hands the GUI thread finished numpy columns (and the
    table's default order), so showing 65k rows there is one model reset. No Python loop
    here runs once per feature: such loops hold the GIL and slow the GUI thread meanwhile.
    """
    res = studio.features.results(sae_id, analysis_id)
    c = res.columns
    d = res.d_sae
    logit_top = np.full(d, "", dtype=object)
    frequent = np.full(d, "", dtype=object)
    features, top_tokens, logits = studio.features.feature_texts(sae_id, analysis_id)
    if features:
        rows = np.asarray(features, dtype=np.int64)
        logit_top[rows] = np.asarray(logits, dtype=object)
        frequent[rows] = np.asarray(top_tokens, dtype=object)
    # the token at each feature's largest activation
    seq = np.asarray(res.array("top_seq")[:, 0])
    pos = np.asarray(res.array("top_pos")[:, 0])
    tokens = res.array("tokens")
    ids = np.where(seq >= 0, np.asarray(tokens[np.maximum(seq, 0), np.maximum(pos, 0)]), -1)
    vocab = np.asarray(res.vocab + [""], dtype=object)  # index -1 (and out of range): ""
    top_token = vocab[np.where((ids >= 0) & (ids < len(vocab) - 1), ids, -1)]
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
    table.set_explanations(newest_explanations(studio, sae_id, res.analysis_id))
    table.sort_rank("index")  # the default order, computed here rather than on the GUI thread
    sources = DocumentSources(studio, str(res.meta.get("tokenization") or ""))
    models = [(m.id, m.name) for m in studio.autointerp.chat_models()]
    return TableBundle(sae_id, res.analysis_id, table, res.n_tokens, dict(res.meta), sources,
                       models)


def newest_explanations(studio, sae_id: str, analysis_id: str) -> dict[int, str]:
    """Feature -> its newest explanation (any explainer model or prompt version)."""
    newest = {}
    for e in sorted(studio.autointerp.explanations(sae_id, analysis_id),
                    key=lambda e: e.created_at):
        newest[e.feature] = e.explanation
    return newest


def load_detail(studio, sae_id: str, analysis_id: str, feature: int, sources=None):
    """(FeatureDetail, annotation, lists it is in, {(seq, pos): topic · title})."""
    detail = studio.features.feature(sae_id, feature, analysis_id)
    topics = {}
    if sources is not None:
        keys = {(ex.seq, ex.pos) for ex in detail.top_examples}
        for g in detail.intervals + detail.quantiles:
            keys |= {(ex.seq, ex.pos) for ex in g.examples}
        topics = sources.describe(keys)
    return (detail, studio.feature_labels.annotation(sae_id, feature),
            studio.feature_labels.lists_of(sae_id, feature), topics)


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


class DocumentSources:
    """Where an analysed token came from: its document's title and topic (when the dataset
    has them, as the demo's Wikipedia summaries do), and whether the text needs the
    Wikipedia attribution. Built once per analysis on the worker thread."""

    def __init__(self, studio, tokenization_folder: str):
        import json
        from pathlib import Path

        self.corpus = None
        self.demo = False
        folder = Path(tokenization_folder or "")
        meta_path, docs_path = folder / "meta.json", folder / "documents.npy"
        if not meta_path.exists() or not docs_path.exists():
            return
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        self.docs = np.load(docs_path)
        self.packed = meta.get("packing", "packed") == "packed"
        self.cap = int(meta.get("stream_row_capacity") or meta.get("seq_len") or 1)
        self.bos = int(bool(meta.get("prepend_bos")))
        try:
            ds = studio.datasets.get(meta.get("dataset_id", ""))
            self.demo = ds.source_kind == "demo"
            corpus = studio.datasets.corpus(ds.id)
            if {"title", "topic"} & set(corpus.columns):
                self.corpus = corpus
        except Exception:  # the dataset was deleted: examples still show, without topics
            self.corpus = None

    def document(self, seq: int, pos: int) -> int | None:
        if not self.packed:
            return int(seq) if seq < len(self.docs) else None
        p = int(seq) * self.cap + max(int(pos) - self.bos, 0)
        d = int(np.searchsorted(self.docs[:, 1], p, side="right")) - 1
        return d if d >= 0 else None

    def describe(self, keys) -> dict[tuple[int, int], str]:
        """(seq, pos) -> "Topic · Title" for each key."""
        if self.corpus is None:
            return {}
        docs = {k: self.document(*k) for k in keys}
        rows = sorted({int(self.docs[d, 0]) for d in docs.values() if d is not None})
        info = {r["index"]: r for r in self.corpus.take(rows)} if rows else {}
        out = {}
        for key, d in docs.items():
            row = info.get(int(self.docs[d, 0])) if d is not None else None
            if row:
                out[key] = " · ".join(str(row[c]) for c in ("topic", "title") if row.get(c))
        return out
