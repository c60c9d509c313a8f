"""Measure auto-interpretation on your own data (not run in CI): features explained per
minute, and the mean detection score of real explanations against the shuffled baseline.

    python scripts/autointerp_rate.py --data-dir DIR SAE_ID --model MODEL [--features top50]

The SAE needs a completed feature analysis and MODEL a chat template. Prints one JSON
object. Explanations already stored for the model/prompt/seed are reused, so use a new
--seed to measure the explaining rate again.
"""

from __future__ import annotations

import argparse
import json
import time


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("sae_id")
    ap.add_argument("--model", required=True)
    ap.add_argument("--features", default="top50")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    from mistudio.studio import Studio

    studio = Studio(args.data_dir)
    try:
        t0 = time.monotonic()
        job = studio.autointerp.start(args.sae_id, features=args.features, model=args.model,
                                      scorer="detection", seed=args.seed, device=args.device)
        done = studio.jobs.wait(job.id)
        s = done.result or {}
        print(json.dumps({"status": done.status, "error": done.error,
                          "features_explained_now": s.get("explained_now"),
                          "explanations_per_minute": s.get("explanations_per_minute"),
                          "scored": s.get("scored"), "mean_detection": s.get("mean_score"),
                          "mean_shuffled_baseline": s.get("mean_baseline"),
                          "wall_s": round(time.monotonic() - t0, 1)}, indent=1))
        return 0 if done.status == "completed" else 1
    finally:
        studio.close(timeout=30)


if __name__ == "__main__":
    raise SystemExit(main())
