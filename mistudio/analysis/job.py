"""The job ``features.analyze``: one SAE over one tokenization -> ``features/<fa_id>/``.

Steps (each resumable; a re-run with the same folder continues):

1. validate the inputs (tokenizer, hook point, widths) before anything is written;
2. the streaming pass (:mod:`mistudio.analysis.stream`): forward stopped at the hook (or an
   activation set), encode, per-feature sums, sparse codes spilled to ``work/``;
3. the per-feature pass (:mod:`mistudio.analysis.per_feature`) block by block (each block's
   arrays are flushed and recorded in ``work/blocks.json``);
4. weight statistics (:mod:`mistudio.analysis.weights`), random contexts, ``vocab.json``,
   ``meta.json`` and the ``COMPLETE`` marker; ``work/`` is removed.

The file layout is described in :mod:`mistudio.analysis.results`.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from mistudio.analysis import per_feature, weights
from mistudio.analysis.codes import CodeSpill
from mistudio.analysis.results import COMPLETE_MARKER, META_FILE, VOCAB_FILE
from mistudio.analysis.stream import STAT_NAMES, StreamPlan, plan_rows, run_stream
from mistudio.errors import UserError
from mistudio.paths import atomic_write_json, human_bytes

KIND = "features.analyze"
#: Neuronpedia's default: 24,576 prompts of 128 tokens.
DEFAULT_MAX_TOKENS = 24_576 * 128


@dataclass
class AnalysisParams:
    """The job's parameters (JSON)."""

    analysis_id: str
    folder: str
    sae_folder: str
    model_folder: str
    tokenization: str
    hook_name: str
    sae_id: str = ""
    model_id: str = ""
    model_name: str = ""
    trust_remote_code: bool = False
    model_dtype: str = "auto"
    device: str = "auto"
    activation_path: str = ""
    max_tokens: int = DEFAULT_MAX_TOKENS  # 0: all the tokenization has
    seed: int = 0
    batch_size: int = 16  # sequences per forward pass
    chunk_rows: int = 65_536  # spill chunk (a checkpoint after each)
    context_before: int = 15
    context_after: int = 4
    n_top: int = 40
    n_intervals: int = 10
    n_quantiles: int = 10
    per_interval: int = 10
    n_neighbours: int = 10
    n_random: int = 1000
    block_bytes: int = 256 * 2**20  # correlation accumulator per feature block
    block_features: int = 0  # force a block size (tests); 0: from block_bytes

    @classmethod
    def from_dict(cls, data: dict) -> "AnalysisParams":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in dict(data).items() if k in known})

    def to_dict(self) -> dict:
        return asdict(self)


