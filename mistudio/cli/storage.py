"""``mistudio storage``: disk use of the data folder, orphans, database backups and restore."""

from __future__ import annotations

from mistudio.cli import print_json, with_studio


def register(sub) -> None:
    p = sub.add_parser("storage", help="disk use, orphans, database backups and restore",
                       description=__doc__)
    ssub = p.add_subparsers(dest="storage_command", metavar="ACTION", required=True)

    q = ssub.add_parser("du", help="disk use per category, largest items first, free space")
    q.add_argument("--items", type=int, default=5, help="items shown per category (default 5)")
    q.set_defaults(func=run_du)

    q = ssub.add_parser("orphans", help="folders without a record and records without a folder")
    q.set_defaults(func=run_orphans)

    q = ssub.add_parser("policy", help="show or change the cleanup policy (the rules `clean` "
                        "applies, and whether the window runs them at start-up)")
    onoff = ("on", "off")
    q.add_argument("--tmp", choices=onoff, help="tmp/ of no live job")
    q.add_argument("--orphans", choices=onoff, help="folders without a record, records "
                   "without a folder")
    q.add_argument("--cache-limit-gb", type=float, help="trim cache/ to this size, least "
                   "recently used first (0: never)")
    q.add_argument("--keep-activation-sets", type=int, metavar="N", help="keep the newest N "
                   "sets, pinned and used ones always (0: keep all)")
    q.add_argument("--thin-checkpoints", choices=onoff, help="thin finished trainings' "
                   "checkpoints to a log-spaced set and the newest")
    q.add_argument("--checkpoints-kept", type=int, metavar="N", help="checkpoints thinning "
                   "keeps per training")
    q.add_argument("--feature-visuals", choices=onoff, help="feature maps and analyses of "
                   "deleted SAEs")
    q.add_argument("--at-startup", choices=onoff, help="run the policy when the window starts")
    q.set_defaults(func=run_policy)

    q = ssub.add_parser("clean", help="apply the cleanup policy (`storage policy`): tmp/, "
                        "orphans, cache, old activation sets, checkpoints, feature "
                        "visualisations (--dry-run lists what goes and the bytes freed)")
    q.add_argument("--dry-run", action="store_true", help="list only; delete nothing")
    q.set_defaults(func=run_clean)

    q = ssub.add_parser("move", help="move the data folder (e.g. to an external disk): copy "
                        "with progress, verify every file, switch, then remove the old folder")
    q.add_argument("destination", nargs="?", help="an empty or new folder (a folder an "
                   "interrupted move left is resumed)")
    q.add_argument("--finish", action="store_true", help="delete the old folder a move "
                   "switched away from but did not get to delete")
    q.set_defaults(func=run_move)

    q = ssub.add_parser("backup", help="back up the database now (SQLite's online backup)")
    q.add_argument("--keep", type=int, default=7, help="backups kept (default 7)")
    q.set_defaults(func=run_backup)

    q = ssub.add_parser("backups", help="list the backups, newest first")
    q.set_defaults(func=run_backups)

    q = ssub.add_parser("restore", help="replace the database with a backup (the current one "
                        "is kept as a 'before-restore' backup)")
    q.add_argument("backup", help="backup name (a prefix is enough) or folder")
    q.set_defaults(func=run_restore)

    for q in ssub.choices.values():  # every action prints JSON instead on request (last option)
        q.add_argument("--json", action="store_true")


def _on_storage(fn):
    """An action ``fn(svc, args)`` run on the storage service of a Studio opened for it."""
    def run(studio, args):
        return fn(studio.storage, args)
    return with_studio(run)


@_on_storage
def run_du(svc, args) -> int:
    from mistudio.cli.table import print_table
    from mistudio.paths import human_bytes

    du = svc.disk_usage(items_per_category=args.items)
    space = svc.space_outlook()
    if args.json:
        print_json({**du.to_dict(), "space": space.to_dict()})
        return 0
    rows = []
    for c in du.categories:
        rows.append([c.name, human_bytes(c.bytes), ""])
        rows += [["", human_bytes(i.bytes), i.name] for i in c.items if i.bytes]
    rows.append(["database", human_bytes(du.database_bytes), "mistudio.db"])
    print_table(["CATEGORY", "SIZE", "ITEM"], rows, shrink=(2,))
    print(f"total {human_bytes(du.total_bytes)} in {du.root}; "
          f"free {human_bytes(du.free_bytes)} of {human_bytes(du.disk_bytes)}")
    print(space.lines()[-1])
    return 0


