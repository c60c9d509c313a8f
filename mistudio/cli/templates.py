"""``mistudio templates``: list, show, save, favourite, import, export and delete training
templates (the same ones as the Training tab's template bar); ``--kind extraction`` for
extraction templates (list, show, export, import, delete).

A template's settings are a TrainingConfig JSON object, so
``mistudio templates show "OpenAI-style TopK" --config-only > topk.json`` gives a file for
``mistudio train --config topk.json --activations FOLDER``.
"""

from __future__ import annotations

import json
import sys

from mistudio.cli import open_studio, print_json


def register(sub) -> None:
    p = sub.add_parser("templates", help="training templates (built-in recipes and saved ones)",
                       description=__doc__.split("\n\n")[0] if __doc__ else None)
    tsub = p.add_subparsers(dest="templates_command", metavar="ACTION", required=True)

    q = tsub.add_parser("list", help="all templates, favourites first")
    q.add_argument("--json", action="store_true")
    _kind(q)
    q.set_defaults(func=run_list)

    q = tsub.add_parser("show", help="a template's settings")
    q.add_argument("template", help="name, id (tt_...) or built-in key")
    q.add_argument("--config-only", action="store_true",
                   help="print only the settings object (a file for `mistudio train --config`)")
    _kind(q)
    q.set_defaults(func=run_show)

    q = tsub.add_parser("save", help="save a JSON file of settings as a template")
    q.add_argument("name")
    q.add_argument("--config", required=True, help="JSON file of settings (TrainingConfig "
                   "fields; with --kind extraction, the extraction panel's)")
    q.add_argument("--description", default="")
    q.add_argument("--replace", action="store_true", help="replace a template of that name")
    _kind(q)
    q.set_defaults(func=run_save)

    q = tsub.add_parser("favourite", help="mark (or with --off, unmark) a favourite")
    q.add_argument("template")
    q.add_argument("--off", action="store_true")
    _kind(q)
    q.set_defaults(func=run_favourite)

    q = tsub.add_parser("export", help="write templates to a JSON file")
    q.add_argument("templates", nargs="+")
    q.add_argument("--output", "-o", required=True)
    _kind(q)
    q.set_defaults(func=run_export)

    q = tsub.add_parser("import", help="add the templates of a JSON file")
    q.add_argument("file")
    _kind(q)
    q.set_defaults(func=run_import)

    q = tsub.add_parser("delete", help="delete a saved template")
    q.add_argument("template")
    _kind(q)
    q.set_defaults(func=run_delete)


def _kind(q) -> None:
    q.add_argument("--kind", choices=("training", "extraction"), default="training",
                   help="training templates (default) or extraction templates")


def _with_studio(args, fn):
    studio = open_studio(args)
    try:
        return fn(studio.templates)
    finally:
        studio.close(timeout=1)


def run_list(args) -> int:
    def go(svc):
        items = svc.list(kind=args.kind, favourites_first=True)
        if args.json:
            print_json([{"id": t.id, "name": t.name, "builtin": t.builtin,
                         "favourite": t.favourite, "description": t.description,
                         "config": t.settings} for t in items])
            return 0
        from mistudio.cli.table import print_table

        key, title = (("architecture", "ARCH") if args.kind == "training"
                      else ("hook_types", "HOOKS"))
        print_table(["", "NAME", "KIND", title, "USED", "ID"],
                    [["*" if t.favourite else "", t.name, "built-in" if t.builtin else "saved",
                      _cell(t.settings.get(key, "")), str(t.use_count), t.id]
                     for t in items], shrink=(1,))
        return 0

    return _with_studio(args, go)


def _cell(value) -> str:
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)


def run_show(args) -> int:
    def go(svc):
        t = svc.get(args.template, kind=args.kind)
        if args.config_only:
            print(json.dumps(t.settings, indent=2, sort_keys=True))
        else:
            print_json({"id": t.id, "name": t.name, "builtin": t.builtin,
                        "favourite": t.favourite, "description": t.description,
                        "config": t.settings})
        return 0

    return _with_studio(args, go)


def run_save(args) -> int:
    from pathlib import Path

    from mistudio.errors import UserError

    try:
        config = json.loads(Path(args.config).read_text(encoding="utf-8"))
    except OSError as exc:
        raise UserError(f"Cannot read {args.config}: {exc.strerror or exc}.") from exc
    except ValueError as exc:
        raise UserError(f"{args.config} is not valid JSON ({exc}).") from exc

    def go(svc):
        t = svc.save(args.name, config, kind=args.kind, description=args.description,
                     overwrite=args.replace)
        print(f"saved {t.name} ({t.id})")
        return 0

    return _with_studio(args, go)


def run_favourite(args) -> int:
    def go(svc):
        t = svc.set_favourite(args.template, not args.off, kind=args.kind)
        print(f"{t.name}: {'favourite' if t.favourite else 'not a favourite'}")
        return 0

    return _with_studio(args, go)


def run_export(args) -> int:
    def go(svc):
        path = svc.export(args.templates, args.output, kind=args.kind)
        print(f"wrote {len(args.templates)} template(s) to {path}", file=sys.stderr)
        return 0

    return _with_studio(args, go)


def run_import(args) -> int:
    def go(svc):
        for t in svc.import_file(args.file, kind=args.kind):
            print(f"imported {t.name} ({t.id})")
        return 0

    return _with_studio(args, go)


def run_delete(args) -> int:
    def go(svc):
        t = svc.get(args.template, kind=args.kind)
        svc.delete(t.id, kind=args.kind)
        print(f"deleted {t.name}")
        return 0

    return _with_studio(args, go)