def block_size(p: AnalysisParams, d_sae: int) -> int:
    if p.block_features:
        return max(1, min(d_sae, int(p.block_features)))
    return max(1, min(d_sae, p.block_bytes // (8 * d_sae)))


def estimate_memory(d_in: int, d_sae: int, n_tokens: int, p: AnalysisParams, *,
                    mean_l0: float = 64.0, vocab: int = 50_000) -> dict[str, int]:
    """Bytes needed: host working set, the spill on disk, the results folder."""
    entries = n_tokens * mean_l0
    block = block_size(p, d_sae)
    host = (8 * block * d_sae  # correlation accumulator
            + int(entries * block / d_sae * 40)  # the block's entries, sorted copies
            + p.chunk_rows * mean_l0 * 40  # one spill chunk + pairs
            + 4 * d_sae * (2 * d_in + 8)  # the SAE
            + 4 * 1024 * max(vocab, d_sae))  # a logit-lens / cosine block
    W = p.context_before + 1 + p.context_after
    per_feature_ex = p.n_top + (p.n_intervals + p.n_quantiles) * p.per_interval
    results = d_sae * (per_feature_ex * (12 + 2 * W) + 4 * 300)
    return {"host": int(host), "spill": int(entries * 8 + n_tokens * 16),
            "results": int(results), "entries": int(entries)}


def excluded_token_ids(tok_meta: dict, tokenizer) -> list[int]:
    """BOS and the padding token: never analysed."""
    out = set()
    for name in ("bos_token_id", "pad_token_id"):
        for source in (tok_meta, tokenizer):
            v = source.get(name) if isinstance(source, dict) else getattr(source, name, None)
            if isinstance(v, int) and v >= 0:
                out.add(v)
    return sorted(out)


def model_text_config(model):
    cfg = model.config
    return cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg


def validate(sae, model, tokenizer, tok, hook_name: str, *, model_name: str = "",
             activation_meta: dict | None = None):
    """Every mismatch as a UserError naming both sides; returns the resolved hook target."""
    from mistudio.activations.capture import capture_once
    from mistudio.data.tokenized import tokenizer_fingerprint
    from mistudio.models import hooks

    model_label = model_name or "the model"
    if tok.fingerprint != tokenizer_fingerprint(tokenizer):
        raise UserError(
            f"The tokenization {tok.folder.name} was made with the tokenizer "
            f"{tok.meta.get('tokenizer', '?')!r}, not with {model_label}'s; its token ids "
            "would mean other words.",
            hint="Tokenize a dataset with this model's tokenizer and analyse on that.")
    cfg = model_text_config(model)
    n_layers = int(getattr(cfg, "num_hidden_layers", 0) or getattr(cfg, "n_layer", 0))
    target = hooks.resolve(hook_name, cfg.model_type, n_layers)
    hooks.get_module(model, target.module_path)
    import torch

    ids = torch.from_numpy(np.asarray(tok.tokens[:1, :4]).astype(np.int64))
    ids = ids.to(next(model.parameters()).device)
    width = int(capture_once(model, [target], ids)[target.name].shape[-1])
    if width != sae.d_in:
        raise UserError(f"The SAE reads vectors of width {sae.d_in}, but {hook_name} of "
                        f"{model_label} has width {width}.",
                        hint="Analyse the SAE with the model and hook point it was trained on.")
    if activation_meta is not None:
        hp = activation_meta.get("hook_point") or activation_meta.get("hook_name")
        if hp and hp != hook_name:
            raise UserError(f"The activation set was extracted at {hp}, but the SAE reads "
                            f"{hook_name}.", hint="Pick an activation set of the SAE's hook "
                            "point, or let the analysis run the model.")
        at = str(activation_meta.get("tokenization") or "")
        if at and Path(at).resolve() != Path(tok.folder).resolve():
            raise UserError("The activation set was extracted from another tokenization "
                            f"({Path(at).name}) than the one analysed ({tok.folder.name}).",
                            hint="Analyse the activation set's own tokenization.")
    return target


def run(params: dict, ctx) -> dict:
    """Job ``features.analyze`` (params: :class:`AnalysisParams`)."""
    import torch

    from mistudio import hardware
    from mistudio.data.tokenized import TokenizedDataset
    from mistudio.models.pool import MODEL_POOL
    from mistudio.sae.formats import load_sae

    p = AnalysisParams.from_dict(params)
    folder = Path(p.folder)
    if (folder / COMPLETE_MARKER).exists():
        ctx.log("This analysis is already complete.")
        return json.loads((folder / META_FILE).read_text(encoding="utf-8"))
    t_start = time.monotonic()
    device = hardware.resolve_device(p.device if p.device != "auto" else ctx.device)
    dtype = hardware.resolve_dtype(p.model_dtype if p.model_dtype != "auto" else ctx.dtype,
                                   device)
    try:
        tok = TokenizedDataset(Path(p.tokenization))
    except FileNotFoundError:
        raise UserError(f"The tokenization {p.tokenization} does not exist.",
                        hint="Tokenize a dataset for the model first.") from None
    sae, _info = load_sae(p.sae_folder, device=device)
    ctx.progress(0, None, f"Loading {p.model_name or Path(p.model_folder).name} on {device}...")
    with torch.random.fork_rng(devices=[]):
        lease = MODEL_POOL.lease(p.model_folder, dtype=dtype, device=device,
                                 trust_remote_code=p.trust_remote_code)
    # leased until the last pass that runs it: no other job's load evicts it meanwhile
    try:
        loaded = lease.loaded
        model, tokenizer = loaded.model, loaded.tokenizer
        aset = None
        if p.activation_path:
            from mistudio.activations.format import ActivationSet

            aset = ActivationSet(p.activation_path)
        target = validate(sae, model, tokenizer, tok, p.hook_name, model_name=p.model_name,
                          activation_meta=aset.meta if aset is not None else None)
        excluded = excluded_token_ids(tok.meta, tokenizer)
        n_rows, n_seq = plan_rows(tok, excluded, int(p.max_tokens or 0))
        if n_rows <= 0:
            raise UserError("The tokenization has no tokens to analyse (after leaving out BOS "
                            "and padding).", hint="Pick another tokenization.")
        cfg = model_text_config(model)
        est = estimate_memory(sae.d_in, sae.d_sae, n_rows, p, mean_l0=float(getattr(sae, "k", 64)),
                              vocab=int(getattr(cfg, "vocab_size", 50_000)))
        ctx.log(f"Analysing {sae.d_sae:,} features on {n_rows:,} tokens ({n_seq:,} sequences) "
                f"at {p.hook_name} on {device}: about {human_bytes(est['host'])} of memory, "
                f"{human_bytes(est['spill'])} of temporary disk, {human_bytes(est['results'])} of "
                "results.")
        work = folder / "work"
        work.mkdir(parents=True, exist_ok=True)
        plan = StreamPlan(n_rows=n_rows, n_seq=n_seq, seq_len=tok.seq_len, excluded_ids=excluded,
                          batch_size=max(1, int(p.batch_size)), chunk_rows=int(p.chunk_rows))
        t_stream = time.monotonic()
        stats, n_chunks = run_stream(sae=sae, tok=tok, plan=plan, work=work, device=device, ctx=ctx,
                                     model=model, target=target, aset=aset)
        stream_s = time.monotonic() - t_stream
        pcfg = per_feature.PassConfig(
            d_sae=sae.d_sae, n_rows=n_rows, seq_len=tok.seq_len, key_space=n_seq * tok.seq_len,
            n_top=p.n_top, n_intervals=p.n_intervals, n_quantiles=p.n_quantiles,
            per_interval=p.per_interval, n_neighbours=p.n_neighbours, before=p.context_before,
            after=p.context_after, seed=p.seed)
        t_feat = time.monotonic()
        _per_feature_pass(work, folder, n_chunks, pcfg, stats, block_size(p, sae.d_sae), device,
                          ctx)
        t_weights = time.monotonic()
        ctx.progress(n_rows, n_rows, "Logit lens, decoder neighbours...")
        _weight_stats(folder, sae, model, target, cfg.model_type, p, ctx)
    finally:
        lease.close()
    _random_contexts(folder, CodeSpill(work), n_chunks, n_rows, pcfg, p.n_random, p.seed)
    timings = {"stream_s": stream_s, "features_s": t_weights - t_feat,
               "weights_s": time.monotonic() - t_weights}
    np.save(folder / "tokens.npy", np.ascontiguousarray(np.asarray(tok.tokens[:n_seq]),
                                                         dtype=np.int32))
    for name in STAT_NAMES:
        np.save(folder / f"{name}.npy", stats[name])
    vocab = _vocab_strings(tokenizer, int(getattr(cfg, "vocab_size", 0) or len(tokenizer)))
    atomic_write_json(folder / VOCAB_FILE, vocab)
    elapsed = time.monotonic() - t_start
    meta = _meta(p, sae, stats, n_rows, n_seq, tok, excluded, target, elapsed, timings)
    atomic_write_json(folder / META_FILE, meta)
    (folder / COMPLETE_MARKER).write_text("ok", encoding="utf-8")
    shutil.rmtree(work, ignore_errors=True)
    ctx.log(f"Analysed {n_rows:,} tokens in {elapsed:.1f} s ({meta['tokens_per_s']:,.0f} "
            f"tokens/s); {meta['dead']:,} dead features, mean L0 {meta['mean_l0']:.1f}.")
    return {k: meta[k] for k in ("analysis_id", "n_tokens", "dead", "mean_l0", "elapsed_s",
                                 "tokens_per_s", "d_sae")}


def _per_feature_pass(work: Path, folder: Path, n_chunks: int, cfg, stats, block: int,
                      device: str, ctx) -> None:
    shapes = per_feature.output_shapes(cfg)
    done_file = work / "blocks.json"
    try:
        done = set(json.loads(done_file.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        done = set()
    out = {}
    for name, (shape, dtype) in shapes.items():
        path = work / f"{name}.npy"
        mode = "r+" if done and path.exists() else "w+"
        out[name] = np.lib.format.open_memmap(path, mode=mode, dtype=dtype, shape=shape)
    spill = CodeSpill(work)
    starts = list(range(0, cfg.d_sae, block))
    for i, b0 in enumerate(starts):
        if b0 in done:
            continue
        b1 = min(cfg.d_sae, b0 + block)
        ctx.progress(i, len(starts), f"per-feature pass: features {b0:,}-{b1 - 1:,}")
        per_feature.run_block(spill, n_chunks, b0, b1, cfg, stats, out, device,
                              check_cancelled=ctx.check_cancelled)
        for arr in out.values():
            arr.flush()
        done.add(b0)
        atomic_write_json(done_file, sorted(done))
        ctx.check_cancelled()
    out.clear()  # drops the memory maps before their files move
    for name in shapes:
        (work / f"{name}.npy").replace(folder / f"{name}.npy")


def _weight_stats(folder: Path, sae, model, target, model_type: str, p, ctx) -> None:
    import torch

    with torch.no_grad():
        w_dec = sae.W_dec.detach().float()
        dirs = weights.residual_directions(w_dec, model, target.hook_type, target.layer,
                                           model_type)
        for conv in ("raw", "folded"):
            w_u = weights.unembedding(model, conv, model_type).to(dirs.device)
            lens = weights.logit_lens(dirs, w_u, check_cancelled=ctx.check_cancelled)
            for which in ("top", "bottom"):
                np.save(folder / f"logit_{which}_ids_{conv}.npy", lens[f"{which}_ids"])
                np.save(folder / f"logit_{which}_values_{conv}.npy", lens[f"{which}_values"])
            np.save(folder / f"logit_hist_{conv}.npy", lens["hist"])
            np.save(folder / f"logit_range_{conv}.npy", lens["range"])
        ids, vals = weights.decoder_neighbours(w_dec, p.n_neighbours,
                                               check_cancelled=ctx.check_cancelled)
        np.save(folder / "cos_ids.npy", ids)
        np.save(folder / "cos_values.npy", vals)
        if target.hook_type == "mlp_post":
            n_ids, n_vals, n_pct = weights.neuron_alignment(w_dec)
            np.save(folder / "neuron_ids.npy", n_ids)
            np.save(folder / "neuron_values.npy", n_vals)
            np.save(folder / "neuron_l1_pct.npy", n_pct)


def _random_contexts(folder: Path, spill: CodeSpill, n_chunks: int, n_rows: int, cfg,
                     n_random: int, seed: int) -> None:
    """``n_random`` analysed tokens drawn by seed, with the sparse codes of their windows."""
    rng = np.random.default_rng(seed)
    centres = np.sort(rng.choice(n_rows, size=min(n_random, n_rows), replace=False))
    keys_all = np.concatenate([c.keys for c in spill.chunks(n_chunks)])
    ckeys = keys_all[centres]
    offsets = np.arange(-cfg.before, cfg.after + 1)
    pos = (ckeys % cfg.seq_len)[:, None] + offsets[None, :]
    query = ckeys[:, None] + offsets[None, :]
    at = np.searchsorted(keys_all, query).clip(0, len(keys_all) - 1)
    hit = (pos >= 0) & (pos < cfg.seq_len) & (keys_all[at] == query)
    want = np.where(hit, at, -1).reshape(-1)  # global row of each window token, or -1
    lens = np.zeros(len(want), dtype=np.int64)
    feats, vals = [[] for _ in want], [[] for _ in want]
    order = np.argsort(want)
    for chunk in spill.chunks(n_chunks):
        lo, hi = chunk.first_row, chunk.first_row + chunk.rows
        a, b = np.searchsorted(want[order], [lo, hi])
        for slot in order[a:b]:
            r = want[slot] - lo
            s, e = chunk.offsets[r], chunk.offsets[r + 1]
            feats[slot], vals[slot] = chunk.features[s:e], chunk.values[s:e]
            lens[slot] = e - s
    np.save(folder / "random_seq.npy", (ckeys // cfg.seq_len).astype(np.int32))
    np.save(folder / "random_pos.npy", (ckeys % cfg.seq_len).astype(np.int32))
    np.save(folder / "random_codes_offsets.npy", np.concatenate([[0], np.cumsum(lens)]))
    np.save(folder / "random_codes_features.npy",
            np.concatenate([np.asarray(f, np.int32) for f in feats] or [np.zeros(0, np.int32)]))
    np.save(folder / "random_codes_values.npy",
            np.concatenate([np.asarray(v, np.float32) for v in vals] or
                           [np.zeros(0, np.float32)]))


def _vocab_strings(tokenizer, vocab_size: int) -> list[str]:
    """Display string of every id the model can output (ids the tokenizer lacks: <id>)."""
    known = len(tokenizer)
    return [tokenizer.decode([i]) if i < known else f"<{i}>"
            for i in range(max(vocab_size, known))]


def _density_histogram(count: np.ndarray, n_rows: int) -> dict:
    alive = count[count > 0] / max(n_rows, 1)
    if len(alive) == 0:
        return {"counts": [], "edges": []}
    counts, edges = np.histogram(np.log10(alive), bins=per_feature.HIST_BINS)
    return {"counts": counts.tolist(), "edges": edges.tolist()}


def _meta(p, sae, stats, n_rows, n_seq, tok, excluded, target, elapsed, timings) -> dict:
    import platform

    from importlib.metadata import version

    import torch

    from mistudio import __version__
    from mistudio.store.db import now_iso

    count = stats["firing_count"]
    return {
        "analysis_id": p.analysis_id, "sae_id": p.sae_id, "sae_folder": p.sae_folder,
        "architecture": getattr(sae, "architecture", ""), "d_in": sae.d_in, "d_sae": sae.d_sae,
        "hook_name": p.hook_name, "hook_type": target.hook_type, "model_id": p.model_id,
        "model_name": p.model_name, "model_folder": p.model_folder,
        "tokenization": str(tok.folder), "activation_path": p.activation_path,
        "n_tokens": int(n_rows), "n_seq": int(n_seq), "seq_len": tok.seq_len,
        "max_tokens": int(p.max_tokens or 0), "seed": int(p.seed),
        "context_before": p.context_before, "context_after": p.context_after,
        "n_top": p.n_top, "n_intervals": p.n_intervals, "n_quantiles": p.n_quantiles,
        "per_interval": p.per_interval, "n_neighbours": p.n_neighbours,
        "n_random": int(min(p.n_random, n_rows)), "excluded_token_ids": excluded,
        "mean_l0": float(stats["l0_total"]) / max(n_rows, 1), "dead": int((count == 0).sum()),
        "logit_lens": {"raw": "decoder direction @ W_U as stored (sae_vis)",
                       "folded": "decoder direction @ diag(final norm gain) W_U "
                                 "(TransformerLens fold_ln)",
                       "mapped_through_mlp_out": target.hook_type == "mlp_post"},
        "density_histogram": _density_histogram(count, n_rows),
        "versions": {"mistudio": __version__, "torch": torch.__version__,
                     "transformers": version("transformers"), "numpy": np.__version__,
                     "python": platform.python_version()},
        "elapsed_s": float(elapsed), **{k: float(v) for k, v in timings.items()},
        "tokens_per_s": float(n_rows / max(elapsed, 1e-9)), "created_at": now_iso(),
    }
