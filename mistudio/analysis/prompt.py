"""On-demand analysis of texts: features per token, and ablation of one feature.

:class:`PromptAnalyzer` keeps the SAEs it loaded; models come from the process model cache
(:data:`mistudio.models.pool.MODEL_POOL`), so both stay loaded between calls.

Ablation splices the SAE into the model at its output hook point as
``recon(codes') + (y - recon(codes))``: the SAE's reconstruction with the feature removed
from the codes, plus the SAE's error term on the original activations. With nothing
removed the splice equals ``y``, so the model's logits are reproduced exactly (up to float
rounding); the difference is the feature's effect. Transcoders read ``hook_name`` and
write ``hook_name_out``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np

from mistudio.errors import UserError

N_LOGIT_CHANGES = 5


@dataclass
class PromptFeatures:
    token_ids: list[int]
    tokens: list[str]
    excluded: list[bool]  # BOS: not analysed (no features listed)
    features: list[list[tuple[int, float]]]  # per token: (feature, value), strongest first


@dataclass
class AblationResult:
    """One example with the feature removed: per-token effects (index i = token i)."""

    seq: int
    pos: int
    token_ids: list[int]
    tokens: list[str]
    activation: list[float]  # the feature's activation per token
    loss_clean: list[float]  # CE of predicting token i+1 at token i (last: nan)
    loss_ablated: list[float]
    loss_change: list[float]  # ablated - clean
    logit_increase: list[list[tuple[int, str, float]]] = field(default_factory=list)
    logit_decrease: list[list[tuple[int, str, float]]] = field(default_factory=list)


class PromptAnalyzer:
    def __init__(self):
        self._saes: dict[tuple, object] = {}
        self._lock = threading.Lock()

    def _sae(self, folder: str, device: str):
        from mistudio.sae.formats import load_sae

        key = (str(folder), device)
        with self._lock:
            sae = self._saes.get(key)
            if sae is None:
                sae = load_sae(folder, device=device)[0]
                self._saes[key] = sae
            return sae

    @staticmethod
    def _model(model_folder: str, device: str, dtype: str, trust: bool):
        import torch

        from mistudio import hardware
        from mistudio.models.pool import MODEL_POOL

        dt = hardware.resolve_dtype(dtype or "auto", device)
        with torch.random.fork_rng(devices=[]):
            return MODEL_POOL.get(model_folder, dtype=dt, device=device,
                                  trust_remote_code=trust)

    @staticmethod
    def _target(model, hook_name: str):
        from mistudio.analysis.job import model_text_config
        from mistudio.models import hooks

        cfg = model_text_config(model)
        n_layers = int(getattr(cfg, "num_hidden_layers", 0) or getattr(cfg, "n_layer", 0))
        return hooks.resolve(hook_name, cfg.model_type, n_layers)

    def top_features(self, sae_folder: str, model_folder: str, hook_name: str, text: str, *,
                     k: int = 5, device: str = "cpu", trust_remote_code: bool = False,
                     dtype: str = "auto") -> PromptFeatures:
        import torch

        from mistudio.activations.capture import ActivationCapture
        from mistudio.analysis.codes import encode_csr

        loaded = self._model(model_folder, device, dtype, trust_remote_code)
        sae = self._sae(sae_folder, device)
        tok = loaded.tokenizer
        ids = tok(text, add_special_tokens=True)["input_ids"]
        if tok.bos_token_id is not None and (not ids or ids[0] != tok.bos_token_id):
            ids = [tok.bos_token_id] + ids  # as the analysed tokenizations start
        target = self._target(loaded.model, hook_name)
        with torch.inference_mode(), ActivationCapture(loaded.model, [target]) as cap:
            x = cap.run(torch.tensor([ids], device=device))[target.name][0]
            offsets, feats, vals = encode_csr(sae, x.float())
        offsets, feats, vals = offsets.cpu().numpy(), feats.cpu().numpy(), vals.cpu().numpy()
        excluded = [i == tok.bos_token_id or i == tok.pad_token_id for i in ids]
        per_token = []
        for t in range(len(ids)):
            a, b = offsets[t], offsets[t + 1]
            order = np.argsort(-vals[a:b], kind="stable")[:k]
            per_token.append([] if excluded[t] else
                             [(int(feats[a + i]), float(vals[a + i])) for i in order])
        return PromptFeatures(token_ids=[int(i) for i in ids],
                              tokens=[tok.decode([i]) for i in ids], excluded=excluded,
                              features=per_token)

    def splice_logits(self, sae_folder: str, model_folder: str, hook_name: str, ids, *,
                      ablate: int | None = None, hook_name_out: str = "", device: str = "cpu",
                      trust_remote_code: bool = False, dtype: str = "auto",
                      excluded_ids: tuple[int, ...] = ()):
        """(logits [T, vocab] with the SAE spliced in, the feature's activation [T]); with
        ``ablate=None`` nothing is removed and the logits are the model's."""
        import torch

        from mistudio.sae.evaluation import _replace_hook

        loaded = self._model(model_folder, device, dtype, trust_remote_code)
        sae = self._sae(sae_folder, device)
        model = loaded.model
        t_in = self._target(model, hook_name)
        t_out = self._target(model, hook_name_out) if hook_name_out else t_in
        from mistudio.models.hooks import get_module

        state: dict = {}
        ids_t = torch.tensor([list(ids)], device=device)
        keep = torch.ones(len(ids), dtype=torch.bool, device=device)
        for tid in excluded_ids:
            keep &= ids_t[0] != tid

        def capture(t):
            state["x"] = t
            return t

        def splice(y):
            x = state.get("x", y) if t_out is not t_in else y
            flat_x = x.reshape(-1, x.shape[-1]).float()
            codes = sae.encode(flat_x)
            recon = sae.decode(codes, flat_x)
            state["act"] = codes[:, ablate].clone() if ablate is not None else None
            edited = codes.clone()
            if ablate is not None:
                edited[:, ablate] = 0
            error = y.reshape(-1, y.shape[-1]).float() - recon
            out = (sae.decode(edited, flat_x) + error).reshape(y.shape).to(y.dtype)
            return torch.where(keep[None, :, None], out, y)

        handles = []
        try:
            if t_out is not t_in:
                handles.append(_replace_hook(get_module(model, t_in.module_path), t_in.io,
                                             capture))
            handles.append(_replace_hook(get_module(model, t_out.module_path), t_out.io, splice))
            with torch.inference_mode():
                logits = model(input_ids=ids_t, use_cache=False).logits[0].float()
        finally:
            for h in handles:
                h.remove()
        act = state.get("act")
        return logits, (act.cpu().numpy() if act is not None else None)

    def ablate(self, sae_folder: str, model_folder: str, hook_name: str, feature: int,
               examples, results, *, device: str = "cpu", trust_remote_code: bool = False,
               dtype: str = "auto", hook_name_out: str = "") -> list[AblationResult]:
        """The feature removed on each example's sequence, up to the window's end."""
        import torch
        import torch.nn.functional as F

        if not examples:
            raise UserError(f"Feature {feature} has no examples to ablate on (it never fired).",
                            hint="Pick a feature that is not dead.")
        tokens = results.array("tokens")
        after = results.window[1]
        excluded = tuple(results.meta.get("excluded_token_ids") or ())
        out = []
        for e in examples:
            ids = [int(t) for t in tokens[e.seq, :e.pos + after + 1]]
            kw = dict(hook_name_out=hook_name_out, device=device,
                      trust_remote_code=trust_remote_code, dtype=dtype, excluded_ids=excluded)
            clean, _ = self.splice_logits(sae_folder, model_folder, hook_name, ids, **kw)
            ablated, act = self.splice_logits(sae_folder, model_folder, hook_name, ids,
                                              ablate=feature, **kw)
            target = torch.tensor(ids[1:], device=clean.device)
            lc = F.cross_entropy(clean[:-1], target, reduction="none").cpu().numpy()
            la = F.cross_entropy(ablated[:-1], target, reduction="none").cpu().numpy()
            diff = (ablated - clean).cpu()
            up = diff.topk(N_LOGIT_CHANGES, dim=1)
            down = diff.topk(N_LOGIT_CHANGES, dim=1, largest=False)

            def pairs(tk, t):
                return [(int(i), results.token_string(int(i)), float(v))
                        for i, v in zip(tk.indices[t], tk.values[t])]

            nan = [float("nan")]
            out.append(AblationResult(
                seq=e.seq, pos=e.pos, token_ids=ids,
                tokens=[results.token_string(t) for t in ids],
                activation=[float(a) for a in act],
                loss_clean=[float(v) for v in lc] + nan, loss_ablated=[float(v) for v in la] + nan,
                loss_change=[float(v) for v in la - lc] + nan,
                logit_increase=[pairs(up, t) for t in range(len(ids))],
                logit_decrease=[pairs(down, t) for t in range(len(ids))]))
        return out
