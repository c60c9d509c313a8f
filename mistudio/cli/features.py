"""``mistudio analyze`` and ``mistudio features list|show|search|top|ablate|export|explain|score``.

Every ``features`` command that reads an analysis takes ``--analysis FA_ID`` (default: the
SAE's latest completed analysis).
"""

from __future__ import annotations

from mistudio.cli import print_json, with_studio
from mistudio.errors import UserError


def register(sub) -> None:
    a = sub.add_parser("analyze", help="analyse every feature of an SAE over a tokenized "
                                       "dataset (dashboards: statistics, examples, logit lens)")
    a.add_argument("sae_id")
    a.add_argument("--tokens", default="", help="tokenization id or folder (default: the "
                   "SAE's activation set's, or the newest made with the model's tokenizer)")
    a.add_argument("--max-tokens", type=int, default=None,
                   help="tokens to analyse (default 3,145,728 = 24,576 x 128; 0: all)")
    a.add_argument("--model", default="", help="registered model (default: the SAE's)")
    a.add_argument("--activations", default="", help="an activation set of the SAE's hook "
                   "point to read instead of running the model")
    a.add_argument("--seed", type=int, default=0, help="seed of the interval samples")
    a.add_argument("--context-before", type=int, default=15)
    a.add_argument("--context-after", type=int, default=4)
    a.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    a.add_argument("--chunk-rows", type=int, default=None,
                   help="tokens per spill chunk of the streaming pass; a checkpoint follows "
                   "each (default 65,536)")
    a.add_argument("--block-features", type=int, default=None,
                   help="features per block of the per-feature pass (default: from memory); "
                   "a checkpoint follows each")
    a.add_argument("--resume", metavar="FA_ID", help="continue a stopped analysis instead")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=run_analyze)

    p = sub.add_parser("features", help="browse, search, probe and export analysed features")
    s = p.add_subparsers(dest="features_command", metavar="ACTION", required=True)
    lp = s.add_parser("list", help="analyses of an SAE, newest first")
    lp.add_argument("sae_id")
    lp.add_argument("--json", action="store_true")
    lp.set_defaults(func=run_list)
    sp = s.add_parser("show", help="one feature: statistics, examples, logit lens, neighbours")
    sp.add_argument("sae_id")
    sp.add_argument("index", type=int)
    sp.add_argument("--examples", type=int, default=5, help="top examples to print")
    _analysis_arg(sp)
    sp.set_defaults(func=run_show)
    qp = s.add_parser("search", help="features whose top tokens or logit-lens tokens contain "
                                     "QUERY (or whose index is QUERY)")
    qp.add_argument("sae_id")
    qp.add_argument("query")
    qp.add_argument("--limit", type=int, default=20)
    _analysis_arg(qp)
    qp.set_defaults(func=run_search)
    tp = s.add_parser("top", help="the features that fire on each token of TEXT")
    tp.add_argument("sae_id")
    tp.add_argument("text")
    tp.add_argument("-k", type=int, default=3, help="features per token")
    tp.add_argument("--json", action="store_true")
    tp.set_defaults(func=run_top)
    bp = s.add_parser("ablate", help="remove one feature on its top examples: loss change "
                                     "and logit changes per token")
    bp.add_argument("sae_id")
    bp.add_argument("index", type=int)
    bp.add_argument("--examples", type=int, default=3)
    _analysis_arg(bp)
    bp.set_defaults(func=run_ablate)
    ep = s.add_parser("export", help="Neuronpedia batch JSON, or decoder vectors")
    ep.add_argument("sae_id")
    ep.add_argument("destination", help="folder (neuronpedia) or file (vectors)")
    ep.add_argument("--format", default="neuronpedia",
                    choices=["neuronpedia", "npy", "safetensors", "json"])
    ep.add_argument("--features", default="", help="comma-separated indices (default: all "
                    "live features / all vectors)")
    ep.add_argument("--analysis", default="", metavar="FA_ID")
    ep.set_defaults(func=run_export)
    for name, helptext in (("explain", "explain features with a registered instruct model "
                            "(delphi's prompt; results stored and reused)"),
                           ("score", "explain (if needed) and score the explanations: "
                            "balanced accuracy beside a shuffled-explanation baseline")):
        xp = s.add_parser(name, help=helptext)
        xp.add_argument("sae_id")
        xp.add_argument("--features", required=True,
                        help="0-99, 3,17,250 or top50 (the 50 most often firing)")
        xp.add_argument("--model", required=True, help="registered instruct model (id/name)")
        xp.add_argument("--prompt", default="", help="prompt version (default delphi-v2)")
        xp.add_argument("--seed", type=int, default=0, help="seed of the example samples")
        xp.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
        if name == "score":
            xp.add_argument("--scorer", default="detection", choices=["detection", "fuzz"])
        _analysis_arg(xp)
        xp.set_defaults(func=run_autointerp, autointerp_action=name)


