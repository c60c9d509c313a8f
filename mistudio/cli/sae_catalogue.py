"""``mistudio sae catalogue``: browse SAELens's catalogue of published SAEs, download one.

Lists release, SAE id, model (its Hugging Face id), hook point, width and L0 where the
catalogue gives them, and flags the entries this app cannot load with the reason.
``--download RELEASE/ID`` fetches one (byte progress; an interrupted download resumes) and
imports it: it then appears in ``mistudio sae list`` like any other SAE.
"""

from __future__ import annotations

import sys

from mistudio.cli import open_studio, print_json


def register(s) -> None:
    p = s.add_parser("catalogue", help="published SAEs (SAELens's pretrained_saes.yaml): "
                                       "browse, filter, download",
                     description=__doc__.split("\n\n")[1] if __doc__ else None)
    p.add_argument("--model", default="", help="only SAEs of this model (Hub id or "
                   "TransformerLens alias, e.g. gpt2-small)")
    p.add_argument("--release", default="", help="only this release")
    p.add_argument("--search", default="", help="words that must appear in the release, id "
                   "or hook")
    p.add_argument("--registered", action="store_true",
                   help="only SAEs of models registered in the app")
    p.add_argument("--loadable", action="store_true", help="hide entries the app cannot load")
    p.add_argument("--releases", action="store_true", help="list the releases only")
    p.add_argument("--limit", type=int, default=50, help="rows to print (0: all)")
    p.add_argument("--file", default="", help="read this pretrained_saes.yaml (this time)")
    p.add_argument("--use-file", metavar="PATH", help="read this pretrained_saes.yaml from "
                   "now on ('' to go back to the shipped snapshot)")
    p.add_argument("--download", metavar="RELEASE/ID", help="download and import this SAE")
    p.add_argument("--endpoint", default=None, help="a Hub mirror (default: HF_ENDPOINT or "
                   "huggingface.co)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args) -> int:
    studio = open_studio(args)
    try:
        svc = studio.sae_catalogue
        if args.use_file is not None:
            cat = svc.set_catalogue_file(args.use_file)
            print(f"SAE catalogue: {cat.description}; {len(cat.entries):,} SAEs.")
            if not args.download:
                return 0
        if args.download:
            return _download(studio, args)
        cat = svc.catalogue(args.file or None)
        entries = svc.browse(model=args.model, release=args.release, text=args.search,
                             registered_only=args.registered, loadable_only=args.loadable,
                             path=args.file or None)
        if args.releases:
            return _releases(entries, args)
        if args.json:
            print_json([e.to_dict() for e in entries[:args.limit or None]])
            return 0
        print(f"# {cat.description}", file=sys.stderr)
        if not entries:
            print("No SAE in the catalogue matches.", file=sys.stderr)
            return 0
        shown = entries[:args.limit or None]
        for e in shown:
            width = f"{e.d_sae:,}" if e.d_sae else "?"
            l0 = f"{e.l0:g}" if e.l0 is not None else "-"
            hook = e.hook_name + ("*" if e.hook_inferred and e.hook_name else "")
            flag = "" if e.loadable else f"  [cannot load: {e.reason}]"
            print(f"{e.key:<64} {e.hub_model:<28} {hook:<28} width {width:>8}  L0 {l0:>6}"
                  f"{flag}")
        more = len(entries) - len(shown)
        print(f"{len(entries):,} SAEs" + (f" ({more:,} more: --limit 0 shows all)" if more
                                          else "") + "; * = hook read from the release "
              "name; download one with --download RELEASE/ID", file=sys.stderr)
        return 0
    finally:
        studio.close(timeout=30)


def _releases(entries, args) -> int:
    by_release: dict[str, list] = {}
    for e in entries:
        by_release.setdefault(e.release, []).append(e)
    rows = [{"release": r, "model": es[0].hub_model, "saes": len(es),
             "loadable": sum(e.loadable for e in es)} for r, es in sorted(by_release.items())]
    if args.json:
        print_json(rows)
        return 0
    for r in rows:
        print(f"{r['release']:<48} {r['model']:<36} {r['saes']:>5} SAEs, {r['loadable']:>5} "
              "loadable")
    return 0


def _download(studio, args) -> int:
    from mistudio.cli.runner import follow_job_cli

    job = studio.sae_catalogue.start_download(args.download, endpoint=args.endpoint)
    print(f"downloading {args.download} (job {job.id})", file=sys.stderr)
    final = follow_job_cli(studio, job, quiet=args.quiet)
    if final.status != "completed":
        return 1 if final.status == "failed" else 130
    rec = studio.trainings.get_sae(job.target)
    if args.json:
        print_json({"id": rec.id, "folder": rec.folder, "architecture": rec.architecture,
                    "d_in": rec.d_in, "d_sae": rec.d_sae, "model_name": rec.model_name,
                    "hook_name": rec.hook_name})
    else:
        print(f"{rec.id}  {rec.architecture}  d_in {rec.d_in}  d_sae {rec.d_sae}  "
              f"{rec.model_name} {rec.hook_name}")
    return 0
