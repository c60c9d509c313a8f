"""``mistudio datasets add|list|show|docs|tokenize|stats|rename|delete``."""

from __future__ import annotations

import sys

from mistudio.cli import open_studio, print_json


def register(sub) -> None:
    p = sub.add_parser("datasets", help="import, tokenize, browse and manage datasets")
    dsub = p.add_subparsers(dest="datasets_command", metavar="ACTION", required=True)

    a = dsub.add_parser("add", help="import a dataset from local files, the Hub, or the demo",
                        description="Import a dataset. Give a file or folder, or --hub ID, or "
                        "--demo. Local formats: .txt, folder of .txt, .jsonl, .json, .csv/.tsv, "
                        ".parquet.")
    a.add_argument("path", nargs="?", help="a local file or folder")
    a.add_argument("--hub", metavar="ID", help="a Hugging Face dataset id (streamed)")
    a.add_argument("--demo", action="store_true",
                   help="the offline demo corpus (Wikipedia summaries, CC BY-SA 4.0)")
    a.add_argument("--name", help="display name (default: from the source)")
    a.add_argument("--format", default="auto",
                   choices=["auto", "txt", "txt_folder", "jsonl", "json", "csv", "parquet"])
    a.add_argument("--txt-mode", default="blocks", choices=["blocks", "file", "lines"],
                   help=".txt: one document per blank-line-separated block (default), per "
                   "file, or per line")
    a.add_argument("--encoding", default="utf-8", help="text encoding of local files")
    a.add_argument("--text-column", default="", help="the column holding the text "
                   "(default: detected)")
    a.add_argument("--config", default="", help="Hub dataset configuration")
    a.add_argument("--split", default="train", help="Hub dataset split")
    a.add_argument("--revision", default="", help="Hub dataset revision")
    a.add_argument("--limit", type=int, help="import at most this many documents")
    a.add_argument("--no-wait", action="store_true", help="start the import and return")
    a.set_defaults(func=run_add)

    lp = dsub.add_parser("list", help="list datasets")
    lp.add_argument("--json", action="store_true")
    lp.set_defaults(func=run_list)

    sp = dsub.add_parser("show", help="one dataset: source, statistics, tokenizations")
    sp.add_argument("dataset")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=run_show)

    dp = dsub.add_parser("docs", help="print documents (a page, or those matching --search)")
    dp.add_argument("dataset")
    dp.add_argument("--offset", type=int, default=0)
    dp.add_argument("--limit", type=int, default=10)
    dp.add_argument("--search", default="", help="only documents containing this text")
    dp.add_argument("--where", action="append", default=[], metavar="COLUMN=VALUE",
                    help="only documents whose column equals the value (repeatable)")
    dp.add_argument("--chars", type=int, default=300, help="characters shown per document")
    dp.set_defaults(func=run_docs)

    tp = dsub.add_parser("tokenize", help="tokenize a dataset for a model")
    tp.add_argument("dataset")
    tp.add_argument("--tokenizer", "--model", dest="tokenizer", required=True,
                    help="a registered model id, or a folder (or .gguf file) with a tokenizer")
    tp.add_argument("--seq-len", type=int, default=128, help="context length (default 128)")
    tp.add_argument("--packing", default="packed", choices=["packed", "padded"],
                    help="packed: concatenate documents; padded: one document per sequence")
    tp.add_argument("--no-bos", action="store_true", help="do not start sequences with BOS")
    tp.add_argument("--separator", default="eos", choices=["eos", "bos", "none"],
                    help="token between packed documents")
    tp.add_argument("--min-doc-tokens", type=int, default=0,
                    help="leave out documents shorter than this")
    tp.add_argument("--drop-last", action="store_true", help="drop the last partial sequence")
    tp.add_argument("--max-sequences", type=int, help="stop after this many sequences")
    tp.add_argument("--force", action="store_true",
                    help="re-tokenize even if an identical tokenization exists")
    tp.add_argument("--no-wait", action="store_true")
    tp.set_defaults(func=run_tokenize)

    st = dsub.add_parser("stats", help="recompute a dataset's stored statistics")
    st.add_argument("dataset")
    st.set_defaults(func=run_stats)

    rp = dsub.add_parser("rename", help="rename a dataset")
    rp.add_argument("dataset")
    rp.add_argument("name")
    rp.set_defaults(func=run_rename)

    xp = dsub.add_parser("delete", help="delete a dataset (or one tokenization) and its files")
    xp.add_argument("dataset", help="a dataset id, or a tokenization id (tok_...)")
    xp.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    xp.set_defaults(func=run_delete)