def _analysis_arg(parser) -> None:
    parser.add_argument("--analysis", default="", metavar="FA_ID",
                        help="analysis id (default: the SAE's latest)")
    parser.add_argument("--json", action="store_true")


@with_studio
def run_analyze(studio, args) -> int:
    from mistudio.analysis.job import DEFAULT_MAX_TOKENS
    from mistudio.cli.runner import follow_job_cli
    from mistudio.paths import human_bytes

    for flag, value in (("--chunk-rows", args.chunk_rows),
                        ("--block-features", args.block_features)):
        if value is not None and value < 1:
            raise UserError(f"{flag} must be at least 1 (got {value}).",
                            hint=f"Leave out {flag} for the default.")
    if args.resume:
        job = studio.features.resume_analysis(args.resume)
    else:
        max_tokens = DEFAULT_MAX_TOKENS if args.max_tokens is None else args.max_tokens
        est = studio.features.estimate(args.sae_id, max_tokens=max_tokens,
                                       tokenization=args.tokens, model=args.model)
        if not args.json:
            print(f"memory about {human_bytes(est['host'])}, temporary disk "
                  f"{human_bytes(est['spill'])}, results {human_bytes(est['results'])}")
        job = studio.features.start_analysis(
            args.sae_id, tokenization=args.tokens, model=args.model, max_tokens=max_tokens,
            seed=args.seed, activation_set=args.activations, device=args.device,
            context_before=args.context_before, context_after=args.context_after,
            **{k: v for k, v in (("chunk_rows", args.chunk_rows),
                                 ("block_features", args.block_features)) if v is not None})
    final = follow_job_cli(studio, job, quiet=args.json)
    if final.status != "completed":
        return 1
    result = final.result or {}
    if args.json:
        print_json(result)
    else:
        print(f"{job.target}: {result.get('n_tokens', 0):,} tokens, {result.get('dead', 0):,} "
              f"dead of {result.get('d_sae', 0):,} features, mean L0 "
              f"{result.get('mean_l0', 0):.1f}, {result.get('tokens_per_s', 0):,.0f} tokens/s")
    return 0


@with_studio
def run_list(studio, args) -> int:
    rows = studio.features.list_analyses(args.sae_id)
    if args.json:
        print_json([r.__dict__ for r in rows])
        return 0
    if not rows:
        print("no analyses")
        return 0
    print(f"{'ID':<12} {'STATUS':<11} {'TOKENS':>11} {'DEAD':>7}  CREATED")
    for r in rows:
        print(f"{r.id:<12} {r.status:<11} {r.n_tokens:>11,} "
              f"{r.summary.get('dead', ''):>7}  {r.created_at[:19]}")
    return 0


def _fmt_example(e) -> str:
    parts = []
    for i, (tok, v) in enumerate(zip(e.tokens, e.values)):
        text = tok.replace("\n", "\\n")
        parts.append(f"[{text}|{v:.2f}]" if i == e.centre else
                     (f"{text}({v:.2f})" if v > 0 else text))
    return "".join(parts)


@with_studio
def run_show(studio, args) -> int:
    d = studio.features.feature(args.sae_id, args.index, args.analysis)
    if args.json:
        print_json({"feature": d.feature, "dead": d.dead, "firing_count": d.firing_count,
                    "density": d.density, "max_act": d.max_act, "mean_act": d.mean_act,
                    "top_examples": [e.__dict__ for e in d.top_examples],
                    "logit_lens": {k: {"top": v.top, "bottom": v.bottom}
                                   for k, v in d.logit_lens.items()},
                    "correlated": d.correlated, "decoder_neighbours": d.decoder_neighbours,
                    "neurons": d.neurons})
        return 0
    print(f"feature {d.feature} of analysis {d.analysis_id}" + ("  (dead)" if d.dead else ""))
    print(f"fires on {d.firing_count:,} tokens (density {d.density:.3%}), max {d.max_act:.3f}, "
          f"mean when active {d.mean_act:.3f}")
    for conv, lens in d.logit_lens.items():
        print(f"logit lens ({conv}): + " + ", ".join(repr(s) for _, s, _ in lens.top[:6])
              + "   - " + ", ".join(repr(s) for _, s, _ in lens.bottom[:6]))
    if d.correlated:
        print("correlated: " + ", ".join(f"{i} ({r:.2f})" for i, r in d.correlated[:6]))
    print("decoder neighbours: " + ", ".join(f"{i} ({c:.2f})" for i, c in
                                             d.decoder_neighbours[:6]))
    if d.neurons:
        print("neurons: " + ", ".join(f"{n} ({p:.0f}%)" for n, _, p in d.neurons))
    for e in d.top_examples[:args.examples]:
        print(f"  {e.value:7.3f}  {_fmt_example(e)}")
    return 0


