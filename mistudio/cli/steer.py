"""``mistudio steer MODEL --sae SAE --feature 123:+8 --prompt TEXT``: steered vs baseline
generation side by side, with the metrics (``--json`` for machines)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from mistudio.cli import open_studio, print_json


def register(sub) -> None:
    p = sub.add_parser("steer", help="generate with and without steering by SAE features, "
                                     "and measure the difference",
                       description="Generate a baseline and steered outputs from one prompt and "
                                   "seed, printed side by side with per-token KL, perplexity "
                                   "and feature activation changes.")
    p.add_argument("model", nargs="?", help="model id or name")
    p.add_argument("--sae", help="SAE id (its hook point is where steering happens)")
    p.add_argument("--prompt", help="the text to continue")
    p.add_argument("--feature", action="append", default=[], metavar="F:COEF",
                   help="add COEF × feature F's decoder direction (e.g. 123:+8); repeatable")
    p.add_argument("--clamp", action="append", default=[], metavar="F:VALUE",
                   help="clamp feature F to VALUE, keeping the SAE's error term; repeatable")
    p.add_argument("--ablate", action="append", default=[], metavar="F",
                   help="clamp feature F to 0; repeatable")
    p.add_argument("--vector", action="append", default=[], metavar="FILE:COEF",
                   help="add COEF × a raw direction read from FILE (JSON list or .npy)")
    p.add_argument("--contrast", nargs=3, metavar=("POSITIVE", "NEGATIVE", "COEF"),
                   help="add COEF × the mean difference of the hook activations of two prompt "
                        "files (one prompt a line), read at each prompt's last token")
    p.add_argument("--units", choices=["raw", "max", "norm"], default="raw",
                   help="coefficient units: raw, × the feature's max activation (needs an "
                        "analysis), × the typical residual norm (default raw)")
    p.add_argument("--sweep", metavar="SPEC", help="one column per value: F:FROM..TO:COUNT "
                   "(e.g. 123:-8..8:5), or F1,F2,F3:COEF to sweep features")
    p.add_argument("--scope", choices=["all", "prompt", "generated"], default="all",
                   help="positions steered (default all)")
    p.add_argument("--max-new-tokens", type=int, default=40)
    p.add_argument("--sample", action="store_true", help="sample instead of greedy decoding")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--chat", action="store_true", help="wrap the prompt in the model's chat "
                                                       "template")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--preset", help="add a saved preset's interventions (must match the SAE)")
    p.add_argument("--save-preset", metavar="NAME", help="save these interventions as a preset")
    p.add_argument("--list-presets", action="store_true", help="list presets and exit")
    p.add_argument("--history", action="store_true", help="list past generations and exit")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run_steer)


def _interventions(args, studio):
    from mistudio.errors import UserError
    from mistudio.steering.interventions import Intervention, parse_feature

    ivs = [parse_feature(s, "add", args.units) for s in args.feature]
    ivs += [parse_feature(s, "clamp", args.units) for s in args.clamp]
    ivs += [parse_feature(s, "ablate", args.units) for s in args.ablate]
    for spec in args.vector:
        file, _, coef = spec.rpartition(":")
        if not file:
            raise UserError(f"{spec!r} is not FILE:COEF.", hint="e.g. --vector dir.json:4")
        ivs.append(Intervention("vector", value=float(coef), units=args.units,
                                vector=_read_vector(file), name=Path(file).stem))
    if args.contrast:
        pos, neg, coef = args.contrast
        ivs.append(Intervention("vector", value=float(coef), units=args.units,
                                positive=_lines(pos), negative=_lines(neg),
                                name=f"{Path(pos).stem}−{Path(neg).stem}"))
    if args.preset:
        ivs += studio.steering.preset_for(args.preset, args.sae).interventions
    return ivs


def _read_vector(file: str) -> list[float]:
    from mistudio.errors import UserError

    path = Path(file).expanduser()
    try:
        if path.suffix == ".npy":
            import numpy as np

            return [float(v) for v in np.load(path).reshape(-1)]
        data = json.loads(path.read_text(encoding="utf-8"))
        return [float(v) for v in data]
    except (OSError, ValueError, TypeError) as exc:
        raise UserError(f"Cannot read a vector from {path}: {exc}.",
                        hint="Give a JSON list of numbers or a .npy array.") from None


def _lines(file: str) -> list[str]:
    from mistudio.errors import UserError

    try:
        lines = Path(file).expanduser().read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise UserError(f"Cannot read {file}: {exc.strerror or exc}.") from None
    lines = [ln for ln in lines if ln.strip()]
    if not lines:
        raise UserError(f"{file} has no prompts.", hint="Write one prompt a line.")
    return lines


def run_steer(args) -> int:
    from mistudio.errors import UserError
    from mistudio.steering.interventions import Column, parse_sweep, sweep_columns

    studio = open_studio(args)
    try:
        svc = studio.steering
        if args.list_presets:
            rows = [p.to_dict() for p in svc.presets()]
            if args.json:
                print_json(rows)
            for p in ([] if args.json else rows):
                print(f"{p['name']:<24} {p['sae']['hook_name']:<28} "
                      f"{', '.join(_label(i) for i in p['interventions'])}")
            return 0
        if args.history:
            rows = svc.history(50)
            if args.json:
                print_json([r.__dict__ for r in rows])
            for r in ([] if args.json else rows):
                print(f"{r.id}  {r.created_at[:19]}  {r.status:<10} {r.title}")
            return 0
        if not args.model or not args.sae or args.prompt is None:
            raise UserError("Give a model, --sae and --prompt.",
                            hint="e.g. mistudio steer MODEL --sae SAE --feature 123:+8 "
                                 "--prompt 'Once upon a time'")
        base = _interventions(args, studio)
        columns = (sweep_columns(base, parse_sweep(args.sweep, args.units)) if args.sweep
                   else [Column(base)])
        sampling = {"max_new_tokens": args.max_new_tokens, "greedy": not args.sample,
                    "temperature": args.temperature, "top_p": args.top_p, "top_k": args.top_k,
                    "seed": args.seed}
        params = svc.prepare(args.model, args.sae, columns, args.prompt, sampling=sampling,
                             scope=args.scope, chat=args.chat, device=args.device)
        if args.save_preset:
            svc.save_preset(args.save_preset, args.sae, base, scope=args.scope)
        rec, job = svc.submit(params)
        from mistudio.cli.runner import TerminalProgress

        bar = TerminalProgress(job.id, quiet=args.json)
        studio.jobs.add_listener(bar)
        try:
            result = svc.wait(rec.id)
        except KeyboardInterrupt:
            svc.stop(rec.id)
            raise
        finally:
            bar.finish()
            studio.jobs.remove_listener(bar)
        if args.json:
            print_json(result)
        else:
            _print(result)
        return 0
    finally:
        studio.close()


def _label(iv: dict) -> str:
    from mistudio.steering.interventions import Intervention

    return Intervention.from_dict(iv).label


def _print(result: dict) -> None:
    out = sys.stdout
    print(f"prompt: {result['prompt']!r}   scope: {result['scope']}   "
          f"seed: {result['sampling']['seed']}", file=out)
    if result.get("typical_norm") is not None:
        print(f"typical residual norm: {result['typical_norm']:.3g} "
              f"({result['norm_source']})", file=out)
    for col in result["columns"]:
        print(f"\n=== {col['label']} ===", file=out)
        print(col["text"], file=out)
        line = f"perplexity (unsteered model): {col['perplexity']:.3g}"
        if col["label"] != "baseline":
            line += f"   mean KL vs baseline: {col['kl_mean']:.4g} nats"
        print(line, file=out)
        for t in col.get("targets", []):
            print(f"feature {t['feature']}: {t['before']:.3g} -> {t['after']:.3g}", file=out)
        off = col.get("off_target", [])[:5]
        if off:
            print("largest off-target changes: " + ", ".join(
                f"#{o['feature']} {o['change']:+.3g}" for o in off), file=out)
    print(f"\n{result['tokens_per_s']:.1f} tokens/s on {result['device']}", file=out)