@_on_storage
def run_orphans(svc, args) -> int:
    found = svc.orphans()
    if args.json:
        print_json([o.to_dict() for o in found])
    elif not found:
        print("No orphans: every folder has its record and every record its folder.")
    else:
        for o in found:
            print(f"{o.kind:6} {o.where}  ({o.detail})")
    return 0


@_on_storage
def run_policy(svc, args) -> int:
    from dataclasses import replace

    fields = {"tmp": "tmp", "orphans": "orphans", "cache_limit_gb": "cache_limit_gb",
              "keep_activation_sets": "keep_activation_sets",
              "thin_checkpoints": "thin_checkpoints", "checkpoints_kept": "checkpoints_kept",
              "feature_visuals": "feature_visuals", "at_startup": "at_startup"}

    changes = {}
    for arg, name in fields.items():
        value = getattr(args, arg)
        if value is not None:
            changes[name] = (value == "on") if value in ("on", "off") else value
    policy = svc.set_policy(replace(svc.policy(), **changes)) if changes else svc.policy()
    if args.json:
        print_json(policy.__dict__)
    else:
        for line in policy.describe():
            print(line)
        last = svc.last_cleanup()
        if last is not None:
            print(last.text())
    return 0


@_on_storage
def run_clean(svc, args) -> int:
    from mistudio.paths import human_bytes

    plan = svc.clean(dry_run=args.dry_run)
    if args.json:
        print_json({"dry_run": args.dry_run, **plan.to_dict()})
        return 0
    verb = "would delete" if args.dry_run else "deleted"
    for i in plan.items:
        print(f"{verb}  {i.rule:13} {i.where}  {human_bytes(i.bytes)}  ({i.reason})")
    for i in plan.kept:
        print(f"kept   {i.rule:13} {i.where}  ({i.reason})")
    if args.dry_run:
        print(f"{len(plan.items)} item(s) would be deleted, freeing "
              f"{human_bytes(plan.bytes)} (run without --dry-run to delete them).")
    else:
        print(f"{len(plan.items)} item(s) deleted, {human_bytes(plan.bytes)} freed.")
    return 0


@_on_storage
def run_move(svc, args) -> int:
    from mistudio.cli.runner import TerminalProgress
    from mistudio.jobs.context import JobContext
    from mistudio.paths import human_bytes

    from mistudio.errors import UserError

    if args.finish:
        print(f"Deleted the old data folder {svc.finish_move()}.")
        return 0
    if not args.destination:
        left = svc.unfinished_move()
        raise UserError("Give the folder to move the data folder to.",
                        hint=f"An earlier move left {left}: `mistudio storage move "
                             "--finish` deletes it." if left else "")
    bar = TerminalProgress("local")
    try:
        out = svc.move_data_folder(args.destination,
                                   JobContext.standalone(on_event=bar))
    finally:
        bar.finish()
    if args.json:
        print_json(out)
        return 0
    print(f"Moved {out['files']} file(s), {human_bytes(out['bytes'])}, from {out['from']} "
          f"to {out['to']}: every file verified (size and SHA-256). The data folder is now "
          f"{out['to']}; the old folder was removed.")
    return 0


def _print_backup(b) -> None:
    from mistudio.paths import human_bytes

    print(f"{b.name}  {b.created_at}  {human_bytes(b.bytes)}  schema v{b.schema_version}")


@_on_storage
def run_backup(svc, args) -> int:
    b = svc.backup(keep=args.keep)
    print_json(b.to_dict()) if args.json else _print_backup(b)
    return 0


@_on_storage
def run_backups(svc, args) -> int:
    items = svc.list_backups()
    if args.json:
        print_json([b.to_dict() for b in items])
    elif not items:
        print("No backups yet (`mistudio storage backup` takes one).")
    for b in items if not args.json else []:
        _print_backup(b)
    return 0


@_on_storage
def run_restore(svc, args) -> int:
    out = svc.restore(args.backup)
    if args.json:
        print_json(out)
        return 0
    print(f"Restored {out['restored']['name']}; the previous database is kept as "
          f"{out['previous']['name']}. Integrity: {out['integrity']}.")
    for o in out["orphans"]:
        print(f"orphan {o['kind']}: {o['where']} ({o['detail']})")
    return 0