@with_studio
def run_search(studio, args) -> int:
    rows = studio.features.search(args.sae_id, args.query, args.analysis, limit=args.limit)
    if args.json:
        print_json([r.__dict__ for r in rows])
        return 0
    if not rows:
        print("no matching features")
    for r in rows:
        print(f"{r.feature:>7}  density {r.density:8.4%}  max {r.max_act:7.3f}  "
              f"top: {r.top_tokens!r}  logits: {r.logit_top!r}")
    return 0


@with_studio
def run_top(studio, args) -> int:
    got = studio.features.top_features(args.sae_id, args.text, k=args.k)
    if args.json:
        print_json(got.__dict__)
        return 0
    for tok, excluded, feats in zip(got.tokens, got.excluded, got.features):
        shown = "(BOS, not analysed)" if excluded else \
            "  ".join(f"{f}:{v:.2f}" for f, v in feats)
        print(f"{tok!r:>18}  {shown}")
    return 0


@with_studio
def run_ablate(studio, args) -> int:
    results = studio.features.ablate(args.sae_id, args.index, args.analysis,
                                     n_examples=args.examples)
    if args.json:
        print_json([r.__dict__ for r in results])
        return 0
    for r in results:
        print(f"sequence {r.seq}, token {r.pos}:")
        for t in range(r.pos, len(r.tokens) - 1):
            up = ", ".join(repr(s) for _, s, _ in r.logit_increase[t][:3])
            down = ", ".join(repr(s) for _, s, _ in r.logit_decrease[t][:3])
            print(f"  {r.tokens[t]!r:>16} act {r.activation[t]:6.3f}  loss "
                  f"{r.loss_change[t]:+.4f}  up: {up}  down: {down}")
    return 0


@with_studio
def run_export(studio, args) -> int:
    from mistudio.errors import UserError

    try:
        features = [int(x) for x in args.features.split(",") if x.strip()] or None
    except ValueError:
        raise UserError(f"--features takes comma-separated feature numbers, not "
                        f"{args.features!r}.", hint="For example: --features 3,17,250") from None
    if args.format == "neuronpedia":
        out = studio.features.export_neuronpedia(args.sae_id, args.destination,
                                                 analysis=args.analysis, features=features)
    else:
        out = studio.features.export_vectors(args.sae_id, args.destination, fmt=args.format,
                                             features=features)
    print(out)
    return 0


@with_studio
def run_autointerp(studio, args) -> int:
    from mistudio.autointerp.prompts import DEFAULT_PROMPT
    from mistudio.cli.runner import follow_job_cli

    scorer = getattr(args, "scorer", "") if args.autointerp_action == "score" else ""
    job = studio.autointerp.start(args.sae_id, features=args.features, model=args.model,
                                  analysis=args.analysis, scorer=scorer,
                                  prompt_version=args.prompt or DEFAULT_PROMPT,
                                  seed=args.seed, device=args.device)
    final = follow_job_cli(studio, job, quiet=args.json)
    run = studio.autointerp.get_run(job.target)
    expl, scores = studio.autointerp.run_results(run.id)
    if args.json:
        print_json({"run": run.id, "status": final.status, "summary": final.result,
                    "features": [{"feature": f, "explanation": expl[f].explanation
                                  if f in expl else None,
                                  **({"score": scores[f].score,
                                      "baseline": scores[f].baseline_score,
                                      "baseline_feature": scores[f].baseline_feature}
                                     if f in scores else {})} for f in run.features]})
    else:
        for f in run.features:
            line = f"{f:>7}  {expl[f].explanation if f in expl else '(not explained)'}"
            if f in scores:
                sc = scores[f]
                base = "n/a" if sc.baseline_score is None else f"{sc.baseline_score:.2f}"
                line = f"{f:>7}  {scorer} {sc.score:.2f} (shuffled {base})  " + line[9:]
            print(line)
        summary = final.result or {}
        if scorer and summary.get("mean_score") is not None:
            mb = summary.get("mean_baseline")
            print(f"mean balanced accuracy {summary['mean_score']:.3f}, shuffled baseline "
                  + ("n/a" if mb is None else f"{mb:.3f}"))
    return 0 if final.status == "completed" else 1
