"""``mistudio train --config FILE``: run any SAE training headless, with the app's code.

Alone, the training is recorded in the data folder (it appears in the Training tab) and runs
through the job queue with a progress bar; Ctrl+C stops it with a checkpoint
(``mistudio sae resume ID`` continues). Under ``torchrun --nproc-per-node N`` it trains with
DistributedDataParallel (NCCL on GPUs, gloo on CPU): each process takes its slice of every
batch, gradients are averaged, and rank 0 writes checkpoints, metrics and the final SAEs to
``--output`` (import them with ``mistudio sae import``).
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
    p.add_argument("--output", help="output folder (required under torchrun)")
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
        job = studio.trainings.start_training(cfg)
        print(f"training {job.target} (job {job.id})", file=sys.stderr)
        final = follow_job_cli(studio, job, quiet=args.quiet,
                               stop_message="Stopping with a checkpoint...")
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
    finally:
        studio.close(timeout=30)


def run_distributed(cfg, args) -> int:
    """One process of a ``torchrun`` group."""
    import torch
    import torch.distributed as dist

    from mistudio.errors import UserError
    from mistudio.jobs.context import JobContext
    from mistudio.sae.data import open_source
    from mistudio.sae.trainer import Trainer

    if not args.output:
        raise UserError("Under torchrun, --output FOLDER is required.",
                        hint="Give the folder for checkpoints, metrics and the final SAEs.")
    rank = int(os.environ["RANK"])
    world = int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    use_cuda = cfg.device != "cpu" and torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group("nccl" if use_cuda else "gloo")
    try:
        device = f"cuda:{local_rank}" if use_cuda else "cpu"
        path = cfg.activation_path
        if not path:
            raise UserError("Under torchrun, give the activation set as a folder "
                            "(activation_path or --activations).")
        source = open_source(path, cfg.target_activation_path or None)
        bar = None
        if rank == 0 and not args.quiet:
            from mistudio.cli.runner import TerminalProgress

            bar = TerminalProgress("local")
        ctx = JobContext.standalone(Path(args.output), on_event=bar)
        trainer = Trainer(cfg, source, Path(args.output) if rank == 0 else None, ctx=ctx,
                          device=device, rank=rank, world_size=world)
        result = trainer.run()
        if bar:
            bar.finish()
        if rank == 0:
            if args.json:
                print_json(result)
            else:
                for item in result["saes"]:
                    print(f"{item['member']:<16} L0 {item['metrics'].get('l0', 0):8.2f}  "
                          f"EV {item['metrics'].get('explained_variance', 0):.4f}  {item['path']}")
        return 0
    finally:
        dist.destroy_process_group()
