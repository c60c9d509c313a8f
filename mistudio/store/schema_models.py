"""Tables of the Models area: models, activation sets, extraction templates (migration 3)."""

from __future__ import annotations

from mistudio.store.migrations import migration


@migration(3, "models, activation sets, extraction templates")
def _v3(db):
    db["models"].create(
        {
            "id": str,
            "name": str,
            "source": str,  # hub | local | gguf | demo
            "source_ref": str,  # Hub repo id, local folder, or GGUF file path
            "revision": str,  # Hub revision asked for (branch/tag/commit)
            "commit_sha": str,  # resolved commit of a Hub download
            "folder": str,  # the HF folder the model loads from
            "linked": int,  # 1: folder is the user's own (never deleted by us)
            "status": str,  # downloading | converting | ready | failed | incomplete
            "error": str,
            "family": str,  # config.model_type
            "architecture": str,
            "n_layers": int,
            "d_model": int,
            "n_params": int,
            "dtype": str,  # dtype of the weights on disk
            "size_bytes": int,
            "trust_remote_code": int,
            "tokenizer_fingerprint": str,
            "variants": str,  # JSON: saved quantized variants {name: {folder, quantization}}
            "job_id": str,
            "created_at": str,
            "updated_at": str,
        },
        pk="id",
        not_null={"name", "source", "status", "created_at"},
        defaults={"status": "ready", "linked": 0, "trust_remote_code": 0},
    )
    db["activation_sets"].create(
        {
            "id": str,
            "extraction_id": str,  # sets written by one extraction job share it
            "name": str,
            "model_id": str,
            "hook_point": str,
            "layer": int,
            "dtype": str,
            "d_in": int,
            "num_rows": int,
            "seq_len": int,
            "tokenization": str,  # folder of the tokenization read
            "dataset_id": str,
            "status": str,  # extracting | ready | incomplete | failed | cancelled
            "folder": str,
            "size_bytes": int,
            "summary": str,  # JSON: headline statistics
            "params": str,  # JSON: the extraction settings
            "job_id": str,
            "created_at": str,
            "updated_at": str,
        },
        pk="id",
        not_null={"hook_point", "status", "created_at"},
    )
    db["activation_sets"].create_index(["model_id"])
    db["activation_sets"].create_index(["extraction_id"])
    db["extraction_templates"].create(
        {
            "id": str,
            "name": str,
            "description": str,
            "settings": str,  # JSON: layers, hook_types, max_tokens, batch_size, dtype, skip_bos
            "builtin": int,
            "created_at": str,
            "updated_at": str,
        },
        pk="id",
        not_null={"name", "settings", "created_at"},
        defaults={"builtin": 0},
    )
    db["extraction_templates"].create_index(["name"], unique=True)
