"""``mistudio sae ...``: list, show, export, import (also called load), evaluate, resume and
delete SAEs/trainings."""

from __future__ import annotations

from mistudio.cli import print_json, with_studio
from mistudio.cli.table import print_table


def register(sub) -> None:
    p = sub.add_parser("sae", help="trained and imported SAEs, and trainings")
    s = p.add_subparsers(dest="sae_command", metavar="ACTION", required=True)
    lp = s.add_parser("list", help="SAEs (trained and imported)")
    lp.add_argument("--training", help="only the SAEs of this training")
    lp.add_argument("--json", action="store_true")
    lp.set_defaults(func=run_list)
    tp = s.add_parser("trainings", help="training runs, newest first")
    tp.add_argument("--json", action="store_true")
    tp.set_defaults(func=run_trainings)
    sp = s.add_parser("show", help="one SAE or training in full")
    sp.add_argument("id")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=run_show)
    cp = s.add_parser("checkpoints", help="checkpoints of a training")
    cp.add_argument("training_id")
    cp.set_defaults(func=run_checkpoints)
    ep = s.add_parser("export", help="copy an SAE (SAELens layout) to a folder")
    ep.add_argument("id", help="SAE id, or training id (with --member for a sweep)")
    ep.add_argument("destination")
    ep.add_argument("--member")
    ep.set_defaults(func=run_export)
    import_help = ("import an SAE: SAELens, sparsify or Gemma Scope files, from a folder or a "
                   "Hub repo id")
    # "load" is a hidden alias (no help: argparse leaves it out of the list of actions).
    for ip in (s.add_parser("import", help=import_help, description=import_help),
               s.add_parser("load", description=import_help + " (same as 'sae import')")):
        ip.add_argument("source", help="folder, or Hugging Face repo id")
        ip.add_argument("--subfolder", default="", help="the SAE's folder inside the source")
        ip.add_argument("--name", default="")
        ip.set_defaults(func=run_import)
    rp = s.add_parser("resume", help="continue a stopped training from its last checkpoint")
    rp.add_argument("training_id")
    rp.add_argument("--step", type=int, help="resume from this checkpoint step")
    rp.add_argument("--total-tokens", type=int, help="train to this many tokens instead")
    rp.set_defaults(func=run_resume)
    ev = s.add_parser("evaluate", help="CE loss score and KL score with the SAE spliced into "
                                       "its model (SAELens definitions), on held-out tokens")
    ev.add_argument("id", help="SAE id")
    ev.add_argument("--tokens", type=int, default=4096, help="tokens to evaluate on "
                    "(default 4096)")
    ev.add_argument("--model", default="", help="registered model (default: the one the "
                    "activations came from, or the one named in an imported SAE)")
    ev.add_argument("--tokenization", default="", help="tokenization id or folder (default: "
                    "the activation set's, after its extracted sequences)")
    ev.add_argument("--hook", default="", help="hook point (default: the SAE's)")
    ev.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ev.add_argument("--json", action="store_true")
    ev.set_defaults(func=run_evaluate)
    dp = s.add_parser("delete", help="delete a training (with its files) or an imported SAE")
    dp.add_argument("id")
    dp.set_defaults(func=run_delete)
    from mistudio.cli.sae_catalogue import register as register_catalogue

    register_catalogue(s)


@with_studio
def run_list(studio, args) -> int:
    if args.training:
        studio.trainings.get_training(args.training)  # an unknown id is an error, not "none"
    rows = studio.trainings.list_saes(args.training)
    if args.json:
        print_json([r.__dict__ for r in rows])
        return 0
    if not rows:
        print("no SAEs")
        return 0
    # CE: the CE loss score with the SAE spliced into its model (SAELens definition); empty
    # until the SAE was evaluated (at the end of training, or `mistudio sae evaluate`)
    def fmt(value, spec):
        return "" if value is None else format(value, spec)

    print_table(["ID", "ARCH", "D_IN", "D_SAE", "L0", "EV", "CE", "SOURCE", "NAME"],
                [[r.id, r.architecture, r.d_in, r.d_sae, fmt(r.metrics.get("l0"), ".1f"),
                  fmt(r.metrics.get("explained_variance"), ".3f"),
                  fmt(r.metrics.get("ce_loss_score"), ".3f"), r.source, r.name]
                 for r in rows], right=(2, 3, 4, 5, 6))
    return 0


