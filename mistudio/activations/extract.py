"""The activation extraction job: a tokenization through a model, hook points to disk.

Speed: the forward pass stops after the deepest requested hook (``ActivationCapture``);
valid positions are selected and cast to the storage dtype on the device; on CUDA the rows
go into reusable pinned host buffers with non-blocking copies, and a background thread
waits for each copy and writes shards, so the GPU never waits on the disk. A small pool of
buffers bounds memory: when the writer falls behind, the loop waits for a free buffer.

Resume: shards end on batch (sequence) boundaries and record the next sequence to read;
re-running the job with the same output folders continues after the last shard that all
hook points completed. Cancelling writes the rows already buffered as a last shard first.
"""

from __future__ import annotations

import queue
import threading
import time
from pathlib import Path

import numpy as np

from mistudio.activations.capture import ActivationCapture
from mistudio.activations.format import (ActivationShardWriter, bytes_per_row, default_shard_rows,
                                         is_complete, read_shard_index, truncate_shards)
from mistudio.data.tokenized import TokenizedDataset, tokenizer_fingerprint
from mistudio.errors import JobCancelled, UserError
from mistudio.models import hooks
from mistudio.paths import check_free_space, human_bytes

BUFFER_SLOTS = 3  # batches in flight between the model and the disk


def _is_oom(exc: BaseException) -> bool:
    return type(exc).__name__ == "OutOfMemoryError" or "out of memory" in str(exc).lower()


class _BackgroundWriter:
    """Writes captured batches on its own thread; errors resurface in the job's thread."""

    def __init__(self, writers: dict[str, ActivationShardWriter], free_slots: queue.Queue,
                 on_shard):
        self.writers = writers
        self.free_slots = free_slots
        self.on_shard = on_shard
        self.q: queue.Queue = queue.Queue()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="activation-writer", daemon=True)
        self.thread.start()

    def put(self, item) -> None:
        self.check()
        self.q.put(item)

    def check(self) -> None:
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        while True:
            item = self.q.get()
            if item is None:
                return
            if self.error is not None:
                self._release(item)
                continue
            try:
                kind = item[0]
                if kind == "batch":
                    _, event, slot, rows, positions, resume, borrowed = item
                    if event is not None:
                        event.synchronize()  # the non-blocking copy to host has landed
                    if borrowed:
                        # rows live in a reusable pinned buffer that goes back to the pool
                        # below, while the shard writer keeps what it is given until the
                        # shard is full: hand it a copy (a host memcpy, on this thread)
                        rows = {name: r.clone() for name, r in rows.items()}
                    shards_before = sum(len(w.shards) for w in self.writers.values())
                    for name, w in self.writers.items():
                        w.append(rows[name], positions, keep_together=True, resume=resume)
                    if sum(len(w.shards) for w in self.writers.values()) != shards_before:
                        self.on_shard(resume)
                elif kind == "flush":
                    for w in self.writers.values():
                        w.flush_shard()
                    item[1].set()
            except BaseException as exc:  # noqa: BLE001 - reported to the job thread
                self.error = exc
            finally:
                self._release(item)

    def _release(self, item) -> None:
        if item[0] == "batch" and item[2] is not None:
            self.free_slots.put(item[2])
        elif item[0] == "flush":
            item[1].set()

    def flush(self) -> None:
        done = threading.Event()
        self.q.put(("flush", done))
        done.wait()
        self.check()

    def close(self) -> None:
        self.q.put(None)
        self.thread.join()


def _valid_mask(tokens: np.ndarray, lengths: np.ndarray, skip_bos: bool, bos_id) -> np.ndarray:
    mask = np.arange(tokens.shape[1])[None, :] < lengths[:, None]
    if skip_bos and bos_id is not None:
        mask &= tokens != int(bos_id)
    return mask


