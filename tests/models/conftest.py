"""Fixtures for the models/activations tests: tiny models of every family, tokenizations."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import SAMPLE_TEXT


def tiny_config(family: str):
    """A 3-layer, d_model 64 config of each supported family (random weights)."""
    import transformers as tf

    common = dict(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=3,
                  num_attention_heads=4, max_position_embeddings=128)
    if family == "gpt2":
        return tf.GPT2Config(vocab_size=512, n_positions=128, n_embd=64, n_layer=3, n_head=4)
    if family == "gpt_neox":
        return tf.GPTNeoXConfig(**common, rotary_pct=0.25)
    if family == "llama":
        return tf.LlamaConfig(**common, num_key_value_heads=2)
    if family == "mistral":
        return tf.MistralConfig(**common, num_key_value_heads=2)
    if family == "qwen2":
        return tf.Qwen2Config(**common, num_key_value_heads=2)
    if family == "gemma":
        return tf.GemmaConfig(**common, num_key_value_heads=2, head_dim=16)
    if family == "gemma2":
        return tf.Gemma2Config(**common, num_key_value_heads=2, head_dim=16)
    if family == "phi":
        return tf.PhiConfig(**common)
    if family == "phi3":
        return tf.Phi3Config(**common, num_key_value_heads=2, pad_token_id=0)
    raise ValueError(family)


FAMILIES = ["gpt2", "gpt_neox", "llama", "mistral", "qwen2", "gemma", "gemma2", "phi", "phi3"]


def build_tiny(family: str):
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    cfg = tiny_config(family)
    model = AutoModelForCausalLM.from_config(cfg, attn_implementation="eager")
    # random init leaves some norms at exactly 1/0; perturb so each part matters
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name or "ln" in name:
                p.add_(0.1 * torch.randn_like(p))
    return model.eval()


def write_tokenization(folder: Path, tokenizer_dir: Path, *, seq_len: int = 32,
                       n_seq: int | None = None, prepend_bos: bool = True,
                       padded: bool = False) -> Path:
    """A tokenization folder in the contract of mistudio/data/tokenized.py.

    Packed: the text's tokens cut into rows of seq_len (BOS first when prepend_bos).
    Padded: one line per row, padded with pad_token_id, lengths recorded.
    """
    from transformers import AutoTokenizer

    from mistudio.data.tokenized import COMPLETE_MARKER, tokenizer_fingerprint

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    lines = [line for line in SAMPLE_TEXT.splitlines() if line.strip()]
    body = seq_len - 1 if prepend_bos else seq_len
    rows, lengths = [], []
    if padded:
        for line in lines:
            ids = tok(line)["input_ids"][:body]
            ids = ([tok.bos_token_id] if prepend_bos else []) + ids
            lengths.append(len(ids))
            rows.append(ids + [tok.pad_token_id] * (seq_len - len(ids)))
    else:
        stream = []
        for line in lines:
            stream += tok(line + "\n")["input_ids"]
        for i in range(0, len(stream) - body + 1, body):
            rows.append(([tok.bos_token_id] if prepend_bos else []) + stream[i:i + body])
            lengths.append(seq_len)
    if n_seq:
        rows, lengths = rows[:n_seq], lengths[:n_seq]
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "tokens.npy", np.array(rows, dtype=np.int32))
    np.save(folder / "lengths.npy", np.array(lengths, dtype=np.int32))
    meta = {"format_version": 1, "seq_len": seq_len, "n_seq": len(rows),
            "n_tokens": int(sum(lengths)), "tokenizer": str(tokenizer_dir),
            "tokenizer_fingerprint": tokenizer_fingerprint(tok), "vocab_size": len(tok),
            "bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id,
            "pad_token_id": tok.pad_token_id, "prepend_bos": prepend_bos,
            "packing": "padded" if padded else "packed", "dataset_id": "ds_test"}
    (folder / "meta.json").write_text(json.dumps(meta))
    (folder / COMPLETE_MARKER).write_text("ok")
    return folder


@pytest.fixture(scope="session")
def packed_tokenization(tmp_path_factory, tiny_tokenizer_dir) -> Path:
    return write_tokenization(tmp_path_factory.mktemp("tok_packed"), tiny_tokenizer_dir)


@pytest.fixture(scope="session")
def padded_tokenization(tmp_path_factory, tiny_tokenizer_dir) -> Path:
    return write_tokenization(tmp_path_factory.mktemp("tok_padded"), tiny_tokenizer_dir,
                              padded=True)
