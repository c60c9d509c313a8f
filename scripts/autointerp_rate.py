"""Measure auto-interpretation on your own data (not run in CI): features explained per
minute, and the mean detection score of real explanations against the shuffled baseline.

    python scripts/autointerp_rate.py --data-dir DIR SAE_ID --model MODEL [--features random50]
        [--threads 1] [--seed 0]

The SAE needs a completed feature analysis and MODEL a chat template. Progress is printed as
the run goes. The run is the app's resumable job: if this script is stopped (Ctrl+C, a
crash, a kill), running it again with the same arguments continues the last unfinished run
of that model and seed instead of starting over. Explanations already stored for the
model/prompt/seed are reused, so use a new --seed to measure the explaining rate again.
Prints one JSON object at the end.
"""

from __future__ import annotations

import argparse
import json
import time


def unfinished_run(studio, sae_id: str, model_id: str, seed: int, features: list[int]):
    for run in sorted(studio.autointerp.runs(sae_id), key=lambda r: r.created_at,
                      reverse=True):
        if run.model_id == model_id and run.seed == seed and run.scorer == "detection" \
                and run.features == features and run.status != "completed":
            return run
    return None


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("sae_id")
    ap.add_argument("--model", required=True)
    ap.add_argument("--features", default="random50",
                    help="as for `mistudio features score`, or randomN: N live features drawn "
                    "at random (seeded), a fairer sample than the densest ones that topN takes")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=0,
                    help="torch CPU threads (on a busy shared CPU, 1 is often faster)")
    ap.add_argument("--explain-batch", type=int, default=4)
    args = ap.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    from mistudio.app.autointerp import parse_features
    from mistudio.studio import Studio

    studio = Studio(args.data_dir)
    t0 = time.monotonic()

    def show(job_id, kind, payload):
        if kind == "progress":
            print(f"[{time.monotonic() - t0:7.0f} s] {payload.get('done'):.0f}/"
                  f"{payload.get('total') or 0:.0f} {payload.get('message') or ''}", flush=True)
        elif kind == "status":
            print(f"[{time.monotonic() - t0:7.0f} s] {payload.get('status')}", flush=True)

    studio.jobs.add_listener(show)
    try:
        model = studio.models.get(args.model)
        fa = studio.features.resolve_analysis(args.sae_id, "")
        alive = [r.feature for r in studio.features.repo.features(
            fa.id, include_dead=False, sort="firing_count", descending=True)]
        spec = args.features
        if spec.startswith("random"):
            import numpy as np

            n = int(spec[len("random"):])
            rng = np.random.default_rng(args.seed)
            spec = ",".join(str(int(f)) for f in sorted(rng.choice(alive, n, replace=False)))
        feats = parse_features(spec, int(fa.d_sae), alive)
        run = unfinished_run(studio, args.sae_id, model.id, args.seed, feats)
        if run is not None:
            print(f"resuming run {run.id} ({run.status})", flush=True)
            job = studio.autointerp.resume(run.id)
        else:
            job = studio.autointerp.start(args.sae_id, features=spec,
                                          model=args.model, scorer="detection",
                                          seed=args.seed, device=args.device,
                                          explain_batch=args.explain_batch)
        done = studio.jobs.wait(job.id)
        s = done.result or {}
        print(json.dumps({"status": done.status, "error": done.error,
                          "run": job.target, "features": len(feats),
                          "features_explained_now": s.get("explained_now"),
                          "explanations_per_minute": s.get("explanations_per_minute"),
                          "scored": s.get("scored"), "one_kind_only": s.get("one_kind_only"),
                          "mean_detection": s.get("mean_score"),
                          "mean_shuffled_baseline": s.get("mean_baseline"),
                          "mean_auroc": s.get("mean_auroc"),
                          "mean_shuffled_auroc": s.get("mean_baseline_auroc"),
                          "wall_s": round(time.monotonic() - t0, 1)}, indent=1))
        return 0 if done.status == "completed" else 1
    finally:
        studio.close(timeout=30)


if __name__ == "__main__":
    raise SystemExit(main())
