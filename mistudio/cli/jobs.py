from __future__ import annotations

from mistudio.cli import open_studio, print_json
from mistudio.cli.table import print_table


def register(sub) -> None:
    p = sub.add_parser("jobs", help="list, show and cancel jobs")
    jsub = p.add_subparsers(dest="jobs_command", metavar="ACTION", required=True)
    lp = jsub.add_parser("list", help="list jobs, newest first")
    lp.add_argument("--status", action="append", help="filter by status (repeatable)")
    lp.add_argument("--kind", help="filter by kind")
    lp.add_argument("--limit", type=int, default=50)
    lp.add_argument("--json", action="store_true")
    lp.set_defaults(func=run_list)
    sp = jsub.add_parser("show", help="one job in full, with the end of its log")
    sp.add_argument("job_id")
    sp.add_argument("--log-lines", type=int, default=20)
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=run_show)
    cp = jsub.add_parser("cancel", help="cancel a queued or running job")
    cp.add_argument("job_id")
    cp.set_defaults(func=run_cancel)
    tp = jsub.add_parser("selftest", help="run a short job through the queue to check it works")
    tp.add_argument("--seconds", type=float, default=1.0)
    tp.set_defaults(func=run_selftest)


def _fmt_progress(r) -> str:
    f = r.fraction
    return f"{f * 100:5.1f}%" if f is not None else "   - "


def run_list(args) -> int:
    studio = open_studio(args)
    try:
        rows = studio.list_jobs(status=args.status, kind=args.kind, limit=args.limit)
    finally:
        studio.close(timeout=1)
    if args.json:
        print_json([r.__dict__ for r in rows])
        return 0
    if not rows:
        print("no jobs")
        return 0
    print_table(["ID", "KIND", "STATUS", "PROG", "CREATED", "TITLE"],
                [[r.id, r.kind, r.status, _fmt_progress(r).strip(),
                  r.created_at[:16].replace("T", " "), r.title] for r in rows], right=(3,))
    return 0


def run_show(args) -> int:
    studio = open_studio(args)
    try:
        r = studio.get_job(args.job_id)
        log_tail = studio.job_log(r.id, tail=args.log_lines)
    finally:
        studio.close(timeout=1)
    if args.json:
        print_json({**r.__dict__, "log_tail": log_tail})
        return 0
    for key in ("id", "kind", "title", "target", "status", "message", "error", "created_at",
                "started_at", "finished_at", "artifact_dir", "log_path"):
        val = getattr(r, key)
        if val:
            print(f"{key:<13}: {val}")
    print(f"{'progress':<13}: {_fmt_progress(r).strip()} ({r.progress:g}/{r.total or '?'})")
    print(f"{'params':<13}: {r.params}")
    if r.result is not None:
        print(f"{'result':<13}: {r.result}")
    if log_tail:
        print("--- log (last lines) ---")
        print(log_tail)
    return 0


def run_cancel(args) -> int:
    studio = open_studio(args)
    try:
        r = studio.get_job(args.job_id)
        if r.status not in ("queued", "running", "paused"):
            print(f"job {r.id} is already {r.status}")
            return 1
        if studio.cancel_job(r.id):
            print(f"cancel requested for {r.id}")
            return 0
        print(f"job {r.id} runs in another process (the app or another command); cancel it "
              "there. A job whose process died is marked interrupted at the next start.")
        return 1
    finally:
        studio.close(timeout=5)


def run_selftest(args) -> int:
    from mistudio.cli.runner import run_job_cli

    studio = open_studio(args)
    try:
        rec = run_job_cli(studio, "demo.sleep", {"seconds": args.seconds}, title="Self-test")
        print(f"{rec.id}: {rec.status}")
        return 0 if rec.status == "completed" else 1
    finally:
        studio.close(timeout=5)
