"""Tables of the Datasets area: datasets and their tokenizations (with stored statistics)."""

from __future__ import annotations

from mistudio.store.migrations import migration


@migration(2, "datasets and tokenizations")
def _v2(db):
    db["datasets"].create(
        {
            "id": str,
            "name": str,
            "status": str,  # importing | ready
            "source_kind": str,  # hub | local | demo
            "source": str,  # JSON provenance (what, where from, when, licence)
            "text_column": str,
            "columns": str,  # JSON [{name, type}]
            "n_docs": int,
            "n_chars": int,
            "size_bytes": int,
            "stats": str,  # JSON, computed once at import
            "job_id": str,
            "created_at": str,
            "updated_at": str,
        },
        pk="id",
        not_null={"name", "status", "created_at"},
    )
    db["datasets"].create_index(["status"])
    db["tokenizations"].create(
        {
            "id": str,
            "dataset_id": str,
            "status": str,  # running | ready
            "tokenizer": str,  # label: model id, or the tokenizer folder
            "model_id": str,
            "tokenizer_path": str,
            "tokenizer_fingerprint": str,
            "seq_len": int,
            "settings": str,  # JSON (packing, prepend_bos, separator, min_doc_tokens, ...)
            "settings_key": str,  # fingerprint + settings, to find an identical tokenization
            "n_seq": int,
            "n_tokens": int,
            "n_docs": int,
            "size_bytes": int,
            "stats": str,  # JSON
            "job_id": str,
            "created_at": str,
            "updated_at": str,
        },
        pk="id",
        not_null={"dataset_id", "status", "created_at"},
        foreign_keys=[("dataset_id", "datasets", "id")],
    )
    db["tokenizations"].create_index(["dataset_id"])
    db["tokenizations"].create_index(["settings_key"])
