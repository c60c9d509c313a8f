"""``mistudio models add|list|show|delete|tree|hooks|resume|demo|release``."""

from __future__ import annotations

from mistudio.cli import open_studio, print_json


def register(sub) -> None:
    p = sub.add_parser("models", help="add, list, inspect and delete language models")
    ms = p.add_subparsers(dest="models_command", metavar="ACTION", required=True)

    a = ms.add_parser("add", help="add a model: a Hub id (owner/name), a local folder or a "
                      ".gguf file; 'demo' adds the offline SmolLM2-135M demo")
    a.add_argument("source", help="owner/name on the Hub, a folder, a .gguf file, or 'demo'")
    a.add_argument("--name", help="display name")
    a.add_argument("--revision", help="Hub branch, tag or commit to pin")
    a.add_argument("--copy", action="store_true",
                   help="copy a local folder into the data folder (default: use it in place)")
    a.add_argument("--trust-remote-code", action="store_true",
                   help="run the repository's own Python code (only for authors you trust)")
    a.add_argument("--no-wait", action="store_true", help="submit the job and return")
    a.set_defaults(func=run_add)

    ls = ms.add_parser("list", help="list models")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=run_list)

    sh = ms.add_parser("show", help="architecture summary and memory estimates")
    sh.add_argument("model", help="id, id prefix or name")
    sh.add_argument("--json", action="store_true")
    sh.set_defaults(func=run_show)

    tr = ms.add_parser("tree", help="the module tree (repeated blocks collapsed)")
    tr.add_argument("model")
    tr.add_argument("--depth", type=int, default=4)
    tr.set_defaults(func=run_tree)

    hk = ms.add_parser("hooks", help="the hook points you can extract from")
    hk.add_argument("model")
    hk.set_defaults(func=run_hooks)

    rs = ms.add_parser("resume", help="resume an incomplete Hub download")
    rs.add_argument("model")
    rs.set_defaults(func=run_resume)

    q = ms.add_parser("quantize", help="save an 8-bit or 4-bit copy beside the model (CUDA; "
                      "on the CPU with the 'allow_cpu_quantization' setting)")
    q.add_argument("model")
    q.add_argument("--bits", choices=["8bit", "4bit"], default="4bit")
    q.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto")
    q.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default="bfloat16",
                   help="dtype of the parts that stay unquantized (embeddings, norms, head)")
    q.set_defaults(func=run_quantize)

    d = ms.add_parser("delete", help="forget a model (files deleted only if they are in the "
                      "data folder)")
    d.add_argument("model")
    d.set_defaults(func=run_delete)


def _wait(studio, job, no_wait: bool = False) -> int:
    from mistudio.cli.runner import follow_job_cli

    if no_wait or job is None:
        if job is not None:
            print(f"submitted job {job.id}")
        return 0
    final = follow_job_cli(studio, job)  # prints the error of a failed job
    return 0 if final.status == "completed" else 1


def run_add(args) -> int:
    from pathlib import Path

    studio = open_studio(args)
    try:
        src = args.source
        if src == "demo":
            rec, job = studio.models.add_demo()
        elif Path(src).expanduser().exists():
            rec, job = studio.models.add_local(src, copy=args.copy, name=args.name,
                                               trust_remote_code=args.trust_remote_code)
        else:
            if args.trust_remote_code:
                print("warning: --trust-remote-code runs code from the repository on this "
                      "machine.")
            rec, job = studio.models.add_hub(src, revision=args.revision, name=args.name,
                                             trust_remote_code=args.trust_remote_code)
        rc = _wait(studio, job, args.no_wait)
        if rc:  # the job's error is printed; a failed add leaves no model to show
            return rc
        rec = studio.models.get(rec.id)
        print(f"{rec.id}  {rec.name}  {rec.status}")
        return rc
    finally:
        studio.close(timeout=5)


def _size(n) -> str:
    from mistudio.paths import human_bytes

    return human_bytes(n) if n else "-"


