"""Spliced-in evaluation: CE loss recovered and KL score with the SAE in the model.

The SAE's reconstruction replaces the activations at its hook point while the language
model runs on held-out tokens; the next-token cross-entropy (CE) and the KL divergence from
the clean model's predictions are compared with zero-ablating that hook point. Definitions
follow SAELens (``sae_lens/evals.py``) so numbers compare::

    ce_loss_score = (ce_loss_with_ablation - ce_loss_with_sae)
                    / (ce_loss_with_ablation - ce_loss_without_sae)
    kl_div_score  = (kl_div_with_ablation - kl_div_with_sae) / kl_div_with_ablation

As in SAELens, positions holding a structural special token (BOS, EOS, PAD, SEP) keep their
original activations when the SAE is spliced in and are left out of the averages (CE at
position i predicts token i+1 and is kept when token i is not special); zero-ablation
zeroes every position. Padding (past a sequence's length) is left out too. KL is
``KL(clean || spliced)`` summed over the vocabulary, averaged over positions; CE and KL
are averaged over all kept positions of all batches, then the scores are formed.

Transcoders read ``hook_name`` and replace ``hook_name_out`` with their output.

*Which tokens*: an SAE trained here is evaluated on the sequences of its activation set's
tokenization that come after the last one extracted (held out); when there are none, on the
first sequences (then ``held_out`` is false). This module imports torch only inside
functions (the service builds :class:`EvalSpec` without it).
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from mistudio.errors import UserError

#: Metric names reported by an evaluation (SAELens's names).
EVAL_METRICS = ("ce_loss_score", "kl_div_score", "ce_loss_with_sae", "ce_loss_without_sae",
                "ce_loss_with_ablation", "kl_div_with_sae", "kl_div_with_ablation")
#: Logits held per batch are kept under about this many bytes (float32).
LOGITS_BUDGET_BYTES = 256 * 2**20
MAX_BATCH_TOKENS = 4096


@dataclass
class EvalSpec:
    """Where to splice an SAE in: the model, its hook point(s) and the evaluation tokens."""

    model_folder: str
    tokenization: str
    hook_name: str
    hook_name_out: str = ""         #: transcoders: the hook point whose output is replaced
    model_name: str = ""
    trust_remote_code: bool = False
    model_dtype: str = "auto"       #: the dtype activations were extracted in
    start_seq: int = 0              #: first tokenization sequence to evaluate on
    held_out: bool | None = True    #: False: the slice was seen in training; None: unknown

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "EvalSpec":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in dict(data).items() if k in known})


def held_out_start(activation_folder: str | Path) -> int:
    """The first tokenization sequence after the rows of an activation set.

    Extraction reads sequences in order, so the last row's sequence index is the largest.
    """
    from mistudio.activations.format import ActivationSet

    aset = ActivationSet(activation_folder)
    if aset.num_rows == 0:
        return 0
    return int(aset.positions(aset.num_rows - 1, aset.num_rows)[0, 0]) + 1


def special_token_ids(meta: dict, tokenizer=None) -> list[int]:
    """Structural special tokens (SAELens: BOS, EOS, PAD, SEP, decoder start)."""
    ids = set()
    for attr in ("bos_token_id", "eos_token_id", "pad_token_id", "sep_token_id",
                 "decoder_start_token_id"):
        for source in (meta, tokenizer):
            value = (source.get(attr) if isinstance(source, dict)
                     else getattr(source, attr, None))
            if isinstance(value, int) and value >= 0:
                ids.add(int(value))
    return sorted(ids)


def batch_sequences(seq_len: int, vocab_size: int) -> int:
    """Sequences per forward pass so that one batch of float32 logits stays in budget."""
    tokens = max(1, min(MAX_BATCH_TOKENS, LOGITS_BUDGET_BYTES // (4 * max(1, vocab_size))))
    return max(1, tokens // max(1, seq_len))


def token_batches(tok, start_seq: int, n_tokens: int, batch_seqs: int
                  ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(tokens [b, T], lengths [b])`` from ``start_seq`` until ``n_tokens`` real tokens."""
    seen = 0
    seq = int(start_seq)
    while seq < tok.n_seq and seen < n_tokens:
        lengths = np.asarray(tok.lengths[seq:seq + batch_seqs]).astype(np.int64)
        # stop at the sequence that reaches the budget
        take = int(np.searchsorted(np.cumsum(lengths), n_tokens - seen)) + 1
        lengths = lengths[:take]
        tokens = np.asarray(tok.tokens[seq:seq + len(lengths)])
        seen += int(lengths.sum())
        yield tokens, lengths
        seq += len(lengths)


