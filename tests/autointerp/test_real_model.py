"""A real (tiny) transformers chat model: batched answer probabilities against one prompt at
a time, and explain + score end to end through the CLI (2 features)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from mistudio.cli import main
from tests.analysis.conftest import random_sae, save_sae


def test_batched_answer_probs_equal_one_at_a_time(tiny_chat_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from mistudio.autointerp.model import ChatModel

    tok = AutoTokenizer.from_pretrained(tiny_chat_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_chat_dir).eval()
    chat = ChatModel(model, tok)
    users = ["The cat sat.", "A much longer text about the dog and the cat on the mat.", "x"]
    got = chat.answer_probs("sys", users, ("Yes", "No"))
    yes, no = tok.convert_tokens_to_ids(["Yes", "No"])
    for i, u in enumerate(users):
        ids = tok.apply_chat_template([{"role": "system", "content": "sys"},
                                       {"role": "user", "content": u}],
                                      add_generation_prompt=True, tokenize=True)
        ids = ids["input_ids"] if hasattr(ids, "keys") else ids
        with torch.no_grad():
            p = torch.softmax(model(torch.tensor([ids])).logits[0, -1], -1)
        np.testing.assert_allclose(got[i], [p[yes].item(), p[no].item()], rtol=1e-4,
                                   atol=1e-7)
    text = chat.generate("sys", "hello", max_new_tokens=5)
    assert isinstance(text, str) and text == chat.generate("sys", "hello", max_new_tokens=5)


def test_answer_words_must_be_single_tokens(tiny_chat_dir):
    from transformers import AutoTokenizer

    from mistudio.autointerp.model import answer_token_ids
    from mistudio.errors import UserError

    tok = AutoTokenizer.from_pretrained(tiny_chat_dir)
    assert len(answer_token_ids(tok, ("Yes", "No"))) == 2
    with pytest.raises(UserError, match="not one"):
        answer_token_ids(tok, ("Absolutely",))


def test_explain_and_score_through_cli(data_dir, tiny_gpt2_dir, tiny_chat_dir, analysis_tokens,
                                       tmp_path, capsys):
    base = ["--data-dir", str(data_dir)]
    assert main(base + ["models", "add", str(tiny_gpt2_dir), "--name", "tiny-gpt2"]) == 0
    assert main(base + ["models", "add", str(tiny_chat_dir), "--name", "tiny-chat"]) == 0
    save_sae(tmp_path / "sae", random_sae())
    assert main(base + ["sae", "import", str(tmp_path / "sae")]) == 0
    sae_id = re.search(r"(sae_[0-9a-f]+)", capsys.readouterr().out).group(1)
    assert main(base + ["analyze", sae_id, "--tokens", str(analysis_tokens), "--max-tokens",
                        "600", "--device", "cpu"]) == 0
    capsys.readouterr()
    # bad input: exit 2 with a message, nothing queued
    assert main(base + ["features", "explain", sae_id, "--features", "5000",
                        "--model", "tiny-chat"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(base + ["features", "explain", sae_id, "--features", "top2",
                        "--model", "tiny-gpt2"]) == 2
    assert "no chat template" in capsys.readouterr().err
    rc = main(base + ["features", "score", sae_id, "--features", "top2", "--model",
                      "tiny-chat", "--device", "cpu", "--json"])
    got = json.loads(capsys.readouterr().out)
    assert rc == 0, got
    assert got["status"] == "completed" and len(got["features"]) == 2
    for f in got["features"]:
        assert isinstance(f["explanation"], str)
        assert 0.0 <= f["score"] <= 1.0 and 0.0 <= f["baseline"] <= 1.0
        assert f["baseline_feature"] in {g["feature"] for g in got["features"]} - {f["feature"]}
    # the explanations are stored and reused: explaining again generates nothing new
    rc = main(base + ["features", "explain", sae_id, "--features", "top2", "--model",
                      "tiny-chat", "--device", "cpu", "--json"])
    again = json.loads(capsys.readouterr().out)
    assert rc == 0 and again["summary"]["explained_now"] == 0
    assert [f["explanation"] for f in again["features"]] == \
        [f["explanation"] for f in got["features"]]


def _chat(tiny_chat_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from mistudio.autointerp.model import ChatModel

    tok = AutoTokenizer.from_pretrained(tiny_chat_dir)
    return ChatModel(AutoModelForCausalLM.from_pretrained(tiny_chat_dir).eval(), tok)


def test_shared_prefix_cache_gives_the_full_forward_probabilities(tiny_chat_dir):
    """The scorer's prompts share system prompt and explanation: computed once and shared
    through the KV cache, the answers equal a plain forward pass of each whole prompt."""
    import torch

    from mistudio.autointerp import prompts
    from mistudio.autointerp.model import MIN_SHARED_PREFIX, _common_prefix_len

    chat = _chat(tiny_chat_dir)
    tok, model = chat.tokenizer, chat.model
    system = "You judge whether a text has the feature. Answer Yes or No."
    texts = ["The cat sat on the mat.", "Paris is the capital of France. Berlin too.",
             "x", "Water boils at one hundred degrees Celsius at sea level."]
    users = [prompts.detection_user("capital cities of Europe and their rivers", [t])
             for t in texts]
    seqs = [chat.chat_ids(system, u) for u in users]
    assert _common_prefix_len(seqs) >= MIN_SHARED_PREFIX  # the cached path is the one tested
    got = chat.answer_probs(system, users, ("Yes", "No"))
    yes, no = tok.convert_tokens_to_ids(["Yes", "No"])
    for i, ids in enumerate(seqs):
        with torch.no_grad():
            p = torch.softmax(model(torch.tensor([ids])).logits[0, -1].float(), -1)
        np.testing.assert_allclose(got[i], [p[yes].item(), p[no].item()], rtol=1e-4,
                                   atol=1e-7)


def test_batched_generation_stops_at_the_first_sentence(tiny_chat_dir):
    """generate_many (left-padded batch, answer started with a prefix, stopped per row at
    its first sentence or line) gives each row the start of a plain one-prompt greedy
    generation, cut where that sentence ends."""
    import torch

    chat = _chat(tiny_chat_dir)
    tok, model = chat.tokenizer, chat.model
    users = ["Example 1: the cat", "Example 1: Paris is the capital of France. Berlin is",
             "Example 1: x"]
    prefix = "The cat"
    got = chat.generate_many("sys", users, 30, prefix=prefix)
    for user, text in zip(users, got):
        ids = chat.chat_ids("sys", user) + tok.encode(prefix, add_special_tokens=False)
        with torch.no_grad():
            ref = model.generate(torch.tensor([ids]), do_sample=False, max_new_tokens=30,
                                 pad_token_id=tok.pad_token_id)[0, len(ids):]
        n, so_far = 0, prefix
        for t in ref:
            piece = tok.decode([int(t)], skip_special_tokens=True)
            n += 1
            ended = "\n" in piece or piece.rstrip().endswith((".", "!", "?"))
            if ended and so_far.strip():
                break
            so_far += piece
        assert text == tok.decode(ref[:n], skip_special_tokens=True)
    assert chat.generate("sys", users[0], 30, prefix=prefix) == got[0]