def count_valid_tokens(tok: TokenizedDataset, skip_bos: bool, bos_id, start_seq: int = 0,
                       chunk: int = 4096) -> int:
    total = 0
    for s in range(start_seq, tok.n_seq, chunk):
        e = min(tok.n_seq, s + chunk)
        total += int(_valid_mask(np.asarray(tok.tokens[s:e]), np.asarray(tok.lengths[s:e]),
                                 skip_bos, bos_id).sum())
    return total


def _resume_point(outputs: dict) -> tuple[int, int, int]:
    """(shards kept per set, next sequence, rows already done) over all output folders."""
    indexes = {name: read_shard_index(o["folder"]) for name, o in outputs.items()}
    n_common = min(len(ix) for ix in indexes.values())
    if n_common == 0:
        for o in outputs.values():
            truncate_shards(o["folder"], 0)
        return 0, 0, 0
    for o in outputs.values():
        truncate_shards(o["folder"], n_common)
    first = next(iter(indexes.values()))[:n_common]
    resume = first[-1].resume or {}
    if "next_seq" not in resume:
        raise UserError("This activation set cannot be resumed (it has no resume record).",
                        hint="Delete it and extract again.")
    return n_common, int(resume["next_seq"]), sum(s.rows for s in first)


def sequence_ranges(start_seq: int, n_seq: int, batch_size: int):
    """Consecutive batches of sequence ids ``[s, s + batch_size)`` from ``start_seq``."""
    for s in range(start_seq, n_seq, batch_size):
        yield np.arange(s, min(n_seq, s + batch_size))


def capture_batches(cap: ActivationCapture, tok: TokenizedDataset, seq_batches, *,
                    skip_bos: bool, bos_id, device: str, dtype, row_limit: int | None = None,
                    before_batch=None, timing: dict | None = None):
    """The forward loop shared by extraction and on-the-fly training.

    For each array of sequence ids from ``seq_batches`` (ascending within a batch): one
    forward pass (stopped after the deepest hook by ``cap``), then the valid positions
    (within each sequence's length, BOS skipped if asked), selected and cast to ``dtype``
    on the device. Yields ``(rows {hook: [n, d] tensor on the device}, positions int32
    [n, 2] (sequence, token), next_seq)`` where ``next_seq`` follows the batch's last
    sequence; stops once ``row_limit`` rows were yielded (the last batch is cut to fit).
    ``before_batch`` runs before each forward pass (pause/cancel points); ``timing["forward_s"]``
    accumulates the forward passes' time when given.
    """
    import torch

    cuda = str(device).startswith("cuda")
    rows_done = 0
    for seq_ids in seq_batches:
        if row_limit is not None and rows_done >= row_limit:
            return
        if before_batch is not None:
            before_batch()
        seq_ids = np.asarray(seq_ids)
        first, last = int(seq_ids[0]), int(seq_ids[-1])
        if last - first + 1 == seq_ids.size:  # consecutive: a plain slice of the memmap
            tokens, lengths = (np.asarray(tok.tokens[first:last + 1]),
                               np.asarray(tok.lengths[first:last + 1]))
        else:
            tokens, lengths = np.asarray(tok.tokens[seq_ids]), np.asarray(tok.lengths[seq_ids])
        mask = _valid_mask(tokens, lengths, skip_bos, bos_id)
        b_idx, t_idx = np.nonzero(mask)
        take = len(b_idx) if row_limit is None else min(len(b_idx), row_limit - rows_done)
        if take < len(b_idx):
            b_idx, t_idx = b_idx[:take], t_idx[:take]
        ids = torch.from_numpy(tokens.astype(np.int64))
        padded = bool((lengths < tok.seq_len).any())
        attn = (torch.from_numpy(np.arange(tok.seq_len)[None, :] < lengths[:, None])
                .long() if padded else None)
        if cuda:
            ids = ids.pin_memory().to(device, non_blocking=True)
            attn = attn.to(device, non_blocking=True) if attn is not None else None
        t0 = time.perf_counter()
        try:
            acts = cap.run(ids, attn)
        except Exception as exc:
            if _is_oom(exc):
                raise _oom_error(int(seq_ids.size)) from exc
            raise
        if timing is not None:
            timing["forward_s"] += time.perf_counter() - t0
        positions = np.stack([seq_ids[b_idx], t_idx], axis=1).astype(np.int32)
        full = take == mask.size
        if not full:  # every position kept: no index copies to the device
            sel_b = torch.from_numpy(b_idx).to(device, non_blocking=cuda)
            sel_t = torch.from_numpy(t_idx).to(device, non_blocking=cuda)
        rows = {}
        for name, a in acts.items():
            x = a.reshape(-1, a.shape[-1]) if full else a[sel_b, sel_t]
            rows[name] = x.to(dtype)
        rows_done += take
        yield rows, positions, last + 1