@with_studio
def run_trainings(studio, args) -> int:
    rows = studio.trainings.list_trainings()
    if args.json:
        print_json([r.__dict__ for r in rows])
        return 0
    if not rows:
        print("no trainings")
        return 0
    print_table(["ID", "STATUS", "ARCH", "SAES", "TOKENS", "NAME"],
                [[r.id, r.status, r.architecture, r.num_saes,
                  f"{r.tokens:,}/{r.total_tokens:,}", r.name] for r in rows], right=(3, 4))
    return 0


@with_studio
def run_show(studio, args) -> int:
    if args.id.startswith("tr_"):
        rec = studio.trainings.get_training(args.id)
        data = {**rec.__dict__, "saes": [s.__dict__ for s in studio.trainings.list_saes(rec.id)],
                "checkpoints": [c.to_dict() for c in studio.trainings.list_checkpoints(rec.id)]}
    else:
        data = studio.trainings.get_sae(args.id).__dict__
    print_json(data)
    return 0


@with_studio
def run_checkpoints(studio, args) -> int:
    ckpts = studio.trainings.list_checkpoints(args.training_id)
    if not ckpts:
        print("no checkpoints")
    for c in ckpts:
        print(f"step {c.step:>8,}  tokens {c.tokens:>12,}  {c.path}")
    return 0


@with_studio
def run_export(studio, args) -> int:
    print(studio.trainings.export_saelens(args.id, args.member, args.destination))
    return 0


@with_studio
def run_import(studio, args) -> int:
    rec = studio.trainings.import_sae(args.source, subfolder=args.subfolder, name=args.name)
    print(f"{rec.id}  {rec.architecture}  d_in {rec.d_in}  d_sae {rec.d_sae}  ({rec.format})")
    return 0


@with_studio
def run_resume(studio, args) -> int:

    from mistudio.cli.runner import follow_job_cli

    job = studio.trainings.resume_training(args.training_id, checkpoint=args.step,
                                           total_tokens=args.total_tokens)
    final = follow_job_cli(studio, job)  # prints the error of a failed job
    if final.status != "completed":
        return 1
    print(f"{job.target} completed")
    return 0


@with_studio
def run_evaluate(studio, args) -> int:

    from mistudio.cli.runner import follow_job_cli

    job = studio.trainings.start_evaluation(args.id, tokens=args.tokens, model=args.model,
                                            tokenization=args.tokenization,
                                            hook_name=args.hook, device=args.device)
    final = follow_job_cli(studio, job, quiet=args.json)  # prints the error of a failed job
    if final.status != "completed":
        return 1
    result = final.result or {}
    m = result.get("metrics", {})
    if args.json:
        print_json(result)
        return 0
    held = {True: "held-out", False: "training", None: "unknown-provenance"}[result.get("held_out")]
    print(f"CE loss score {m['ce_loss_score']:.4f}   KL score {m['kl_div_score']:.4f}   "
          f"({int(m['eval_tokens']):,} {held} tokens)")
    print(f"CE loss: clean {m['ce_loss_without_sae']:.4f}, with SAE {m['ce_loss_with_sae']:.4f}, "
          f"zero-ablated {m['ce_loss_with_ablation']:.4f}; KL with SAE {m['kl_div_with_sae']:.4f}, "
          f"zero-ablated {m['kl_div_with_ablation']:.4f}")
    return 0


@with_studio
def run_delete(studio, args) -> int:
    if args.id.startswith("tr_"):
        studio.trainings.delete_training(args.id)
    else:
        studio.trainings.delete_sae(args.id)
    print(f"deleted {args.id}")
    return 0