def run_list(args) -> int:
    studio = open_studio(args)
    try:
        rows = studio.models.list()
    finally:
        studio.close(timeout=1)
    if args.json:
        print_json([r.__dict__ for r in rows])
        return 0
    if not rows:
        print("no models (add one with `mistudio models add <owner/name | folder | file.gguf | "
              "demo>`)")
        return 0
    from mistudio.cli.table import print_table

    table = []
    for r in rows:
        params = f"{r.n_params / 1e6:.1f}M" if r.n_params else "-"
        table.append([r.id, r.status, r.family or "-", r.n_layers or "-", r.d_model or "-",
                      params, _size(r.size_bytes), r.source, r.name])
    print_table(["ID", "STATUS", "FAMILY", "LAYERS", "D", "PARAMS", "SIZE", "SOURCE", "NAME"],
                table, right=(3, 4, 5, 6))
    return 0


def run_show(args) -> int:
    studio = open_studio(args)
    try:
        rec = studio.models.get(args.model)
        out = {"record": rec.__dict__}
        if rec.status == "ready":
            out["architecture"] = studio.models.inspect(rec.id)
            out["memory"] = {dt: studio.models.memory_estimate(rec.id, dtype=dt, device="auto")
                             for dt in ("float32", "bfloat16")}
            out["quantization"] = studio.models.quantization_options()
    finally:
        studio.close(timeout=1)
    if args.json:
        print_json(out)
        return 0
    for k in ("id", "name", "status", "source", "source_ref", "revision", "commit_sha",
              "folder", "error"):
        v = getattr(rec, k)
        if v:
            print(f"{k:<16}: {v}")
    a = out.get("architecture")
    if a:
        print(f"{'family':<16}: {a['family_label']} ({a['architecture']})")
        for k in ("n_layers", "d_model", "n_heads", "n_kv_heads", "d_mlp", "vocab_size",
                  "context_length", "dtype"):
            print(f"{k:<16}: {a[k]}")
        print(f"{'parameters':<16}: {a['n_params']:,}")
        print(f"{'weights on disk':<16}: {_size(a['weights_bytes'])}")
        for dt, est in out["memory"].items():
            print(f"{'memory ' + dt:<16}: {_size(est['total'])} on {est['device']} "
                  f"({est['verdict']}; {_size(est['available'])} {est['available_what']})")
        for q, why in out["quantization"].items():
            if q != "none":
                print(f"{q:<16}: {'available' if not why else why}")
    return 0


def run_tree(args) -> int:
    from mistudio.errors import UserError

    if args.depth < 0:
        raise UserError(f"--depth cannot be {args.depth}.", hint="Use 0 (the model only) or "
                        "more levels, e.g. --depth 4.")
    studio = open_studio(args)
    try:
        tree = studio.models.module_tree(args.model)
    finally:
        studio.close(timeout=1)

    def show(node, depth, indent):
        rep = f" x{node['repeat']}" if node["repeat"] > 1 else ""
        print(f"{'  ' * indent}{node['name']}{rep}: {node['type']} "
              f"({node['params']:,} params)  [{node['path']}]")
        if depth > 0:
            for c in node["children"]:
                show(c, depth - 1, indent + 1)

    show(tree, args.depth, 0)
    return 0


def run_hooks(args) -> int:
    studio = open_studio(args)
    try:
        hps = studio.models.hook_points(args.model)
    finally:
        studio.close(timeout=1)
    if not hps:
        print("hook names are not mapped for this family; use module:<path> (see `models tree`)")
        return 0
    for h in hps:
        print(f"{h['name']:<28} {h['io']:<6} {h['module']:<36} {h['label']}")
    return 0


def run_resume(args) -> int:
    studio = open_studio(args)
    try:
        job = studio.models.resume_download(args.model)
        return _wait(studio, job)
    finally:
        studio.close(timeout=5)


def run_quantize(args) -> int:
    studio = open_studio(args)
    try:
        return _wait(studio, studio.models.save_quantized(args.model, args.bits,
                                                          dtype=args.dtype, device=args.device))
    finally:
        studio.close(timeout=5)


def run_delete(args) -> int:
    studio = open_studio(args)
    try:
        rec = studio.models.get(args.model)
        studio.models.delete(rec.id)
        print(f"deleted {rec.id} ({rec.name})" + (" — the original folder was kept"
                                                  if rec.linked else ""))
        return 0
    finally:
        studio.close(timeout=1)