def run(params: dict, ctx) -> dict:
    """Job ``activations.extract``. Params (all JSON):

    model_folder, model_id, model_name, trust_remote_code, model_dtype ('auto'|...),
    device ('auto'|'cpu'|'cuda'), tokenization (folder), dataset_id, hook_points [names],
    outputs {hook name: {set_id, folder}}, max_tokens (0 = all), batch_size (sequences),
    store_dtype ('float32'|'float16'|'bfloat16'), skip_bos, extraction_id.
    """
    import torch

    from mistudio import hardware
    from mistudio.models.loading import load_tokenizer
    from mistudio.models.pool import MODEL_POOL

    names: list[str] = list(params["hook_points"])
    outputs: dict = params["outputs"]
    if not names:
        raise UserError("Choose at least one hook point to extract.")
    missing = [n for n in names if n not in outputs]
    if missing:
        raise ValueError(f"no output folder for {missing}")
    store_dtype = params.get("store_dtype", "float32")
    batch_size = int(params.get("batch_size", 8))
    if batch_size < 1:
        raise UserError("The batch size must be at least 1.")
    max_tokens = int(params.get("max_tokens") or 0)
    skip_bos = bool(params.get("skip_bos", True))
    trust = bool(params.get("trust_remote_code", False))
    if all(is_complete(outputs[n]["folder"]) for n in names):
        ctx.log("All activation sets of this extraction are already complete.")
        return _result(outputs, names, 0, 0.0)

    tok = TokenizedDataset(Path(params["tokenization"]))
    model_folder = Path(params["model_folder"])
    tokenizer = load_tokenizer(model_folder, trust_remote_code=trust)
    fp_model = tokenizer_fingerprint(tokenizer)
    if tok.fingerprint != fp_model:
        raise UserError(
            f"The dataset was tokenized with a different tokenizer "
            f"({tok.meta.get('tokenizer', '?')}) than the model's "
            f"({params.get('model_name') or model_folder.name}); the token ids would mean "
            "other words.",
            hint="Tokenize the dataset again with this model's tokenizer, then extract.")

    device = hardware.resolve_device(params.get("device") or ctx.device)
    model_dtype = hardware.resolve_dtype(params.get("model_dtype") or ctx.dtype, device)
    quantization = params.get("quantization", "none")
    ctx.progress(0, None, f"Loading the model on {device} ({model_dtype}"
                 + (f", {quantization}" if quantization != "none" else "") + ")...")
    # leased: the model stays loaded (never evicted for another job's model) until
    # the last batch is captured
    with MODEL_POOL.lease(model_folder, dtype=model_dtype, device=device,
                          quantization=quantization, trust_remote_code=trust,
                          allow_cpu_quantization=bool(params.get("allow_cpu_quantization"))
                          ) as loaded:
        model = loaded.model
        cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") \
            else model.config
        n_layers = int(getattr(cfg, "num_hidden_layers", 0) or getattr(cfg, "n_layer", 0))
        d_model = int(getattr(cfg, "hidden_size", 0) or getattr(cfg, "n_embd", 0))
        targets = [hooks.resolve(n, cfg.model_type, n_layers) for n in names]
        for t in targets:
            hooks.get_module(model, t.module_path)  # fail before any work if a path is wrong

        shards_kept, start_seq, rows_done = _resume_point({n: outputs[n] for n in names})
        bos_id = tok.meta.get("bos_token_id", tokenizer.bos_token_id)
        ctx.progress(0, None, "Counting tokens...")
        valid_total = rows_done + count_valid_tokens(tok, skip_bos, bos_id, start_seq)
        rows_target = min(valid_total, max_tokens) if max_tokens else valid_total
        if rows_target <= 0:
            raise UserError("The tokenization has no tokens to extract (after skipping BOS and "
                            "padding).", hint="Pick another dataset or turn off 'skip BOS'.")
        if rows_done:
            ctx.log(f"Resuming after {shards_kept} complete shard(s): {rows_done:,} rows kept, "
                    f"continuing at sequence {start_seq}.")
        remaining = max(0, rows_target - rows_done)
        d_mlp = getattr(cfg, "intermediate_size", None) or getattr(cfg, "n_inner", None)
        widths = [hooks.hook_width(t.hook_type, d_model, d_mlp) for t in targets]
        need = remaining * sum(bytes_per_row(w, store_dtype) for w in widths)
        check_free_space(Path(outputs[names[0]]["folder"]).parent, need,
                         what=f"the activations ({len(names)} hook point(s))")
        ctx.log(f"Extracting {rows_target:,} tokens at {len(names)} hook point(s) on {device} "
                f"({model_dtype}), about {human_bytes(need)} to write.")

        shard_rows = int(params.get("shard_rows") or default_shard_rows(max(widths), store_dtype))
        base_meta = {
            "model_id": params.get("model_id", ""), "model_name": params.get("model_name", ""),
            "model_folder": str(model_folder), "model_type": cfg.model_type,
            "tokenization": str(tok.folder), "dataset_id": params.get("dataset_id") or
            tok.meta.get("dataset_id", ""), "tokenizer_fingerprint": fp_model,
            "seq_len": tok.seq_len, "context_size": tok.seq_len, "skip_bos": skip_bos,
            "prepend_bos": bool(tok.meta.get("prepend_bos", False)), "model_dtype": model_dtype,
            "device": device, "extraction_id": params.get("extraction_id", ""),
            "max_tokens": max_tokens, "batch_size": batch_size,
        }
        writers: dict[str, ActivationShardWriter] = {}
        free_slots: queue.Queue = queue.Queue()
        for i in range(BUFFER_SLOTS):
            free_slots.put(i)
        pinned: dict[tuple[int, str], object] = {}
        cuda = device.startswith("cuda")
        t_start = time.monotonic()
        rows_at_start = rows_done

        def on_shard(resume):
            ctx.checkpoint(next_seq=resume["next_seq"], rows=resume["rows"])

        bg: _BackgroundWriter | None = None
        # where the time goes (the result's "timing"; benchmarks/extract_bench.py prints it):
        # the forward passes, waits for a free buffer (the writer fell behind), the last write
        timing = {"forward_s": 0.0, "buffer_wait_s": 0.0, "final_write_s": 0.0}
        seq = start_seq
        step = 0
        try:
            with ActivationCapture(model, targets) as cap:
                for rows, positions, seq in capture_batches(
                        cap, tok, sequence_ranges(start_seq, tok.n_seq, batch_size),
                        skip_bos=skip_bos, bos_id=bos_id, device=device,
                        dtype=_torch_dtype(store_dtype), row_limit=rows_target - rows_done,
                        before_batch=ctx.pause_point, timing=timing):
                    if not writers:
                        for name in names:
                            layer = next(t.layer for t in targets if t.name == name)
                            writers[name] = ActivationShardWriter(
                                outputs[name]["folder"], int(rows[name].shape[-1]),
                                {**base_meta, "hook_name": name, "hook_layer": layer,
                                 "set_id": outputs[name].get("set_id", "")},
                                dtype=store_dtype, shard_rows=shard_rows)
                        bg = _BackgroundWriter(writers, free_slots, on_shard)
                    # a free slot bounds the batches in flight (memory), on CPU too
                    t0 = time.perf_counter()
                    slot = _get_slot(free_slots, ctx, bg)
                    timing["buffer_wait_s"] += time.perf_counter() - t0
                    event = None
                    if cuda:
                        host = {}
                        for name in names:
                            x = rows[name]
                            buf = _pinned(pinned, slot, name, batch_size * tok.seq_len, x.shape[1],
                                          x.dtype)
                            host[name] = buf[:x.shape[0]]
                            host[name].copy_(x, non_blocking=True)
                        event = torch.cuda.Event()
                        event.record()
                        rows = host
                    rows_done += int(positions.shape[0])
                    bg.put(("batch", event, slot, rows, positions,
                            {"next_seq": seq, "rows": rows_done}, cuda))
                    step += 1
                    elapsed = max(time.monotonic() - t_start, 1e-6)
                    rate = (rows_done - rows_at_start) / elapsed
                    ctx.progress(rows_done, rows_target, f"{rate:,.0f} tokens/s")
                    if step % 10 == 0:
                        ctx.metric(step, tokens_per_s=rate, tokens=rows_done)
                    ctx.check_cancelled()
        except JobCancelled:
            if bg is not None:
                bg.flush()  # keep every batch already computed: resume continues after it
                bg.close()
                ctx.log(f"Cancelled after {rows_done:,} tokens; the extraction can be resumed.")
            raise
        except BaseException:
            if bg is not None:
                bg.close()  # complete shards stay; buffered rows are dropped, resume redoes them
            raise
        if bg is None:
            if not rows_done:
                raise UserError("No tokens were extracted.",
                                hint="Check the dataset and max tokens.")
            # resumed with every row already on disk (stopped after the last batch): finish
            writers = {n: _reopen_writer(outputs[n]["folder"]) for n in names}
        else:
            t0 = time.perf_counter()
            bg.flush()
            bg.close()
            timing["final_write_s"] = time.perf_counter() - t0
        elapsed = time.monotonic() - t_start
        ctx.progress(rows_done, rows_target, "Writing statistics...")
        for name in names:
            writers[name].finish({"num_tokens": rows_done, "elapsed_s": elapsed})
        rate = (rows_done - rows_at_start) / max(elapsed, 1e-6)
        ctx.log(f"Extracted {rows_done:,} tokens in {elapsed:.1f} s ({rate:,.0f} tokens/s).")
        return {**_result(outputs, names, rows_done, rate),
                "timing": {**timing, "total_s": elapsed}}


