"""Training straight from the model: activations made as training goes, never written.

:class:`ModelActivationSource` is a batch source (:mod:`mistudio.sae.data`) over a model +
tokenization + hook point. A producer thread runs the extraction's own forward loop
(:func:`mistudio.activations.extract.capture_batches`: the pass stops after the hook,
valid positions only) over the epoch's sequences in a shuffled order and assembles
*fills* of about ``buffer_rows`` rows; the trainer's thread draws each batch from the
current fill in a random order. Memory is bounded by the buffer: at most two fills exist
(one being drawn from, the next one being built or ready), ``2 * buffer_rows * d_in``
floats (plus one forward batch).

The layout of an epoch is fixed before any forward pass: the sequence order comes from
``(seed, epoch)``, forward batches are ``batch_sequences`` consecutive sequences of that
order, a fill is the fewest forward batches reaching ``buffer_rows`` rows (the rows per
sequence are counted from the tokenization alone), and each fill's row order comes from
``(seed, epoch, fill)``. Batch ``b`` of an epoch is therefore rows ``[b*B, (b+1)*B)`` of a
reproducible stream, and the trainer's checkpoint cursor ``(epoch, batch)`` is the data
position: resuming recomputes only the fill holding that batch (at most ``buffer_rows``
tokens of forward passes) and skips to the row. On the same device, dtype and thread
count the resumed run is bit-for-bit the uninterrupted one (tested on CPU).
"""

from __future__ import annotations

import queue
import threading
from pathlib import Path

import numpy as np
import torch

from mistudio.errors import JobCancelled, UserError

#: Default shuffle buffer (rows); SAELens's default buffer is similar in tokens.
DEFAULT_BUFFER_ROWS = 65_536


