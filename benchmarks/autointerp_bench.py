"""Auto-interpretation speed: the explainer's and the detection scorer's fast paths against
the plain ones, in one process, same model, same prompts.

- explain, plain: one prompt at a time, HF greedy ``generate`` to ``max_new_tokens`` (the
  code before the fast path); fast: ``ChatModel.generate_many`` (prompts batched, each row
  stopped at its first sentence).
- score, plain: every whole prompt in one left-padded forward pass with full logits; fast:
  ``ChatModel.answer_probs`` (the shared system prompt + explanation run once and shared
  through the KV cache, the unembedding only at the read positions). Also prints the
  largest difference of the answer probabilities (they must agree).

    python benchmarks/autointerp_bench.py --model-dir CONVERTED_SMOLLM2 --analysis FA_FOLDER
        [--features 4] [--threads 1]

Needs a converted chat model folder (e.g. the demo model's folder in the data dir) and a
completed feature analysis folder. Prints seconds of each and the ratios.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def plain_generate(chat, system, user, max_new_tokens):
    import torch

    ids = chat.chat_ids(system, user)
    x = torch.tensor([ids])
    with torch.no_grad():
        out = chat.model.generate(x, attention_mask=torch.ones_like(x), do_sample=False,
                                  max_new_tokens=max_new_tokens,
                                  pad_token_id=chat.tokenizer.pad_token_id)
    return chat.tokenizer.decode(out[0, len(ids):], skip_special_tokens=True)


def plain_answer_probs(chat, system, users, words):
    import torch

    from mistudio.autointerp.model import answer_token_ids

    answer_ids = answer_token_ids(chat.tokenizer, words)
    seqs = [chat.chat_ids(system, u) for u in users]
    width = max(len(s) for s in seqs)
    pad = int(chat.tokenizer.pad_token_id or 0)
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, width - len(s):] = torch.tensor(s)
        mask[i, width - len(s):] = 1
    positions = (mask.cumsum(1) - 1).clamp(min=0)
    with torch.no_grad():
        logits = chat.model(input_ids=ids, attention_mask=mask,
                            position_ids=positions).logits[:, -1, :]
    return torch.softmax(logits.float(), dim=-1)[:, answer_ids].numpy()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--analysis", required=True)
    ap.add_argument("--features", type=int, default=4)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--max-new-tokens", type=int, default=48)
    args = ap.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from mistudio.analysis.results import AnalysisResults
    from mistudio.autointerp import examples, prompts, scoring
    from mistudio.autointerp.model import ChatModel
    from mistudio.hf import transformers_names

    AutoModelForCausalLM, AutoTokenizer = transformers_names("AutoModelForCausalLM",
                                                             "AutoTokenizer")
    chat = ChatModel(AutoModelForCausalLM.from_pretrained(args.model_dir).eval(),
                     AutoTokenizer.from_pretrained(args.model_dir))
    res = AnalysisResults(args.analysis)
    fc = np.asarray(res.columns["firing_count"])
    feats = [int(f) for f in np.random.default_rng(0).choice(np.flatnonzero(fc > 0),
                                                             args.features, replace=False)]
    v = prompts.get_version("delphi-v2")
    sels = [examples.select(res, f) for f in feats]
    users = [prompts.explainer_user(s.train, s.max_act, s.logit_tokens, v, chat.special_tokens)
             for s in sels]
    out = {"features": feats}
    t = time.perf_counter()
    for u in users:
        plain_generate(chat, v.explainer_system, u, args.max_new_tokens)
    out["explain_plain_s"] = time.perf_counter() - t
    t = time.perf_counter()
    chat.generate_many(v.explainer_system, users, args.max_new_tokens,
                       prefix=v.explanation_prefix)
    out["explain_fast_s"] = time.perf_counter() - t
    out["explain_speedup"] = out["explain_plain_s"] / out["explain_fast_s"]

    qs = scoring.questions("detection", "dates and years in history", sels[0].test, 0,
                           chat.special_tokens)
    texts = [q for q, _, _ in qs]
    t = time.perf_counter()
    yes_no = ("Yes", "No")
    ref = np.concatenate([plain_answer_probs(chat, v.detection_system, texts[i:i + 8], yes_no)
                          for i in range(0, len(texts), 8)])
    out["score_plain_s"] = time.perf_counter() - t
    t = time.perf_counter()
    got = np.concatenate([chat.answer_probs(v.detection_system, texts[i:i + 16], yes_no)
                          for i in range(0, len(texts), 16)])
    out["score_fast_s"] = time.perf_counter() - t
    out["score_speedup"] = out["score_plain_s"] / out["score_fast_s"]
    out["score_questions"] = len(texts)
    out["max_prob_difference"] = float(np.abs(ref - got).max())
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in out.items()},
                     indent=1))


if __name__ == "__main__":
    main()
