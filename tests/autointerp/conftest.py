"""Fixtures of auto-interpretation: a tiny chat model (a real Llama-shaped transformers model
with a chat template and single-token Yes/No) and the analysis fixtures of tests/analysis."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.analysis.conftest import (  # noqa: F401  (fixtures reused)
    _one_torch_thread, analysis_tokens, gpt2_dir, small_analysis, studio_analysis)

CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>{% endif %}")


@pytest.fixture(scope="session")
def tiny_chat_dir(tmp_path_factory, tiny_llama_dir) -> Path:
    """tiny-llama whose tokenizer has a chat template and 'Yes'/'No' as single tokens
    (added within the model's 512-row embedding)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_llama_dir)
    tok.add_tokens(["Yes", "No"])
    assert len(tok) <= 512
    tok.chat_template = CHAT_TEMPLATE
    out = tmp_path_factory.mktemp("tiny_chat")
    AutoModelForCausalLM.from_pretrained(tiny_llama_dir).save_pretrained(
        out, safe_serialization=True)
    tok.save_pretrained(out)
    return out


class ScriptedModel:
    """A stand-in for :class:`~mistudio.autointerp.model.ChatModel` whose answers are
    scripted: it says yes (P(yes) = ``p_hit``) to texts containing ``needle`` and no
    otherwise; it records every call so tests can check batching and what it was shown."""

    def __init__(self, needle: str = "", p_hit: float = 0.9, explanation: str = "scripted"):
        self.needle = needle
        self.p_hit = p_hit
        self.explanation = explanation
        self.generate_calls: list[str] = []
        self.batches: list[list[str]] = []

    def generate(self, system: str, user: str, max_new_tokens: int = 48) -> str:
        self.generate_calls.append(user)
        return f"[EXPLANATION]: {self.explanation}\nmore text"

    def answer_probs(self, system: str, users: list[str], words):
        import numpy as np

        self.batches.append(list(users))
        rows = []
        for u in users:
            text = u.split("Text: ", 1)[1]
            hit = self.needle and self.needle in text
            p = self.p_hit if hit else 1 - self.p_hit
            rows.append([0.8 * p, 0.8 * (1 - p)])  # 80% of the mass on the two answers
        return np.asarray(rows)


@pytest.fixture(scope="module")
def res(small_analysis):
    """The small analysis's results, shared by the accounting and pause/resume tests."""
    from mistudio.analysis.results import AnalysisResults

    return AnalysisResults(small_analysis[0])


def alive_features(res, n: int) -> list[int]:
    """The n least-firing features that still fire on more than 20 tokens."""
    import numpy as np

    c = res.columns
    order = np.argsort(-c["firing_count"])
    return [int(f) for f in order if c["firing_count"][f] > 20][-n:]
