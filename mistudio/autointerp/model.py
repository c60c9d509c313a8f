"""A registered instruct model used through its chat template: greedy short generation
(the explainer) and next-token probabilities of single-token answers (the scorers)."""

from __future__ import annotations

import functools
import inspect

import numpy as np

from mistudio.errors import UserError


def answer_token_ids(tokenizer, words) -> list[int]:
    """The id of each answer word; every one must be ONE token, else the next-token
    probability would only be that of its first piece."""
    ids = []
    for w in words:
        got = tokenizer.encode(w, add_special_tokens=False)
        if len(got) != 1:
            raise UserError(f"The answer {w!r} is {len(got)} tokens for this model's tokenizer, "
                            "not one.", hint="Pick a prompt version whose answers are single "
                            "tokens for this model.")
        ids.append(int(got[0]))
    return ids


class ChatModel:
    """``model`` and ``tokenizer`` of a loaded causal LM whose tokenizer has a chat template."""

    def __init__(self, model, tokenizer, *, max_context: int = 0):
        if not getattr(tokenizer, "chat_template", None):
            raise UserError("This model's tokenizer has no chat template, so it cannot be "
                            "asked to explain features.",
                            hint="Pick an instruct (chat) model, e.g. the SmolLM2 demo model.")
        self.model = model
        self.tokenizer = tokenizer
        self.max_context = max_context

    @property
    def device(self):
        return next(self.model.parameters()).device

    def chat_ids(self, system: str, user: str) -> list[int]:
        messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        try:
            ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True,
                                                     tokenize=True)
        except Exception:  # templates without a system role: fold it into the user turn
            ids = self.tokenizer.apply_chat_template(
                [{"role": "user", "content": f"{system}\n\n{user}"}],
                add_generation_prompt=True, tokenize=True)
        if isinstance(ids, dict) or hasattr(ids, "keys"):
            ids = ids["input_ids"]
        ids = [int(i) for i in ids]
        if self.max_context and len(ids) > self.max_context:
            ids = ids[-self.max_context:]  # the question is at the end: keep it
        return ids

    @functools.cached_property
    def _forward_params(self) -> set[str]:
        return set(inspect.signature(self.model.forward).parameters)

    @property
    def _cache_arg(self) -> str:
        """transformers 5 renamed ``past_key_values`` to ``cache``."""
        return "cache" if "cache" in self._forward_params else "past_key_values"

    def _keep_logits(self, which) -> dict:
        """``logits_to_keep`` where the model takes it: the unembedding (a 49k-wide matmul on
        the demo model) only at the positions whose next token is read."""
        return {"logits_to_keep": which} if "logits_to_keep" in self._forward_params else {}

    @property
    def special_tokens(self) -> set[str]:
        """Token strings such as ``<|im_start|>`` that must not appear inside a prompt's
        text: the chat template would read them as control tokens."""
        return {t for t in getattr(self.tokenizer, "all_special_tokens", []) if t}

    def generate(self, system: str, user: str, max_new_tokens: int = 48,
                 prefix: str = "") -> str:
        """Greedy continuation of the assistant turn (deterministic: no seed needed)."""
        return self.generate_many(system, [user], max_new_tokens, prefix)[0]

    def generate_many(self, system: str, users: list[str], max_new_tokens: int = 48,
                      prefix: str = "") -> list[str]:
        """Greedy continuations of several prompts in one left-padded batch. ``prefix``
        starts the assistant's answer (the continuation is returned without it): a small
        model given "The marked words are" completes the sentence instead of writing a
        heading. Each row stops at the end of its first sentence or line (the explanation is
        one sentence; small models go on with lists), so most rows need far fewer than
        ``max_new_tokens`` steps, and one decode step for the batch costs about as much as
        for one prompt on a CPU."""
        import torch

        from mistudio.hf import transformers_names

        StoppingCriteria, StoppingCriteriaList = transformers_names("StoppingCriteria",
                                                                    "StoppingCriteriaList")

        start = self.tokenizer.encode(prefix, add_special_tokens=False) if prefix else []
        keep = max(1, self.max_context - max_new_tokens) if self.max_context else 0
        seqs = [self.chat_ids(system, u) + start for u in users]
        seqs = [s[-keep:] if keep else s for s in seqs]
        eos = self.tokenizer.eos_token_id
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else eos
        pad = int(pad if pad is not None else 0)
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), pad, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for i, s in enumerate(seqs):
            ids[i, width - len(s):] = torch.tensor(s)
            mask[i, width - len(s):] = 1
        tokenizer = self.tokenizer

        class FirstSentenceDone(StoppingCriteria):
            """True for a row once it has written text and then a line break or a full
            stop: the explanation is one sentence."""

            def __init__(self):
                self.text = [""] * len(seqs)

            def __call__(self, input_ids, scores, **kwargs):
                done = []
                for i, row in enumerate(input_ids):
                    piece = tokenizer.decode(row[-1:], skip_special_tokens=True)
                    before = self.text[i]
                    self.text[i] = before + piece
                    ended = "\n" in piece or piece.rstrip().endswith((".", "!", "?"))
                    done.append(ended and bool((prefix + before).strip()))
                return torch.tensor(done, dtype=torch.bool, device=input_ids.device)

        with torch.no_grad():
            out = self.model.generate(ids.to(self.device), attention_mask=mask.to(self.device),
                                      do_sample=False, max_new_tokens=int(max_new_tokens),
                                      pad_token_id=pad,
                                      stopping_criteria=StoppingCriteriaList([FirstSentenceDone()]))
        return [self.tokenizer.decode(row[width:], skip_special_tokens=True) for row in out]

    def answer_probs(self, system: str, users: list[str], words) -> np.ndarray:
        """[len(users), len(words)]: the probability of each answer word as the assistant's
        first token, one forward pass for the whole batch.

        The prompts of one scorer call share a long beginning (system prompt, explanation):
        it runs once and its key/value cache is shared by every row, so only each row's own
        tail (the example and the question) is computed per row. Tails are right-padded: a
        causal model never attends forward, so the padding changes no real token."""
        import torch

        answer_ids = answer_token_ids(self.tokenizer, words)
        seqs = [self.chat_ids(system, u) for u in users]
        shared = _common_prefix_len(seqs)
        shared = min(shared, min(len(s) for s in seqs) - 1)  # every row keeps a tail
        past = None
        with torch.no_grad():
            if shared >= MIN_SHARED_PREFIX:
                out = self.model(input_ids=torch.tensor([seqs[0][:shared]], device=self.device),
                                 use_cache=True, **self._keep_logits(1))
                past = getattr(out, "cache", None) or out.past_key_values
                past.batch_repeat_interleave(len(seqs))
            else:
                shared = 0
            tails = [s[shared:] for s in seqs]
            width = max(len(t) for t in tails)
            pad = self.tokenizer.pad_token_id
            pad = int(pad if pad is not None else (self.tokenizer.eos_token_id or 0))
            ids = torch.full((len(tails), width), pad, dtype=torch.long)
            mask = torch.zeros((len(tails), shared + width), dtype=torch.long)
            mask[:, :shared] = 1
            for i, t in enumerate(tails):
                ids[i, :len(t)] = torch.tensor(t)
                mask[i, shared:shared + len(t)] = 1
            positions = (shared + torch.arange(width)).unsqueeze(0).expand(len(tails), -1)
            last = [len(t) - 1 for t in tails]
            keep = sorted(set(last))  # the unembedding only where an answer is read
            kwargs = self._keep_logits(torch.tensor(keep, device=self.device))
            if past is not None:
                kwargs[self._cache_arg] = past
            logits = self.model(input_ids=ids.to(self.device),
                                attention_mask=mask.to(self.device),
                                position_ids=positions.to(self.device),
                                use_cache=past is not None, **kwargs).logits
            column = [keep.index(i) for i in last] if kwargs.get("logits_to_keep") is not None \
                else last
            logits = logits[torch.arange(len(tails), device=logits.device),
                            torch.tensor(column, device=logits.device)]
        probs = torch.softmax(logits.float(), dim=-1)[:, answer_ids]
        return probs.cpu().numpy()


# a shorter shared beginning is not worth a separate forward pass
MIN_SHARED_PREFIX = 8


def _common_prefix_len(seqs: list[list[int]]) -> int:
    first = seqs[0]
    n = len(first)
    for s in seqs[1:]:
        m = 0
        for a, b in zip(first[:n], s):
            if a != b:
                break
            m += 1
        n = m
    return n