class _Accumulator:
    """Sums over kept positions (float64), then the means and scores."""

    def __init__(self):
        self.sums = {name: 0.0 for name in ("ce_loss_with_sae", "ce_loss_without_sae",
                                             "ce_loss_with_ablation", "kl_div_with_sae",
                                             "kl_div_with_ablation")}
        self.ce_count = 0
        self.kl_count = 0

    def add(self, name: str, values, mask) -> None:
        self.sums[name] += float(values[mask].double().sum())

    def result(self) -> dict[str, float]:
        nan = float("nan")
        out = {k: (v / self.ce_count if self.ce_count else nan) if k.startswith("ce")
               else (v / self.kl_count if self.kl_count else nan) for k, v in self.sums.items()}
        denom = out["ce_loss_with_ablation"] - out["ce_loss_without_sae"]
        out["ce_loss_score"] = ((out["ce_loss_with_ablation"] - out["ce_loss_with_sae"]) / denom
                                if denom else nan)
        kl_abl = out["kl_div_with_ablation"]
        out["kl_div_score"] = (kl_abl - out["kl_div_with_sae"]) / kl_abl if kl_abl else nan
        out["eval_tokens"] = float(self.ce_count)
        return out


def _replace_hook(module, io: str, replace: Callable):
    """Register a hook that passes the hooked tensor through ``replace`` (returns the handle)."""
    if io == "output":
        def hook(_module, _args, output):
            if isinstance(output, (tuple, list)):
                return type(output)([replace(output[0]), *output[1:]])
            return replace(output)

        return module.register_forward_hook(hook)

    def pre_hook(_module, args, kwargs):
        if args:
            return (replace(args[0]), *args[1:]), kwargs
        for key in ("hidden_states", "hidden_state", "x", "input"):
            if key in kwargs:
                return args, {**kwargs, key: replace(kwargs[key])}
        raise RuntimeError("could not find the hidden-states input of the hooked module")

    return module.register_forward_pre_hook(pre_hook, with_kwargs=True)


class SplicedEvaluator:
    """Runs a loaded causal LM clean, with a reconstruction spliced in, and zero-ablated.

    ``reconstruct(x [N, d_in] float32) -> [N, d_out]`` maps activations read at
    ``hook_name`` to the activations written at ``hook_name_out`` (the same hook for SAEs).
    """

    def __init__(self, model, hook_name: str, hook_name_out: str = "",
                 special_ids: list[int] | None = None):
        from mistudio.models import hooks

        self.model = model
        cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") \
            else model.config
        n_layers = int(getattr(cfg, "num_hidden_layers", 0) or getattr(cfg, "n_layer", 0))
        self.in_target = hooks.resolve(hook_name, cfg.model_type, n_layers)
        self.out_target = (hooks.resolve(hook_name_out, cfg.model_type, n_layers)
                           if hook_name_out and hook_name_out != hook_name else self.in_target)
        self.in_module = hooks.get_module(model, self.in_target.module_path)
        self.out_module = hooks.get_module(model, self.out_target.module_path)
        self.special_ids = list(special_ids or [])
        self.device = next(model.parameters()).device
        self.lease = None  # the pool's lease on the model (open_evaluator), closed by close()

    def close(self) -> None:
        """Let the pool evict the model again (idempotent)."""
        if self.lease is not None:
            self.lease.close()

    @contextlib.contextmanager
    def _spliced(self, reconstruct: Callable, keep):
        """Replace the output hook's tensor by the reconstruction at the kept positions."""
        import torch

        state: dict = {"calls": 0}

        def capture(t):
            state["x"] = t
            return t

        def splice(t):
            x = state.get("x") if self.out_target is not self.in_target else t
            if x is None or x.shape[:2] != t.shape[:2]:
                raise UserError("The transcoder's input hook point did not run before its "
                                "output hook point.",
                                hint="Evaluate transcoders whose input comes before the output "
                                "(e.g. MLP input -> MLP output).")
            flat = x.reshape(-1, x.shape[-1]).float()
            recon = reconstruct(flat)
            if recon.shape[-1] != t.shape[-1]:
                raise UserError(f"The SAE writes vectors of width {recon.shape[-1]}, but the hook "
                                f"point {self.out_target.name} has width {t.shape[-1]}.",
                                hint="Evaluate the SAE on the model and hook point it was "
                                "trained on.")
            recon = recon.reshape(t.shape).to(t.dtype)
            state["calls"] += 1
            return torch.where(keep[..., None], recon, t)

        handles = []
        try:
            if self.out_target is not self.in_target:
                handles.append(_replace_hook(self.in_module, self.in_target.io, capture))
            handles.append(_replace_hook(self.out_module, self.out_target.io, splice))
            yield state
        finally:
            for h in handles:
                h.remove()

    @contextlib.contextmanager
    def _ablated(self):
        import torch

        handle = _replace_hook(self.out_module, self.out_target.io, torch.zeros_like)
        try:
            yield
        finally:
            handle.remove()

    def _logits(self, ids, attn):
        kwargs = {"use_cache": False}
        if attn is not None:
            kwargs["attention_mask"] = attn
        return self.model(input_ids=ids, **kwargs).logits.float()

    def run(self, reconstruct: Callable, batches, *, check_cancelled: Callable | None = None,
            on_batch: Callable | None = None) -> dict[str, float]:
        """Average CE/KL over ``batches`` of ``(tokens [b, T], lengths [b])``; returns metrics."""
        import torch
        import torch.nn.functional as F

        acc = _Accumulator()
        with torch.inference_mode():
            for tokens, lengths in batches:
                if check_cancelled:
                    check_cancelled()
                ids = torch.from_numpy(np.ascontiguousarray(tokens).astype(np.int64)).to(self.device)
                T = ids.shape[1]
                real = torch.arange(T, device=self.device)[None, :] < torch.from_numpy(
                    lengths).to(self.device)[:, None]
                attn = real.long() if not bool(real.all()) else None
                keep = real.clone()
                for sid in self.special_ids:
                    keep &= ids != sid
                ce_mask = keep[:, :-1] & real[:, 1:]
                targets = ids[:, 1:, None]
                logp = F.log_softmax(self._logits(ids, attn), dim=-1)
                acc.add("ce_loss_without_sae", -logp[:, :-1].gather(-1, targets).squeeze(-1),
                        ce_mask)
                p = logp.exp()
                for name, hooked in (("sae", self._spliced(reconstruct, keep)),
                                     ("ablation", self._ablated())):
                    with hooked as state:
                        logq = F.log_softmax(self._logits(ids, attn), dim=-1)
                    if name == "sae" and not state["calls"]:
                        raise UserError(f"The hook point {self.out_target.name} never ran in "
                                        "the forward pass.",
                                        hint="Check the SAE's hook point for this model.")
                    acc.add(f"ce_loss_with_{name}",
                            -logq[:, :-1].gather(-1, targets).squeeze(-1), ce_mask)
                    acc.add(f"kl_div_with_{name}", (p * (logp - logq)).sum(-1), keep)
                    del logq
                acc.ce_count += int(ce_mask.sum())
                acc.kl_count += int(keep.sum())
                if on_batch:
                    on_batch(acc.ce_count)
        return acc.result()