def _wait(studio, job, no_wait: bool):
    """Block on an already-submitted job with a progress bar (Ctrl+C cancels it)."""
    from mistudio.cli.runner import follow_job_cli

    if no_wait:
        print(f"started job {job.id}")
        return None
    return follow_job_cli(studio, job, stop_message="Stopping...")


def _size(n) -> str:
    from mistudio.paths import human_bytes

    return human_bytes(n) if n else "-"


def run_add(args) -> int:
    from mistudio.errors import UserError

    chosen = [bool(args.path), bool(args.hub), bool(args.demo)]
    if sum(chosen) != 1:
        raise UserError("Give exactly one source: a PATH, --hub ID, or --demo.",
                        hint="e.g. `mistudio datasets add notes.txt` or "
                        "`mistudio datasets add --demo`.")
    studio = open_studio(args)
    try:
        if args.demo:
            source = {"kind": "demo", "limit": args.limit}
        elif args.hub:
            source = {"kind": "hub", "hub_id": args.hub, "config": args.config,
                      "split": args.split, "revision": args.revision,
                      "text_column": args.text_column, "limit": args.limit}
        else:
            source = {"kind": "local", "path": args.path, "format": args.format,
                      "txt_mode": args.txt_mode, "encoding": args.encoding,
                      "text_column": args.text_column, "limit": args.limit}
        rec, job = studio.datasets.add(source, name=args.name)
        final = _wait(studio, job, args.no_wait)
        if final is None:
            print(rec.id)
            return 0
        if final.status != "completed":
            return 1
        ds = studio.datasets.get(rec.id)
        print(f"{ds.id}  {ds.name}: {ds.n_docs:,} documents, {ds.n_chars:,} characters, "
              f"{_size(ds.size_bytes)}")
        if ds.source.get("attribution"):
            print(ds.source["attribution"])
        return 0
    finally:
        studio.close(timeout=5)


def run_list(args) -> int:
    studio = open_studio(args)
    try:
        rows = studio.datasets.list()
        toks = studio.datasets.tokenizations()
    finally:
        studio.close(timeout=1)
    if args.json:
        print_json([{**r.to_dict(), "tokenizations": [t.to_dict() for t in toks
                                                      if t.dataset_id == r.id]} for r in rows])
        return 0
    if not rows:
        print("no datasets (add one with `mistudio datasets add`)")
        return 0
    from mistudio.cli.table import print_table

    table = []
    for r in rows:
        n_tok = sum(1 for t in toks if t.dataset_id == r.id and t.status == "ready")
        docs = f"{r.n_docs:,}" if r.n_docs is not None else "-"
        table.append([r.id, r.status, docs, _size(r.size_bytes), n_tok, r.source_kind, r.name])
    print_table(["ID", "STATUS", "DOCS", "SIZE", "TOK", "SOURCE", "NAME"], table,
                right=(2, 3, 4))
    return 0


def run_show(args) -> int:
    studio = open_studio(args)
    try:
        ds = studio.datasets.get(args.dataset)
        toks = studio.datasets.tokenizations(ds.id)
    finally:
        studio.close(timeout=1)
    if args.json:
        print_json({**ds.to_dict(), "tokenizations": [t.to_dict() for t in toks]})
        return 0
    print(f"{ds.id}  {ds.name}  [{ds.status}]")
    src = {k: v for k, v in ds.source.items() if k not in ("spec",)}
    for key, value in src.items():
        print(f"  {key:<12}: {value}")
    if ds.status == "ready":
        st = ds.stats
        cl = st.get("char_length", {})
        print(f"  documents   : {ds.n_docs:,} ({st.get('n_empty_skipped', 0):,} empty skipped)")
        print(f"  characters  : {ds.n_chars:,} (per document: median {cl.get('median', 0):,.0f}, "
              f"max {cl.get('max', 0):,})")
        print(f"  text column : {ds.text_column}; columns: "
              + ", ".join(c["name"] for c in ds.columns))
        print(f"  size on disk: {_size(ds.size_bytes)}")
        for col, values in st.get("categories", {}).items():
            shown = ", ".join(f"{v} {c:,}" for v, c in values[:12])
            print(f"  {col:<12}: {shown}")
    for t in toks:
        s = t.settings
        line = (f"  {t.id}  [{t.status}] {t.tokenizer}, context {t.seq_len}, {s.get('packing')}"
                f"{', BOS' if s.get('prepend_bos') else ''}")
        if t.status == "ready":
            ts = t.stats
            line += (f": {t.n_seq:,} sequences, {t.n_tokens:,} tokens, vocab coverage "
                     f"{ts.get('vocab_coverage', 0):.1%}, {_size(t.size_bytes)}")
        print(line)
        if t.status == "ready":
            top = ", ".join(repr(tok) for _i, tok, _c in t.stats.get("top_tokens", [])[:10])
            print(f"      top tokens: {top}")
            print(f"      folder: {t.path}")
    return 0


