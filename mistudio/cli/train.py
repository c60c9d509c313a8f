"""``mistudio train --config FILE``: run any SAE training headless, with the app's code.

Every run is recorded in the data folder like one started in the app (it appears in the
Training tab and ``mistudio sae trainings``/``list``): training row, job row with status and
progress, metrics batched into SQLite, the final SAEs registered. Ctrl+C stops it with a
checkpoint (``mistudio sae resume ID`` continues).

Under ``torchrun --nproc-per-node N`` it trains with DistributedDataParallel (NCCL on GPUs,
gloo on CPU): each process takes its slice of every batch, gradients are averaged and every
batch-level decision (BatchTopK's selection, dead latents, metrics) is global. Rank 0 records
and runs the job through the app's job queue and writes every file; the other processes
write nothing. ``--output`` puts the training folder somewhere else than the data folder.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from mistudio.cli import open_studio, print_json


def register(sub) -> None:
    p = sub.add_parser("train", help="train sparse autoencoders from a JSON config file",
                       description=__doc__.split("\n\n")[1] if __doc__ else None)
    p.add_argument("--config", help="JSON file of TrainingConfig settings (default: the "
                   "engine's defaults; `mistudio templates show NAME --config-only` writes one)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one setting (repeatable), e.g. --set k=64")
    p.add_argument("--activations", help="activation set id (act_...) or folder (overrides the "
                   "config's activation set)")
    p.add_argument("--model", help="train on the fly: a registered model (id or name) whose "
                   "activations are computed as training goes (no activation set)")
    p.add_argument("--tokenization", help="with --model: tokenization id or folder (default: "
                   "one made with the model's tokenizer)")
    p.add_argument("--hook", help="with --model: the hook point, e.g. blocks.6.hook_resid_post")
    p.add_argument("--output", help="training folder (default: trainings/<id>/ in the data "
                   "folder); the run is recorded either way")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)


def load_config(args):
    import json

    from mistudio.errors import UserError
    from mistudio.sae.config import TrainingConfig

    cfg = TrainingConfig.load(args.config) if args.config else TrainingConfig()
    changes = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise UserError(f"--set needs KEY=VALUE, got {item!r}.")
        try:
            changes[key.strip()] = json.loads(value)
        except ValueError:
            changes[key.strip()] = value
    if getattr(args, "model", None):  # on the fly
        changes.update(onthefly_model=args.model, activation_id="", activation_path="")
        if args.tokenization:
            changes["onthefly_tokenization"] = args.tokenization
    if getattr(args, "hook", None):
        changes["hook_name"] = args.hook
    if args.activations:
        path = Path(args.activations).expanduser()
        if path.exists() or "/" in args.activations:
            changes["activation_path"] = str(path.resolve())
            changes["activation_id"] = ""
        else:  # an id from `mistudio extract list`
            changes["activation_id"] = args.activations
            changes["activation_path"] = ""
    if changes:
        cfg = TrainingConfig.from_dict({**cfg.to_dict(), **changes})
    return cfg


def run(args) -> int:
    cfg = load_config(args)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return run_distributed(cfg, args)
    from mistudio.cli.runner import follow_job_cli

    studio = open_studio(args)
    try:
        if not cfg.activation_path and not cfg.activation_id:
            cfg.validate()
        job = studio.trainings.start_training(cfg, folder=args.output)
        print(f"training {job.target} (job {job.id})", file=sys.stderr)
        final = follow_job_cli(studio, job, quiet=args.quiet,
                               stop_message="Stopping with a checkpoint...")
        return _outcome(studio, job, final, args)
    finally:
        studio.close(timeout=30)


def _outcome(studio, job, final, args) -> int:
    tr = studio.trainings.get_training(job.target)
    if final.status == "failed":
        return 1
    if final.status == "cancelled":
        print(f"stopped; resume with: mistudio sae resume {tr.id}", file=sys.stderr)
        return 130
    if args.json:
        print_json(tr.result)
    else:
        for sae in studio.trainings.list_saes(tr.id):
            m = sae.metrics
            print(f"{sae.id}  {sae.member:<16} L0 {m.get('l0', 0):8.2f}  "
                  f"EV {m.get('explained_variance', 0):.4f}  {sae.folder}")
    return 0


def run_distributed(cfg, args) -> int:
    """One process of a ``torchrun`` group: rank 0 records the run and runs it as a job of
    the app's queue; the others receive its job parameters and train beside it."""
    import torch
    import torch.distributed as dist

    rank = int(os.environ["RANK"])
    world = int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    use_cuda = cfg.device != "cpu" and torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group("nccl" if use_cuda else "gloo")
    device = f"cuda:{local_rank}" if use_cuda else "cpu"
    try:
        if rank == 0:
            return _lead(cfg, args, world, device)
        return _follow(rank, world, device)
    finally:
        dist.destroy_process_group()


def _share(payload: dict | None) -> dict:
    """Rank 0's payload (job params or an error) on every process."""
    import torch.distributed as dist

    box = [payload]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _lead(cfg, args, world: int, device: str) -> int:
    from mistudio.cli.runner import follow_job_cli

    studio = open_studio(args)
    try:
        try:
            if not cfg.activation_path and not cfg.activation_id:
                cfg.validate()
            rec, params = studio.trainings.prepare_training(cfg, folder=args.output,
                                                            world_size=world)
        except BaseException as exc:
            _share({"error": str(exc)})  # the other processes exit quietly
            raise
        _share({"params": params})  # before the job starts: its collectives come after
        params["distributed"]["device"] = device
        job = studio.trainings.submit_training(rec, params)
        print(f"training {job.target} (job {job.id}) on {world} processes", file=sys.stderr)
        _stop_on_signals(lambda: None, once=True)
        final = follow_job_cli(studio, job, quiet=args.quiet,
                               stop_message="Stopping every process with a checkpoint...")
        return _outcome(studio, job, final, args)
    finally:
        studio.close(timeout=30)


def _follow(rank: int, world: int, device: str) -> int:
    from mistudio.errors import JobCancelled
    from mistudio.jobs.context import JobContext
    from mistudio.sae.job import train_job

    payload = _share(None)
    if "error" in payload:
        return 2  # rank 0 prints it
    params = {**payload["params"], "out_dir": None, "evaluation": {},
              "distributed": {"world_size": world, "rank": rank, "device": device}}
    ctx = JobContext.standalone(None)
    _stop_on_signals(ctx.request_cancel)
    try:
        train_job(params, ctx)
    except JobCancelled:
        return 130
    return 0


def _stop_on_signals(stop, once: bool = False) -> None:
    """Ctrl+C (SIGINT, which torchrun also forwards) and SIGTERM ask for a clean stop: the
    processes agree on a step, write a checkpoint and exit. ``once``: the first signal
    raises KeyboardInterrupt (the job follower cancels the job), later ones are ignored."""
    import signal

    def handler(signum, frame):
        if once:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            raise KeyboardInterrupt
        stop()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