# ---------------------------------------------------------------------- model + data


def open_evaluator(spec: EvalSpec, device: str, *, check_tokenizer: bool = True):
    """Load the model (the process's pool) and the tokenization; returns ``(evaluator, tok)``.

    The evaluator leases the model, so no other job's load evicts it while it is in use;
    ``evaluator.close()`` gives it back to the pool (it stays loaded for the next user)."""
    import torch

    from mistudio import hardware
    from mistudio.data.tokenized import TokenizedDataset, tokenizer_fingerprint
    from mistudio.models.pool import MODEL_POOL

    if not Path(spec.model_folder).is_dir():
        raise UserError(f"The model folder {spec.model_folder} no longer exists.",
                        hint="Add the model again in the Models tab.")
    try:
        tok = TokenizedDataset(Path(spec.tokenization))
    except FileNotFoundError:
        raise UserError(f"The tokenization {spec.tokenization} no longer exists.",
                        hint="Tokenize the dataset again or choose another tokenization.") from None
    dtype = hardware.resolve_dtype(spec.model_dtype, device)
    # Loading initialises weights from the global RNG first: keep a training's RNG untouched.
    with torch.random.fork_rng(devices=[]):
        lease = MODEL_POOL.lease(spec.model_folder, dtype=dtype, device=device,
                                 trust_remote_code=spec.trust_remote_code)
    loaded = lease.loaded
    try:
        if check_tokenizer and tok.fingerprint != tokenizer_fingerprint(loaded.tokenizer):
            raise UserError(
                f"The tokenization {Path(spec.tokenization).name} was made with another "
                f"tokenizer than the model {spec.model_name or Path(spec.model_folder).name}'s.",
                hint="Choose a tokenization made with this model's tokenizer.")
        evaluator = SplicedEvaluator(loaded.model, spec.hook_name, spec.hook_name_out,
                                     special_token_ids(tok.meta, loaded.tokenizer))
    except BaseException:
        lease.close()
        raise
    evaluator.lease = lease
    return evaluator, tok