def _reopen_writer(folder: str) -> ActivationShardWriter:
    import json

    meta = json.loads((Path(folder) / "meta.json").read_text(encoding="utf-8"))
    return ActivationShardWriter(folder, int(meta["d_in"]), dtype=meta["dtype"])


def _result(outputs: dict, names: list[str], rows: int, rate: float) -> dict:
    return {"tokens": int(rows), "tokens_per_s": float(rate),
            "sets": {n: {"set_id": outputs[n].get("set_id", ""), "folder": outputs[n]["folder"]}
                     for n in names}}


def _oom_error(batch_size: int) -> UserError:
    smaller = max(1, batch_size // 2)
    return UserError(
        f"The device ran out of memory at batch size {batch_size}.",
        hint=f"Resume the extraction with a smaller batch size (e.g. {smaller}); the shards "
        "already written are kept.")


def _torch_dtype(name: str):
    import torch

    return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[name]


def _get_slot(free_slots: queue.Queue, ctx, bg) -> int:
    while True:
        try:
            return free_slots.get(timeout=0.2)
        except queue.Empty:
            bg.check()
            ctx.check_cancelled()


def _pinned(cache: dict, slot: int, name: str, rows: int, d: int, dtype):
    import torch

    key = (slot, name)
    buf = cache.get(key)
    if buf is None or buf.shape[0] < rows or buf.shape[1] != d or buf.dtype != dtype:
        buf = torch.empty((rows, d), dtype=dtype, pin_memory=True)
        cache[key] = buf
    return buf