class ModelActivationSource:
    """Batches of one hook point's activations, computed on the fly.

    ``spec``: ``model_folder``, ``tokenization`` (folders), ``hook_name``; optional
    ``model_name``, ``model_id``, ``model_dtype`` ("auto"), ``trust_remote_code``,
    ``batch_sequences`` (sequences per forward pass, 8), ``buffer_rows``, ``skip_bos``
    (True). ``device``: where the model runs and the rows live (the training device).
    """

    def __init__(self, spec: dict, device: str = "cpu"):
        from mistudio import hardware
        from mistudio.activations.extract import _valid_mask
        from mistudio.data.tokenized import TokenizedDataset, tokenizer_fingerprint
        from mistudio.models import hooks
        from mistudio.models.loading import load_tokenizer
        from mistudio.models.pool import MODEL_POOL

        self.spec = dict(spec)
        self.device = str(device)
        self.batch_sequences = max(1, int(spec.get("batch_sequences") or 8))
        self.buffer_rows = max(1, int(spec.get("buffer_rows") or DEFAULT_BUFFER_ROWS))
        self.skip_bos = bool(spec.get("skip_bos", True))
        model_folder = Path(spec["model_folder"])
        self.tok = TokenizedDataset(Path(spec["tokenization"]))
        trust = bool(spec.get("trust_remote_code", False))
        tokenizer = load_tokenizer(model_folder, trust_remote_code=trust)
        if self.tok.fingerprint != tokenizer_fingerprint(tokenizer):
            raise UserError(
                f"The tokenization was made with a different tokenizer "
                f"({self.tok.meta.get('tokenizer', '?')}) than the model's "
                f"({spec.get('model_name') or model_folder.name}).",
                hint="Tokenize the dataset with this model's tokenizer, then train.")
        self.bos_id = self.tok.meta.get("bos_token_id", tokenizer.bos_token_id)
        model_dtype = hardware.resolve_dtype(spec.get("model_dtype") or "auto", self.device)
        # rows per sequence from the tokenization alone (lengths, BOS), in chunks
        counts = []
        for s in range(0, self.tok.n_seq, 4096):
            e = min(self.tok.n_seq, s + 4096)
            counts.append(_valid_mask(np.asarray(self.tok.tokens[s:e]),
                                      np.asarray(self.tok.lengths[s:e]), self.skip_bos,
                                      self.bos_id).sum(axis=1))
        self.rows_per_seq = np.concatenate(counts).astype(np.int64) if counts else \
            np.zeros(0, np.int64)
        self.num_rows = int(self.rows_per_seq.sum())
        if self.num_rows == 0:
            raise UserError("The tokenization has no tokens to train on (after skipping BOS "
                            "and padding).", hint="Pick another tokenization.")
        # leased for the whole training (close()): another job's load must not evict it
        self._lease = MODEL_POOL.lease(model_folder, dtype=model_dtype, device=self.device,
                                       trust_remote_code=trust)
        self.model = self._lease.loaded.model
        try:
            cfg = (self.model.config.get_text_config()
                   if hasattr(self.model.config, "get_text_config") else self.model.config)
            n_layers = int(getattr(cfg, "num_hidden_layers", 0) or getattr(cfg, "n_layer", 0))
            self.target = hooks.resolve(spec["hook_name"], cfg.model_type, n_layers)
            self.d_in = self.d_out = int(self._probe_width())
        except BaseException:
            self.close()
            raise
        self.meta = {"model_name": spec.get("model_name") or model_folder.name,
                     "model_id": spec.get("model_id", ""),
                     "hook_name": self.target.name, "tokenization": str(self.tok.folder),
                     "model_dtype": model_dtype, "on_the_fly": True,
                     "seq_len": self.tok.seq_len}
        self.max_buffered_rows = 0  # the most rows held in fills at once (tests, docs)
        self.forward_rows = 0       # rows computed so far (a resume recomputes a fill)

    def close(self) -> None:
        """Give the model back to the pool (it stays loaded for the next user); idempotent."""
        self._lease.close()

    # ------------------------------------------------------------------ forward passes

    def _capture(self, seq_batches, row_limit=None):
        from mistudio.activations.capture import ActivationCapture
        from mistudio.activations.extract import capture_batches

        with ActivationCapture(self.model, [self.target]) as cap:
            for rows, _positions, _next in capture_batches(
                    cap, self.tok, seq_batches, skip_bos=self.skip_bos, bos_id=self.bos_id,
                    device=self.device, dtype=torch.float32, row_limit=row_limit):
                yield rows[self.target.name]

    def _probe_width(self) -> int:
        first = int(np.argmax(self.rows_per_seq > 0))
        return next(self._capture([np.array([first])])).shape[1]

    def norm_sample(self, n_tokens: int, seed: int):
        """Batches of about ``n_tokens`` rows from random sequences: the norm-scaling
        pre-pass (:func:`mistudio.sae.data.estimate_norm_scale`)."""
        order = np.random.default_rng([seed, 7919]).permutation(self.tok.n_seq)
        need = np.searchsorted(np.cumsum(self.rows_per_seq[order]), n_tokens) + 1
        chosen = order[:need]
        batches = [np.sort(chosen[i:i + self.batch_sequences])
                   for i in range(0, len(chosen), self.batch_sequences)]
        for rows in self._capture(batches, row_limit=n_tokens):
            yield rows.clone()

    # ------------------------------------------------------------------ the epoch plan

    def epoch_plan(self, *, seed: int, epoch: int, shuffle: bool):
        """The fills of an epoch: for each, its forward batches (sequence id arrays) and
        its row count."""
        n = self.tok.n_seq
        order = (np.random.default_rng([seed, epoch]).permutation(n) if shuffle
                 else np.arange(n))
        fills, batches, rows = [], [], 0
        for i in range(0, n, self.batch_sequences):
            ids = np.sort(order[i:i + self.batch_sequences])
            got = int(self.rows_per_seq[ids].sum())
            if got == 0:
                continue
            batches.append(ids)
            rows += got
            if rows >= self.buffer_rows:
                fills.append((batches, rows))
                batches, rows = [], 0
        if batches:
            fills.append((batches, rows))
        return fills

    # ------------------------------------------------------------------ batches

    def epoch_batches(self, batch_size: int, *, seed: int, epoch: int, start_batch: int = 0,
                      shuffle: bool = True):
        fills = self.epoch_plan(seed=seed, epoch=epoch, shuffle=shuffle)
        n_batches = self.num_rows // batch_size
        if start_batch >= n_batches:
            return
        starts = np.cumsum([0] + [r for _, r in fills])
        skip_to = start_batch * batch_size
        first = int(np.searchsorted(starts, skip_to, side="right") - 1)
        producer = _FillProducer(self, fills, first, seed, epoch, shuffle)
        try:
            pending: list[torch.Tensor] = []  # rows drawn but not yet a whole batch
            have = 0
            skip = skip_to - int(starts[first])
            made = start_batch
            for fill, perm in producer:
                order = perm[skip:] if skip else perm
                skip = 0
                at = 0
                while at < order.numel() and made < n_batches:
                    take = min(batch_size - have, order.numel() - at)
                    pending.append(fill.index_select(0, order[at:at + take]))
                    have += take
                    at += take
                    if have == batch_size:
                        batch = pending[0] if len(pending) == 1 else torch.cat(pending)
                        pending, have = [], 0
                        made += 1
                        yield batch
                if made >= n_batches:
                    return
        finally:
            producer.close()