def evaluate_reconstruction(spec: EvalSpec, reconstruct: Callable, n_tokens: int, device: str,
                            *, evaluator=None, tok=None, check_cancelled: Callable | None = None,
                            on_progress: Callable | None = None,
                            log: Callable | None = None) -> tuple[dict, bool | None]:
    """Open the model (unless given) and evaluate on up to ``n_tokens`` tokens.

    Returns ``(metrics, held_out)``; metrics include ``eval_tokens`` (CE positions averaged).
    ``on_progress(done, total)`` follows the tokens; ``log(message, level)`` gets warnings.
    """
    if n_tokens < 1:
        raise UserError("Evaluate on at least one token.", hint="Set eval tokens above 0.")
    if evaluator is None or tok is None:
        evaluator, tok = open_evaluator(spec, device)
        try:
            return evaluate_reconstruction(spec, reconstruct, n_tokens, device,
                                           evaluator=evaluator, tok=tok,
                                           check_cancelled=check_cancelled,
                                           on_progress=on_progress, log=log)
        finally:
            evaluator.close()
    start = spec.start_seq if spec.start_seq < tok.n_seq else 0
    held_out = spec.held_out if start == spec.start_seq else False
    if start != spec.start_seq and log is not None:
        log("Every sequence of the tokenization was used for training: the evaluation runs "
            "on training tokens (not held out).", "warning")
    cfg = evaluator.model.config
    vocab = int((cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg).vocab_size)
    batches = token_batches(tok, start, n_tokens, batch_sequences(tok.seq_len, vocab))
    metrics = evaluator.run(reconstruct, batches, check_cancelled=check_cancelled,
                            on_batch=(lambda done: on_progress(min(done, n_tokens), n_tokens))
                            if on_progress else None)
    return metrics, held_out


def sae_reconstructor(sae, scale_in: float = 1.0, scale_out: float = 1.0) -> Callable:
    """Raw activations -> raw reconstruction, for an SAE in normalized units (training)."""
    def reconstruct(x):
        return sae(x * scale_in) / scale_out if (scale_in, scale_out) != (1.0, 1.0) else sae(x)

    return reconstruct


# ---------------------------------------------------------------------- the job


def evaluate_job(params: dict, ctx) -> dict:
    """Job ``sae.evaluate``. Params: ``sae_id``, ``sae_folder``, ``spec`` (an
    :class:`EvalSpec` dict), ``tokens``. Returns ``{"sae_id", "metrics", ...}``."""
    from mistudio import hardware
    from mistudio.sae.formats import load_sae

    spec = EvalSpec.from_dict(params["spec"])
    n_tokens = int(params.get("tokens") or 0)
    device = hardware.resolve_device(params.get("device") or ctx.device)
    sae, _info = load_sae(params["sae_folder"], device=device)
    ctx.progress(0, n_tokens, f"Loading {spec.model_name or Path(spec.model_folder).name} "
                 f"on {device}...")
    evaluator, tok = open_evaluator(spec, device)
    try:
        return _evaluate_opened(params, ctx, spec, sae, evaluator, tok, n_tokens, device)
    finally:
        evaluator.close()


def _evaluate_opened(params: dict, ctx, spec: EvalSpec, sae, evaluator, tok, n_tokens: int,
                     device: str) -> dict:
    import torch

    width = hook_width(evaluator, tok)
    if sae.d_in != width:
        raise UserError(f"The SAE reads vectors of width {sae.d_in}, but {spec.hook_name} of "
                        f"{spec.model_name or 'the model'} has width {width}.",
                        hint="Evaluate the SAE on the model and hook point it was trained on.")
    ctx.log(f"Evaluating with the SAE spliced in at {spec.hook_name}"
            + (f" -> {spec.hook_name_out}" if spec.hook_name_out else "")
            + f" on up to {n_tokens:,} tokens from sequence {spec.start_seq}.")
    with torch.no_grad():
        metrics, held_out = evaluate_reconstruction(
            spec, sae_reconstructor(sae), n_tokens, device, evaluator=evaluator, tok=tok,
            check_cancelled=ctx.check_cancelled, log=ctx.log,
            on_progress=lambda done, total: ctx.progress(done, total,
                                                         f"evaluating: {done:,} tokens"))
    ctx.metric(0, **metrics)
    ctx.log("CE loss score {ce_loss_score:.4f}, KL score {kl_div_score:.4f} (CE clean "
            "{ce_loss_without_sae:.4f}, with SAE {ce_loss_with_sae:.4f}, zero-ablated "
            "{ce_loss_with_ablation:.4f}) on {eval_tokens:,.0f} tokens.".format(**metrics))
    return {"sae_id": params.get("sae_id", ""), "metrics": metrics, "spec": spec.to_dict(),
            "tokens": int(metrics["eval_tokens"]), "held_out": held_out}


def hook_width(evaluator: SplicedEvaluator, tok) -> int:
    """Width of the activations at the input hook point (one short forward pass)."""
    import torch

    from mistudio.activations.capture import capture_once

    ids = torch.from_numpy(np.asarray(tok.tokens[:1, :8]).astype(np.int64)).to(evaluator.device)
    acts = capture_once(evaluator.model, [evaluator.in_target], ids)
    return int(acts[evaluator.in_target.name].shape[-1])
