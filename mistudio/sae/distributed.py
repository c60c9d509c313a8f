"""What several ``torchrun`` processes must agree on beyond DDP's gradient averaging.

DistributedDataParallel averages gradients, which makes N processes on B/N tokens each train
like one process on B tokens only if every other batch-level decision is global too:

- BatchTopK selects the top ``k * B`` pre-activations of the *global* batch:
  :class:`GlobalBatchTopKEncode` finds the global ``k*B``-th value from every process's
  candidates (one ``all_gather``) and thresholds locally; its backward is
  :class:`~mistudio.sae.sparse_ops.SparseEncode`'s.
- Firing counts (dead latents for AuxK, dense fraction, density) are summed over processes
  every step (the trainer does it with the batch's column sums in one ``all_reduce``).
- Metric sums are reduced before each report, so the numbers are the global batch's.

All functions are no-ops (or plain local computations) with one process.
"""

from __future__ import annotations

import torch

from mistudio.sae.sparse_ops import SparseEncode, _encoder_pre, batch_topk_select


def world_size() -> int:
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def all_reduce(t: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """In-place all-reduce of ``t`` over every process (``sum``, ``min`` or ``max``)."""
    import torch.distributed as dist

    if world_size() > 1:
        dist.all_reduce(t, op={"sum": dist.ReduceOp.SUM, "min": dist.ReduceOp.MIN,
                               "max": dist.ReduceOp.MAX}[op])
    return t


def broadcast(t: torch.Tensor, src: int = 0) -> torch.Tensor:
    import torch.distributed as dist

    if world_size() > 1:
        dist.broadcast(t, src)
    return t


def global_kth_largest(pre: torch.Tensor, n: int, candidates_per_row: int) -> torch.Tensor:
    """The ``n``-th largest entry of the ``pre`` matrices of all processes together (0-dim).

    The global top ``n`` holds at most ``n`` entries of any one process, so each process's
    local top ``n`` are enough: they are gathered (``n`` values per process) and the ``n``-th
    largest of the gathered values is the answer. The local top ``n`` come from each row's
    top ``candidates_per_row`` (exact unless some row had all its candidates chosen, which
    :func:`~mistudio.sae.sparse_ops.batch_topk_select` detects and redoes exactly).
    """
    B, D = pre.shape
    m = min(n, B * D)
    if m == B * D:
        local = pre.reshape(-1)
    else:
        rows, latents = batch_topk_select(pre, m, candidates_per_row)
        local = pre[rows, latents]
    local = local.float()
    if local.numel() < n:  # pad so every process sends the same number of values
        local = torch.cat([local, local.new_full((n - local.numel(),), float("-inf"))])
    world = world_size()
    if world > 1:
        import torch.distributed as dist

        gathered = local.new_empty(world * n)
        if pre.device.type == "cuda":
            dist.all_gather_into_tensor(gathered, local)
        else:  # gloo: a list of views into ``gathered``
            dist.all_gather(list(gathered.chunk(world)), local)
        local = gathered
    return local.topk(n, sorted=False).values.min()


class GlobalBatchTopKEncode(SparseEncode):
    """BatchTopK over the global batch of all processes: ``relu`` of the entries of
    ``x @ W^T + b`` at or above the global ``k * B_global``-th value. Same outputs and
    (sparse) backward as :class:`SparseEncode` with ``batch_mode=True``."""

    @staticmethod
    def forward(ctx, x, weight, bias, k: int, world: int, matmul_dtype):
        B = x.shape[0]
        pre = _encoder_pre(x, weight, bias, matmul_dtype)
        # this process may hold up to all k*B*world of the global top: enough candidates
        # per row that its local top k*B*world is among them (as one process's 4k for k*B)
        threshold = global_kth_largest(pre, k * B * world, 4 * k * world)
        rows, latents = (pre >= threshold.to(pre.dtype)).nonzero(as_tuple=True)
        values = pre[rows, latents].float()
        del pre
        counts = torch.bincount(rows, minlength=B)
        offsets = torch.zeros(B, dtype=torch.long, device=x.device)
        offsets[1:] = counts.cumsum(0)[:-1]
        values = values.relu_()
        ctx.save_for_backward(x, weight, values, latents, offsets)
        ctx.rows = rows
        ctx.mark_non_differentiable(latents, offsets)
        return values, latents, offsets


def global_batch_topk_encode(x, weight, bias, k: int, world: int,
                             matmul_dtype: torch.dtype | None = None):
    return GlobalBatchTopKEncode.apply(x, weight, bias, k, world, matmul_dtype)
