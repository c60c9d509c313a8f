"""The streaming pass: tokens -> stopped forward at the hook -> encode -> sums + spilled codes.

Every analysed token (a real token that is not BOS or padding) gets a row number in reading
order. Per batch, the SAE's non-zero activations update per-feature counts, sums, sums of
squares and maxima (on the device) and go to the spill (host, then disk in chunks).

Resume: after each chunk is written, ``work/checkpoint.json`` records the chunks kept, the
next sequence and the rows done, and ``work/stats.npz`` the sums; a new run with the same
folder drops later chunks and continues there. With ``activation_path`` the rows come from
an extracted activation set (same hook point, same tokenization) instead of the model.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mistudio.analysis.codes import ChunkBuilder, CodeSpill, encode_csr
from mistudio.errors import UserError
from mistudio.paths import atomic_path, atomic_write_json
from mistudio.reliability import crash_point

STAT_NAMES = ("firing_count", "sum_act", "sumsq_act", "max_act")


@dataclass
class StreamPlan:
    n_rows: int  # tokens to analyse
    n_seq: int  # tokenization rows that hold them
    seq_len: int
    excluded_ids: list[int]
    batch_size: int  # sequences per forward pass
    chunk_rows: int  # rows per spill chunk (a checkpoint after each)


def valid_mask(tokens: np.ndarray, lengths: np.ndarray, excluded: list[int]) -> np.ndarray:
    """True at real tokens that are analysed (not padding, not an excluded special token)."""
    mask = np.arange(tokens.shape[1])[None, :] < lengths[:, None]
    for tid in excluded:
        mask &= tokens != int(tid)
    return mask


def plan_rows(tok, excluded: list[int], max_tokens: int, chunk: int = 4096) -> tuple[int, int]:
    """(rows to analyse, sequences they span)."""
    total = 0
    for s in range(0, tok.n_seq, chunk):
        e = min(tok.n_seq, s + chunk)
        per_seq = valid_mask(np.asarray(tok.tokens[s:e]), np.asarray(tok.lengths[s:e]),
                             excluded).sum(axis=1)
        cum = total + np.cumsum(per_seq)
        if max_tokens and cum[-1] >= max_tokens:
            return int(max_tokens), s + int(np.searchsorted(cum, max_tokens)) + 1
        total = int(cum[-1])
    return total, tok.n_seq


class FeatureSums:
    """Per-feature count, sum, sum of squares and max of the non-zero activations."""

    def __init__(self, d_sae: int, device: str):
        import torch

        self.count = torch.zeros(d_sae, dtype=torch.int64, device=device)
        self.sum = torch.zeros(d_sae, dtype=torch.float64, device=device)
        self.sumsq = torch.zeros(d_sae, dtype=torch.float64, device=device)
        self.max = torch.zeros(d_sae, dtype=torch.float32, device=device)
        self.l0_total = 0

    def add(self, features, values) -> None:
        f = features.long()
        v = values.double()
        self.count.index_add_(0, f, torch_ones_like(f))
        self.sum.index_add_(0, f, v)
        self.sumsq.index_add_(0, f, v * v)
        self.max.scatter_reduce_(0, f, values.float(), reduce="amax", include_self=True)
        self.l0_total += int(f.numel())

    def to_numpy(self) -> dict[str, np.ndarray]:
        return {"firing_count": self.count.cpu().numpy(), "sum_act": self.sum.cpu().numpy(),
                "sumsq_act": self.sumsq.cpu().numpy(), "max_act": self.max.cpu().numpy(),
                "l0_total": np.int64(self.l0_total)}

    def load(self, data: dict) -> None:
        import torch

        dev = self.count.device
        self.count.copy_(torch.from_numpy(np.asarray(data["firing_count"])).to(dev))
        self.sum.copy_(torch.from_numpy(np.asarray(data["sum_act"])).to(dev))
        self.sumsq.copy_(torch.from_numpy(np.asarray(data["sumsq_act"])).to(dev))
        self.max.copy_(torch.from_numpy(np.asarray(data["max_act"])).to(dev))
        self.l0_total = int(data["l0_total"])


def torch_ones_like(t):
    import torch

    return torch.ones_like(t)


class StreamCheckpoint:
    """``work/checkpoint.json`` + ``work/stats_<chunks>.npz``: where the streaming pass stands.

    The sums file is named by its chunk count and ``checkpoint.json`` names it, so the two
    always agree: a process killed between writing them left the previous pair in force (one
    ``stats.npz`` rewritten in place before the JSON was, after a kill, sums counting a chunk
    that the resume then streamed again)."""

    def __init__(self, work: Path):
        self.work = Path(work)
        self.file = self.work / "checkpoint.json"

    def load(self) -> dict | None:
        try:
            data = json.loads(self.file.read_text(encoding="utf-8"))
            with np.load(self.work / data.get("stats_file", "stats.npz")) as z:
                data["stats"] = {k: z[k] for k in z.files}
            return data
        except (OSError, ValueError, KeyError):
            return None

    def save(self, info: dict, sums: FeatureSums) -> None:
        name = f"stats_{int(info['chunks']):06d}{'_done' if info.get('done') else ''}.npz"
        with atomic_path(self.work / name) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, **sums.to_numpy())
        crash_point("analyze.stream.checkpoint")  # the new sums exist, the JSON names the old
        atomic_write_json(self.file, {**info, "stats_file": name})
        for old in self.work.glob("stats*.npz"):
            if old.name != name:
                old.unlink(missing_ok=True)


def _row_source_model(model, target, tok, plan: StreamPlan, start_seq: int, device: str):
    """Yield (next_seq, x [n, d] on device, keys [n] int64) from stopped forward passes."""
    import torch

    from mistudio.activations.capture import ActivationCapture

    with ActivationCapture(model, [target]) as cap:
        seq = start_seq
        while seq < plan.n_seq:
            end = min(plan.n_seq, seq + plan.batch_size)
            tokens = np.asarray(tok.tokens[seq:end])
            lengths = np.asarray(tok.lengths[seq:end])
            mask = valid_mask(tokens, lengths, plan.excluded_ids)
            ids = torch.from_numpy(tokens.astype(np.int64)).to(device)
            padded = bool((lengths < tok.seq_len).any())
            attn = (torch.from_numpy(np.arange(tok.seq_len)[None, :] < lengths[:, None])
                    .long().to(device) if padded else None)
            acts = cap.run(ids, attn)[target.name]
            b_idx, t_idx = np.nonzero(mask)
            if len(b_idx) == mask.size:
                x = acts.reshape(-1, acts.shape[-1])
            else:
                x = acts[torch.from_numpy(b_idx).to(device), torch.from_numpy(t_idx).to(device)]
            keys = (b_idx + seq).astype(np.int64) * tok.seq_len + t_idx
            yield end, x, keys
            seq = end


def _row_source_activations(aset, tok, plan: StreamPlan, start_seq: int, device: str,
                            rows_per_batch: int = 4096):
    """The same from an activation set: rows of sequences ``start_seq..`` whose tokens are
    analysed (an extraction that kept BOS has its BOS rows dropped here)."""
    import torch

    positions = aset.positions(0, aset.num_rows)
    start = int(np.searchsorted(positions[:, 0], start_seq))
    stop = int(np.searchsorted(positions[:, 0], plan.n_seq))
    i = start
    while i < stop:
        # whole sequences per batch (checkpoints sit on sequence boundaries)
        j = min(stop, i + rows_per_batch)
        if j < stop:  # end on a sequence boundary
            cut = positions[j, 0]
            j2 = int(np.searchsorted(positions[:, 0], cut, side="left"))
            j = j2 if j2 > i else int(np.searchsorted(positions[:, 0], cut, side="right"))
        pos = positions[i:j]
        tokens = np.asarray(tok.tokens[pos[:, 0], pos[:, 1]])
        keep = np.ones(len(pos), dtype=bool)
        for tid in plan.excluded_ids:
            keep &= tokens != int(tid)
        keep &= pos[:, 1] < np.asarray(tok.lengths[pos[:, 0]])
        x = torch.from_numpy(np.asarray(aset.rows(i, j), dtype=np.float32)[keep]).to(device)
        keys = pos[keep, 0].astype(np.int64) * tok.seq_len + pos[keep, 1]
        next_seq = int(positions[j, 0]) if j < stop else plan.n_seq
        yield next_seq, x, keys
        i = j


def run_stream(*, sae, tok, plan: StreamPlan, work: Path, device: str, ctx, model=None,
               target=None, aset=None) -> tuple[dict[str, np.ndarray], int]:
    """The streaming pass (resumable). Returns (per-feature sums as numpy, chunks written)."""
    import torch

    spill = CodeSpill(work)
    ckpt = StreamCheckpoint(work)
    sums = FeatureSums(sae.d_sae, device)
    state = ckpt.load()
    if state and state.get("done"):
        sums.load(state["stats"])
        return sums.to_numpy(), int(state["chunks"])
    if state:
        sums.load(state["stats"])
        n_chunks, start_seq, rows = int(state["chunks"]), int(state["next_seq"]), int(state["rows"])
        spill.truncate(n_chunks)
        ctx.log(f"Resuming the streaming pass at token {rows:,} (sequence {start_seq}).")
    else:
        spill.truncate(0)
        n_chunks, start_seq, rows = 0, 0, 0
    source = (_row_source_activations(aset, tok, plan, start_seq, device) if aset is not None
              else _row_source_model(model, target, tok, plan, start_seq, device))
    builder = ChunkBuilder(rows)
    t0, rows0 = time.monotonic(), rows

    def flush(next_seq: int, done: bool = False) -> None:
        nonlocal n_chunks, builder
        if builder.rows:
            spill.write(n_chunks, builder.build())
            n_chunks += 1
        builder = ChunkBuilder(rows)
        info = {"chunks": n_chunks, "next_seq": next_seq, "rows": rows, "done": done}
        ckpt.save(info, sums)
        ctx.checkpoint(**info)

    with torch.inference_mode():
        for next_seq, x, keys in source:
            ctx.pause_point()
            take = min(len(keys), plan.n_rows - rows)
            if take < len(keys):
                x, keys = x[:take], keys[:take]
            if x.shape[-1] != sae.d_in:
                raise UserError(f"The activations have width {x.shape[-1]}, but the SAE reads "
                                f"width {sae.d_in}.",
                                hint="Analyse the SAE on the hook point it was trained on.")
            offsets, features, values = encode_csr(sae, x.to(sae.W_dec.dtype))
            sums.add(features, values)
            builder.add(offsets.cpu().numpy(), features.cpu().numpy(), values.cpu().numpy(),
                        keys)
            rows += take
            rate = (rows - rows0) / max(time.monotonic() - t0, 1e-6)
            ctx.progress(rows, plan.n_rows, f"streaming pass: {rate:,.0f} tokens/s")
            if builder.rows >= plan.chunk_rows and rows < plan.n_rows:
                flush(next_seq)
            ctx.check_cancelled()
            if rows >= plan.n_rows:
                break
    if rows == 0:
        raise UserError("No tokens were analysed (every position was BOS or padding).",
                        hint="Pick another tokenization.")
    flush(plan.n_seq, done=True)
    return sums.to_numpy(), n_chunks
