"""``mistudio extract run|list|show|resume|delete|templates``."""

from __future__ import annotations

from mistudio.cli import open_studio, print_json


def register(sub) -> None:
    p = sub.add_parser("extract", help="extract activations to disk and manage activation sets")
    es = p.add_subparsers(dest="extract_command", metavar="ACTION", required=True)

    r = es.add_parser("run", help="extract activations of a model on a tokenized dataset")
    r.add_argument("model", help="model id, prefix or name")
    r.add_argument("tokenization", help="tokenization id (Datasets) or its folder")
    r.add_argument("--layers", help="comma-separated: numbers, ranges (2-5), middle, last, all")
    r.add_argument("--hooks", default="resid_post",
                   help="hook types, comma-separated: resid_pre, resid_post, attn_out, "
                   "mlp_out, mlp_in (default resid_post)")
    r.add_argument("--hook-point", action="append", default=[],
                   help="a full hook name (blocks.3.hook_resid_post) or module:<path>; "
                   "repeatable")
    r.add_argument("--template", help="start from a saved extraction template")
    r.add_argument("--max-tokens", type=int, help="tokens to extract (0: all)")
    r.add_argument("--batch-size", type=int, help="sequences per forward pass")
    r.add_argument("--dtype", choices=["float32", "float16", "bfloat16"],
                   help="storage dtype of the activations")
    r.add_argument("--keep-bos", action="store_true", help="also store BOS positions")
    r.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    r.add_argument("--model-dtype", default="auto",
                   choices=["auto", "float32", "float16", "bfloat16"])
    r.add_argument("--quantization", default="none", choices=["none", "8bit", "4bit"])
    r.add_argument("--variant", default="", choices=["", "8bit", "4bit"],
                   help="extract from the model's saved quantized copy (`mistudio models "
                   "quantize`): loads faster than --quantization")
    r.add_argument("--name")
    r.set_defaults(func=run_extract)

    ls = es.add_parser("list", help="list activation sets")
    ls.add_argument("--model")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=run_list)

    sh = es.add_parser("show", help="one activation set with its statistics")
    sh.add_argument("set_id")
    sh.add_argument("--json", action="store_true")
    sh.set_defaults(func=run_show)

    rs = es.add_parser("resume", help="continue an incomplete extraction")
    rs.add_argument("set_id")
    rs.add_argument("--batch-size", type=int, help="e.g. smaller after running out of memory")
    rs.set_defaults(func=run_resume)

    d = es.add_parser("delete", help="delete an activation set and its files")
    d.add_argument("set_id")
    d.set_defaults(func=run_delete)

    pn = es.add_parser("pin", help="pin a set: the cleanup rule 'keep the last N activation "
                       "sets' never deletes it (--off unpins)")
    pn.add_argument("set_id")
    pn.add_argument("--off", action="store_true", help="unpin")
    pn.set_defaults(func=run_pin)

    t = es.add_parser("templates", help="list extraction templates")
    t.add_argument("--json", action="store_true")
    t.set_defaults(func=run_templates)


def _split(text):
    return [x.strip() for x in text.split(",") if x.strip()] if text else []


def run_extract(args) -> int:
    from mistudio.cli.runner import run_job_cli

    studio = open_studio(args)
    try:
        settings = dict(studio.activations.apply_template(args.template)) if args.template \
            else {}
        layers = _split(args.layers) or settings.get("layers") or None
        hook_types = _split(args.hooks) if args.hooks != "resid_post" or not settings else \
            settings.get("hook_types", ["resid_post"])
        if not layers and not args.hook_point:
            layers = ["middle"]
        kw = {
            "max_tokens": args.max_tokens if args.max_tokens is not None else
            settings.get("max_tokens", 1_000_000),
            "batch_size": args.batch_size if args.batch_size is not None else
            settings.get("batch_size", 16),
            "store_dtype": args.dtype or settings.get("store_dtype", "float32"),
            "skip_bos": not args.keep_bos and settings.get("skip_bos", True),
        }
        # validate and build the records through the service, then run with a progress bar
        sets, job = studio.activations.start_extraction(
            args.model, args.tokenization, hook_points=args.hook_point, layers=layers,
            hook_types=hook_types, device=args.device, model_dtype=args.model_dtype,
            quantization=args.quantization, variant=args.variant, name=args.name or "", **kw)
        final = _follow(studio, job, run_job_cli)
        for s in sets:
            s = studio.activations.get(s.id)
            print(f"{s.id}  {s.hook_name:<28} {s.status:<10} {s.num_rows or 0:>10,} rows  "
                  f"{s.folder}")
        return 0 if final.status == "completed" else 1
    finally:
        studio.close(timeout=10)


