"""A registered instruct model used through its chat template: greedy short generation
(the explainer) and next-token probabilities of single-token answers (the scorers)."""

from __future__ import annotations

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

    def generate(self, system: str, user: str, max_new_tokens: int = 48) -> str:
        """Greedy continuation of the assistant turn (deterministic: no seed needed)."""
        import torch

        ids = self.chat_ids(system, user)
        if self.max_context:
            ids = ids[-max(1, self.max_context - max_new_tokens):]
        x = torch.tensor([ids], device=self.device)
        eos = self.tokenizer.eos_token_id
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else eos
        with torch.no_grad():
            out = self.model.generate(x, attention_mask=torch.ones_like(x), do_sample=False,
                                      max_new_tokens=int(max_new_tokens), pad_token_id=pad)
        return self.tokenizer.decode(out[0, len(ids):], skip_special_tokens=True)

    def answer_probs(self, system: str, users: list[str], words) -> np.ndarray:
        """[len(users), len(words)]: the probability of each answer word as the assistant's
        first token, one left-padded forward pass for the whole batch."""
        import torch

        answer_ids = answer_token_ids(self.tokenizer, words)
        seqs = [self.chat_ids(system, u) for u in users]
        width = max(len(s) for s in seqs)
        pad = self.tokenizer.pad_token_id
        pad = int(pad if pad is not None else (self.tokenizer.eos_token_id or 0))
        ids = torch.full((len(seqs), width), pad, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for i, s in enumerate(seqs):
            ids[i, width - len(s):] = torch.tensor(s)
            mask[i, width - len(s):] = 1
        # positions counted from each row's first real token (left padding)
        positions = (mask.cumsum(1) - 1).clamp(min=0)
        with torch.no_grad():
            logits = self.model(input_ids=ids.to(self.device),
                                attention_mask=mask.to(self.device),
                                position_ids=positions.to(self.device)).logits[:, -1, :]
        probs = torch.softmax(logits.float(), dim=-1)[:, answer_ids]
        return probs.cpu().numpy()