def run_docs(args) -> int:
    from mistudio.errors import UserError

    if args.limit < 1 or args.offset < 0 or args.chars < 1:
        bad = ("--limit", args.limit) if args.limit < 1 else (
            ("--offset", args.offset) if args.offset < 0 else ("--chars", args.chars))
        raise UserError(f"{bad[0]} cannot be {bad[1]}.",
                        hint="--limit and --chars are at least 1, --offset at least 0.")
    where = {}
    for item in args.where:
        col, sep, value = item.partition("=")
        if not sep:
            raise UserError(f"--where {item!r} is not COLUMN=VALUE.", hint="e.g. topic=Arts")
        where[col] = value
    studio = open_studio(args)
    try:
        ds = studio.datasets.get(args.dataset)
        if args.search or where:
            idx, complete = studio.datasets.search(ds.id, args.search, column_equals=where,
                                                   limit=args.offset + args.limit)
            rows = studio.datasets.corpus(ds.id).take(idx[args.offset:])
            print(f"{len(idx):,}{'' if complete else '+'} matching documents", file=sys.stderr)
        else:
            rows = studio.datasets.documents(ds.id, args.offset, args.limit)
        for row in rows:
            text = " ".join(row.pop("text").split())
            meta = ", ".join(f"{k}={v}" for k, v in row.items() if k != "index")
            print(f"[{row['index']}] {meta}".rstrip())
            print(f"    {text[:args.chars]}{'...' if len(text) > args.chars else ''}")
        if ds.source.get("attribution"):
            print(ds.source["attribution"], file=sys.stderr)
        return 0
    finally:
        studio.close(timeout=1)


def run_tokenize(args) -> int:
    studio = open_studio(args)
    try:
        settings = {"seq_len": args.seq_len, "packing": args.packing,
                    "prepend_bos": not args.no_bos, "separator": args.separator,
                    "min_doc_tokens": args.min_doc_tokens, "drop_last": args.drop_last,
                    "max_sequences": args.max_sequences}
        tok, job = studio.datasets.tokenize(args.dataset, args.tokenizer, settings,
                                            force=args.force)
        if job is None:
            print(f"{tok.id}: already tokenized with these settings ({tok.n_seq:,} sequences); "
                  "use --force to redo it")
            return 0
        final = _wait(studio, job, args.no_wait)
        if final is None:
            print(tok.id)
            return 0
        if final.status != "completed":
            return 1
        tok = studio.datasets.get_tokenization(tok.id)
        print(f"{tok.id}: {tok.n_seq:,} sequences x {tok.seq_len}, {tok.n_tokens:,} tokens, "
              f"{tok.stats.get('tokens_per_s') or 0:,.0f} tokens/s")
        print(f"folder: {tok.path}")
        return 0
    finally:
        studio.close(timeout=5)


def run_stats(args) -> int:
    studio = open_studio(args)
    try:
        final = _wait(studio, studio.datasets.compute_stats(args.dataset), False)
        return 0 if final.status == "completed" else 1
    finally:
        studio.close(timeout=5)


def run_rename(args) -> int:
    studio = open_studio(args)
    try:
        ds = studio.datasets.rename(args.dataset, args.name)
        print(f"{ds.id}: {ds.name}")
        return 0
    finally:
        studio.close(timeout=1)


def run_delete(args) -> int:
    studio = open_studio(args)
    try:
        if args.dataset.startswith("tok_"):
            tok = studio.datasets.get_tokenization(args.dataset)
            what, action = f"tokenization {tok.id} ({tok.tokenizer}, {tok.seq_len})", \
                lambda: studio.datasets.delete_tokenization(tok.id)
        else:
            ds = studio.datasets.get(args.dataset)
            n_tok = len(studio.datasets.tokenizations(ds.id))
            what = (f"dataset {ds.id} '{ds.name}' ({_size(ds.size_bytes)}, {n_tok} "
                    f"tokenization{'s' if n_tok != 1 else ''})")
            action = lambda: studio.datasets.delete(ds.id)  # noqa: E731
        if not args.yes:
            if not sys.stdin.isatty():
                print(f"refusing to delete {what} without --yes", file=sys.stderr)
                return 2
            answer = input(f"Delete {what} and its files? [y/N] ")
            if answer.strip().lower() not in ("y", "yes"):
                print("kept")
                return 1
        action()
        print(f"deleted {what}")
        return 0
    finally:
        studio.close(timeout=1)