def _follow(studio, job, _runner):
    from mistudio.cli.runner import follow_job_cli

    final = follow_job_cli(studio, job, stop_message="Stopping; the extraction can be resumed "
                           "with `mistudio extract resume`.")
    if final.status == "completed" and final.result:
        print(f"{final.result.get('tokens', 0):,} tokens at "
              f"{final.result.get('tokens_per_s', 0):,.0f} tokens/s")
    return final


def run_list(args) -> int:
    studio = open_studio(args)
    try:
        model_id = studio.models.get(args.model).id if args.model else None
        rows = studio.activations.list(model_id=model_id)
    finally:
        studio.close(timeout=1)
    if args.json:
        print_json([r.__dict__ for r in rows])
        return 0
    if not rows:
        print("no activation sets (create one with `mistudio extract run`)")
        return 0
    from mistudio.paths import human_bytes

    from mistudio.cli.table import print_table

    print_table(["ID", "STATUS", "HOOK", "ROWS", "D", "DTYPE", "SIZE", "MODEL", "PIN"],
                [[r.id, r.status, r.hook_name, f"{r.num_rows or 0:,}", r.d_in or "-", r.dtype,
                  human_bytes(r.size_bytes or 0), r.model_id, "pinned" if r.pinned else ""]
                 for r in rows],
                right=(3, 4, 6), shrink=(2,))
    return 0


def run_show(args) -> int:
    studio = open_studio(args)
    try:
        rec = studio.activations.get(args.set_id)
    finally:
        studio.close(timeout=1)
    if args.json:
        print_json(rec.__dict__)
        return 0
    for k in ("id", "name", "status", "hook_name", "hook_layer", "model_id", "dtype", "d_in",
              "num_rows", "seq_len", "tokenization", "folder"):
        print(f"{k:<12}: {getattr(rec, k)}")
    s = rec.summary
    if s.get("error"):
        print(f"{'error':<12}: {s['error']}")
    if s.get("mean_norm") is not None:
        print(f"{'norm':<12}: mean {s['mean_norm']:.3f}, std {s['std_norm']:.3f}, "
              f"median {s['median_norm']:.3f}, max {s['max_norm']:.3f}")
        counts = s["norm_hist"]["counts"]
        peak = max(counts) or 1
        edges = s["norm_hist"]["edges"]
        step = max(1, len(counts) // 10)
        for i in range(0, len(counts), step):
            c = sum(counts[i:i + step])
            print(f"  {edges[i]:>9.2f} {'#' * int(40 * c / (peak * step))}")
    return 0


def run_resume(args) -> int:
    from mistudio.cli.runner import run_job_cli

    studio = open_studio(args)
    try:
        job = studio.activations.resume_extraction(args.set_id, batch_size=args.batch_size)
        final = _follow(studio, job, run_job_cli)
        return 0 if final.status == "completed" else 1
    finally:
        studio.close(timeout=10)


def run_delete(args) -> int:
    studio = open_studio(args)
    try:
        rec = studio.activations.get(args.set_id)
        studio.activations.delete(rec.id)
        print(f"deleted {rec.id}")
        return 0
    finally:
        studio.close(timeout=1)


def run_pin(args) -> int:
    studio = open_studio(args)
    try:
        rec = studio.activations.set_pinned(args.set_id, not args.off)
        print(f"{rec.id}: {'pinned' if rec.pinned else 'not pinned'}")
        return 0
    finally:
        studio.close(timeout=1)


def run_templates(args) -> int:
    studio = open_studio(args)
    try:
        rows = studio.templates.list(kind="extraction")
    finally:
        studio.close(timeout=1)
    if args.json:
        print_json([t.__dict__ for t in rows])
        return 0
    for t in rows:
        s = t.settings
        print(f"{t.name:<34} layers={s.get('layers')} hooks={s.get('hook_types')} "
              f"max_tokens={s.get('max_tokens'):,} dtype={s.get('store_dtype')}"
              f"{'  (built-in)' if t.builtin else ''}")
    return 0