class _FillProducer:
    """The producer thread: computes fills ``first, first + 1, ...`` one ahead of the
    trainer: a fill is started only once the trainer took the previous one, so at most two
    fills exist and a run that stops wastes at most the one being built."""

    def __init__(self, source: ModelActivationSource, fills, first: int, seed: int,
                 epoch: int, shuffle: bool):
        self.source, self.fills, self.first = source, fills, first
        self.seed, self.epoch, self.shuffle = seed, epoch, shuffle
        self.q: queue.Queue = queue.Queue(maxsize=1)
        self.ahead = threading.Semaphore(1)  # fills started but not yet taken
        self.stop = threading.Event()
        self.held = 0  # rows alive in fills (queued + being drawn from + being built)
        self._lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, daemon=True, name="onthefly-producer")
        self.thread.start()

    def _hold(self, rows: int) -> None:
        with self._lock:
            self.held += rows
            src = self.source
            src.max_buffered_rows = max(src.max_buffered_rows, self.held)

    def _run(self) -> None:
        try:
            for k in range(self.first, len(self.fills)):
                while not self.ahead.acquire(timeout=0.1):
                    if self.stop.is_set():
                        return
                batches, n_rows = self.fills[k]
                self._hold(n_rows)
                parts = []
                for rows in self.source._capture(iter(batches)):
                    if self.stop.is_set():
                        return
                    parts.append(rows)
                fill = torch.cat(parts) if len(parts) > 1 else parts[0].clone()
                del parts
                self.source.forward_rows += fill.shape[0]
                if self.shuffle:
                    gen = torch.Generator().manual_seed(
                        int(np.random.default_rng([self.seed, self.epoch, k]).integers(2 ** 62)))
                    perm = torch.randperm(fill.shape[0], generator=gen)
                else:
                    perm = torch.arange(fill.shape[0])
                perm = perm.to(fill.device)
                if not self._put((fill, perm, n_rows)):
                    return
            self._put(None)
        except BaseException as exc:  # noqa: BLE001 - handed to the trainer's thread
            self._put(exc)

    def _put(self, item) -> bool:
        while not self.stop.is_set():
            try:
                self.q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self):
        last_rows = 0
        while True:
            try:
                item = self.q.get(timeout=0.5)
            except queue.Empty:
                if not self.thread.is_alive():
                    raise RuntimeError("the on-the-fly activation producer stopped") from None
                continue
            self.ahead.release()  # taken: the producer may start the next fill
            if last_rows:  # the fill drawn from before is done with
                self._hold(-last_rows)
                last_rows = 0
            if item is None:
                return
            if isinstance(item, BaseException):
                if isinstance(item, (UserError, JobCancelled)):
                    raise item
                raise RuntimeError(f"Computing activations failed: {item}") from item
            fill, perm, last_rows = item
            yield fill, perm

    def close(self) -> None:
        self.stop.set()
        try:
            while True:
                self.q.get_nowait()
        except queue.Empty:
            pass
        self.thread.join(timeout=30)
