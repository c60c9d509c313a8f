"""Write a data folder of realistic size, for the load benchmark and the load test.

Deterministic (one seed). Everything goes through the app's repositories and file formats:

- datasets: ``documents.arrow`` written by ``RawCorpusWriter`` (a few hundred short documents
  each, so browsing works), rows through ``DatasetsRepo``, each with its finished import job;
- models: a GPT-2-shaped ``config.json`` per folder (no weights: nothing in the window's first
  view loads them), rows through ``ModelsRepo``;
- activation sets: rows through ``ActivationSetsRepo`` (their shards are not written: listing
  and picking never read them), each with its extraction job;
- trainings: a completed ``sae.train`` job, its ``trainings`` row, one SAE row (SAELens
  ``cfg.json`` and ``result.json`` in its folder, no weights) and ``--steps`` metric points
  of the ~15 metrics the engine reports per point, in ``job_metrics`` as the queue writes them;
- analyses: on the newest ``--analyses`` SAEs (d_sae 16,384-65,536; the newest, which the
  Features tab opens on, has 65,536): the arrays the feature
  table reads (``firing_count``, ``sum_act``, ``max_act``, top example positions, tokens,
  vocabulary, ``meta.json``, ``COMPLETE``) and every feature's ``analysis_features`` row.
  A feature's detail panel needs the arrays an analysis job writes besides (examples,
  histograms, logit lens), which are left out to keep the folder small.

    python scripts/make_load_folder.py DIR [--datasets 100 --models 50 --sets 200
        --trainings 500 --steps 2000 --analyses 20]

With the defaults the folder is ~1.3 GB (almost all of it the 15 million metric rows) and takes
a few minutes on a 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: the engine's per-step metrics (sae/config.py); 15 rows per step, as a real TopK run writes
METRIC_NAMES = ("loss", "mse", "explained_variance", "l0", "l1", "aux_loss", "sparsity_loss",
                "dead_fraction", "dense_fraction", "cosine_sim", "l2_ratio", "lr",
                "sparsity_coef", "tokens_per_s", "step_time_ms")
WORDS = ("the capital city river French numbers dates code Python html quote comma year name "
         "king war music cell gene protein star planet energy law court vote church film song "
         "team goal ball market price bank school student water forest island ocean").split()
HOOKS = ("blocks.{l}.hook_resid_post", "blocks.{l}.hook_mlp_out", "blocks.{l}.hook_resid_pre",
         "blocks.{l}.hook_attn_out")
D_SAE_CHOICES = (16_384, 24_576, 32_768, 49_152, 65_536)


@dataclass
class LoadSize:
    datasets: int = 100
    models: int = 50
    sets: int = 200
    trainings: int = 500
    steps: int = 2000
    analyses: int = 20
    docs_per_dataset: int = 300
    metric_names: tuple = METRIC_NAMES


def _stamp(i: int) -> str:
    """Creation times a few minutes apart, in order (ISO, as ``now_iso`` writes them)."""
    t = 1_780_000_000 + i * 240
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + "+00:00"


def _words(rng, n: int) -> str:
    return " ".join(rng.choice(WORDS, n))


def _finished_job(jobs_repo, job_id: str, kind: str, title: str, target: str, params: dict,
                  artifact_dir: str, created: str, result=None, total=None) -> None:
    from mistudio.jobs.repository import JobRecord

    jobs_repo.insert(JobRecord(id=job_id, kind=kind, status="completed", title=title,
                               target=target, params=params, artifact_dir=artifact_dir,
                               progress=total or 1.0, total=total or 1.0, created_at=created))
    jobs_repo.update(job_id, status="completed", started_at=created, finished_at=created,
                     result=result, message="")


def write_datasets(studio, repos, rng, size: LoadSize, log) -> list[str]:
    import pyarrow as pa

    from mistudio.data.raw_store import DOCUMENTS_FILE, RawCorpusWriter

    ids = []
    for i in range(size.datasets):
        ds_id = f"ds_load{i:04d}"
        folder = studio.paths.root / "datasets" / ds_id
        folder.mkdir(parents=True, exist_ok=True)
        n = size.docs_per_dataset
        texts = [_words(rng, int(rng.integers(8, 60))) for _ in range(n)]
        topics = [str(rng.choice(WORDS[:12])) for _ in range(n)]
        writer = RawCorpusWriter(folder / DOCUMENTS_FILE, where=f"dataset {i}")
        writer.write(pa.table({"text": texts, "topic": topics}))
        stats = writer.close()
        (folder / "stats.json").write_text(json.dumps(stats), encoding="utf-8")
        job_id = f"job_dsimp{i:04d}"
        created = _stamp(i)
        repos["datasets"].insert(
            id=ds_id, name=f"corpus {i:03d} ({WORDS[i % len(WORDS)]})", status="ready",
            source_kind="local", source={"spec": {"kind": "local", "path": f"/data/c{i}.jsonl"}},
            text_column="text", columns=stats["columns"], n_docs=stats["n_docs"],
            n_chars=stats["n_chars"], size_bytes=(folder / DOCUMENTS_FILE).stat().st_size,
            stats=stats, job_id="", created_at=created)
        _finished_job(studio.jobs.repo, job_id, "datasets.import", f"Import corpus {i:03d}",
                      ds_id, {"dataset_id": ds_id}, str(folder), created,
                      result={"dataset_id": ds_id, "n_docs": stats["n_docs"]})
        ids.append(ds_id)
    log(f"{len(ids)} datasets")
    return ids


def _sparse_safetensors(path: Path, n_layers: int, d_model: int) -> int:
    """A GPT-2-shaped safetensors file whose header is real and whose tensors are a hole
    (a sparse file: the full size to every reader, nothing on disk). Returns its parameters."""
    import struct

    shapes = {"transformer.wte.weight": [50257, d_model], "transformer.wpe.weight": [1024, d_model]}
    for layer in range(n_layers):
        p = f"transformer.h.{layer}."
        shapes |= {p + "attn.c_attn.weight": [d_model, 3 * d_model],
                   p + "attn.c_proj.weight": [d_model, d_model],
                   p + "mlp.c_fc.weight": [d_model, 4 * d_model],
                   p + "mlp.c_proj.weight": [4 * d_model, d_model]}
    header, offset, n_params = {}, 0, 0
    for name, shape in shapes.items():
        n = shape[0] * shape[1]
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + 4 * n]}
        offset += 4 * n
        n_params += n
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(raw)) + raw)
        fh.truncate(8 + len(raw) + offset)
    return n_params


def write_models(studio, repos, rng, size: LoadSize, log) -> list[tuple[str, str, int, int]]:
    from mistudio.models.repository import ModelRecord

    out = []
    for i in range(size.models):
        m_id = f"m_load{i:04d}"
        n_layers = int(rng.choice([6, 12, 24, 30]))
        d_model = int(rng.choice([256, 512, 768, 1024]))
        folder = studio.paths.root / "models" / m_id
        folder.mkdir(parents=True, exist_ok=True)
        cfg = {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "n_layer": n_layers,
               "n_embd": d_model, "n_head": 8, "n_positions": 1024, "vocab_size": 50257}
        (folder / "config.json").write_text(json.dumps(cfg), encoding="utf-8")
        n_params = _sparse_safetensors(folder / "model.safetensors", n_layers, d_model)
        name = f"model-{i:02d}-{n_layers}L-{d_model}"
        repos["models"].insert(ModelRecord(
            id=m_id, name=name, source="local", source_ref=str(folder), folder=str(folder),
            status="ready", family="gpt2", architecture="GPT2LMHeadModel", n_layers=n_layers,
            d_model=d_model, n_params=n_params, dtype="float32", size_bytes=n_params * 4,
            created_at=_stamp(i)))
        out.append((m_id, name, n_layers, d_model))
    log(f"{len(out)} models")
    return out


def _set_summary(rng) -> dict:
    """The statistics an extraction records (activations/format.py), of made-up norms."""
    norms = rng.gamma(9.0, float(rng.uniform(1, 5)), 4096)
    counts, edges = np.histogram(norms, bins=40)
    return {"mean_norm": float(norms.mean()), "std_norm": float(norms.std()),
            "median_norm": float(np.median(norms)), "max_norm": float(norms.max()),
            "mean_std": float(rng.uniform(0.1, 2)), "total_variance": float(rng.uniform(10, 900)),
            "norm_hist": {"counts": counts.tolist(), "edges": edges.tolist()},
            "elapsed_s": float(rng.uniform(20, 600)), "model_dtype": "float32",
            "model_device": "cpu"}


def write_activation_sets(studio, repos, rng, size: LoadSize, models, datasets, log) -> list:
    from mistudio.activations.repository import ActivationSetRecord

    recs = []
    for i in range(size.sets):
        m_id, m_name, n_layers, d_model = models[i % len(models)]
        layer = int(rng.integers(0, n_layers))
        hook = HOOKS[i % len(HOOKS)].format(l=layer)
        set_id = f"ext_load{i:04d}"
        job_id = f"job_ext{i:04d}"
        folder = studio.paths.root / "activations" / set_id
        rows = int(rng.choice([262_144, 1_048_576, 4_194_304]))
        created = _stamp(1000 + i)
        recs.append(ActivationSetRecord(
            id=set_id, hook_name=hook, status="ready", extraction_id=f"x_load{i:04d}",
            name=f"{m_name} {hook}", model_id=m_id, hook_layer=layer, dtype="float16",
            d_in=d_model, num_rows=rows, seq_len=128, dataset_id=datasets[i % len(datasets)],
            tokenization=str(studio.paths.root / "datasets" / datasets[i % len(datasets)]
                             / "tokenized" / "tk_load"),
            folder=str(folder), size_bytes=rows * d_model * 2,
            summary=_set_summary(rng), 
            params={"max_tokens": rows}, job_id=job_id, created_at=created))
        _finished_job(studio.jobs.repo, job_id, "activations.extract", f"Extract {hook}",
                      set_id, {"set_ids": [set_id]}, str(folder), created,
                      result={"sets": [set_id]})
    repos["sets"].insert_all(recs)
    log(f"{len(recs)} activation sets")
    return recs


def _metric_rows(job_id: str, steps: int, names, rng) -> list[tuple]:
    """Decaying losses, rising explained variance, the counters as a trainer reports them."""
    s = np.arange(1, steps + 1, dtype=np.float64)
    decay = np.exp(-s / (steps / 4))
    noise = rng.normal(0, 0.01, steps)
    series = {
        "loss": 0.2 + decay + noise, "mse": 0.15 + 0.8 * decay + noise,
        "explained_variance": 0.95 - 0.8 * decay + noise, "l0": 32 + 200 * decay,
        "l1": 10 + 30 * decay, "aux_loss": 0.05 * decay, "sparsity_loss": 0.01 * decay,
        "dead_fraction": 0.3 * decay, "dense_fraction": 0.01 * decay,
        "cosine_sim": 0.97 - 0.5 * decay, "l2_ratio": 0.9 + 0.05 * decay,
        "lr": np.full(steps, 3e-4), "sparsity_coef": np.zeros(steps),
        "tokens_per_s": 20_000 + 500 * noise, "step_time_ms": 50 + 5 * noise}
    t = s * 0.05
    rows = []
    for name in names:
        values = series.get(name, decay)
        rows += zip([job_id] * steps, s.astype(int).tolist(), [name] * steps,
                    values.tolist(), t.tolist())
    return rows


def write_trainings(studio, repos, rng, size: LoadSize, sets, log) -> list:
    from mistudio.sae.repository import SAERecord, TrainingRecord

    saes = []
    conn = studio.store.db.conn
    sql = "insert into job_metrics (job_id, step, name, value, t) values (?,?,?,?,?)"
    t0 = time.monotonic()
    for i in range(size.trainings):
        aset = sets[i % len(sets)]
        tr_id = f"tr_load{i:04d}"
        job_id = f"job_tr{i:04d}"
        sae_id = f"sae_load{i:04d}"
        arch = ("topk", "batchtopk", "relu", "jumprelu")[i % 4]
        newest = size.trainings - 1 - i  # analyses go to the newest SAEs, the tab's first pick
        d_sae = (int(D_SAE_CHOICES[::-1][newest % len(D_SAE_CHOICES)]) if newest < size.analyses
                 else int(aset.d_in * int(rng.choice([8, 16, 32]))))
        k = int(rng.choice([16, 32, 64])) if arch in ("topk", "batchtopk") else None
        batch = 4096
        total_tokens = size.steps * batch
        folder = studio.paths.root / "trainings" / tr_id
        sae_dir = folder / "sae"
        sae_dir.mkdir(parents=True, exist_ok=True)
        config = {"architecture": arch, "d_sae": d_sae, "k": k, "batch_size": batch,
                  "lr": 3e-4, "total_tokens": total_tokens, "activation_id": aset.id,
                  "activation_path": aset.folder, "seed": i}
        cfg_json = {"architecture": arch, "d_in": aset.d_in, "d_sae": d_sae, "dtype": "float32",
                    "k": k, "metadata": {"model_name": aset.name.split(" ")[0],
                                         "hook_name": aset.hook_name}}
        (sae_dir / "cfg.json").write_text(json.dumps(cfg_json), encoding="utf-8")
        final = {"loss": 0.2 + rng.uniform(0, 0.1), "explained_variance": rng.uniform(0.8, 0.95),
                 "l0": float(k or rng.uniform(20, 80)), "dead_fraction": rng.uniform(0, 0.1)}
        result = {"step": size.steps, "tokens": total_tokens,
                  "saes": [{"member": "main", "path": str(sae_dir), "architecture": arch,
                            "d_in": aset.d_in, "d_sae": d_sae, "k": k, "metrics": final}]}
        (folder / "result.json").write_text(json.dumps(result), encoding="utf-8")
        created = _stamp(2000 + i)
        title = f"{arch} {d_sae // 1024}k on {aset.hook_name} #{i}"
        repos["trainings"].insert(TrainingRecord(
            id=tr_id, name=title, status="completed", config=config, architecture=arch,
            activation_id=aset.id, activation_path=aset.folder, d_in=aset.d_in,
            d_out=aset.d_in, total_tokens=total_tokens, tokens=total_tokens, step=size.steps,
            job_id=job_id, folder=str(folder), result=result, created_at=created,
            finished_at=created))
        _finished_job(studio.jobs.repo, job_id, "sae.train", title, tr_id,
                      {"config": config, "activation_path": aset.folder,
                       "out_dir": str(folder)}, str(folder), created, result=result,
                      total=float(size.steps))
        repos["saes"].insert(SAERecord(
            id=sae_id, folder=str(sae_dir), source="trained", name=title, training_id=tr_id,
            member="main", architecture=arch, d_in=aset.d_in, d_sae=d_sae, d_out=aset.d_in,
            k=k, model_name=aset.name.split(" ")[0], hook_name=aset.hook_name, metrics=final,
            created_at=created))
        with conn:
            conn.executemany(sql, _metric_rows(job_id, size.steps, size.metric_names, rng))
        saes.append((sae_id, d_sae, aset))
        if (i + 1) % 50 == 0:
            log(f"{i + 1} trainings ({time.monotonic() - t0:.0f} s)")
    log(f"{len(saes)} trainings, {len(saes) * size.steps * len(size.metric_names):,} "
        "metric rows")
    return saes


def write_analyses(studio, repos, rng, size: LoadSize, saes, log) -> list[str]:
    from mistudio.analysis.repository import AnalysisRecord
    from mistudio.analysis.results import COMPLETE_MARKER, META_FILE, VOCAB_FILE

    vocab = [f"tok{i}" if i >= len(WORDS) else " " + WORDS[i] for i in range(4096)]
    n_seq, seq_len, n_top = 256, 128, 10
    tokens = rng.integers(0, len(vocab), (n_seq, seq_len)).astype(np.int32)
    n_tokens = n_seq * seq_len
    ids = []
    analysed = saes[len(saes) - size.analyses:] if size.analyses else []
    for i, (sae_id, d, aset) in enumerate(analysed):
        fa_id = f"fa_load{i:04d}"
        folder = studio.paths.root / "features" / fa_id
        folder.mkdir(parents=True, exist_ok=True)
        density = np.exp(rng.normal(-6, 2, d)).clip(0, 0.5)
        density[rng.random(d) < 0.04] = 0.0
        count = np.round(density * n_tokens).astype(np.int64)
        max_act = np.where(count > 0, rng.gamma(2.0, 3.0, d), 0).astype(np.float32)
        sum_act = count * max_act * rng.uniform(0.2, 0.6, d)
        top_seq = np.where(count[:, None] > 0, rng.integers(0, n_seq, (d, n_top)), -1)
        top_pos = np.where(count[:, None] > 0, rng.integers(1, seq_len, (d, n_top)), -1)
        np.save(folder / "tokens.npy", tokens)
        np.save(folder / "firing_count.npy", count)
        np.save(folder / "sum_act.npy", sum_act)
        np.save(folder / "sumsq_act.npy", sum_act * max_act)
        np.save(folder / "max_act.npy", max_act)
        np.save(folder / "top_seq.npy", top_seq.astype(np.int32))
        np.save(folder / "top_pos.npy", top_pos.astype(np.int32))
        (folder / VOCAB_FILE).write_text(json.dumps(vocab), encoding="utf-8")
        created = _stamp(3000 + i)
        meta = {"analysis_id": fa_id, "sae_id": sae_id, "d_in": aset.d_in, "d_sae": d,
                "hook_name": aset.hook_name, "model_id": aset.model_id,
                "tokenization": aset.tokenization, "n_tokens": n_tokens, "n_seq": n_seq,
                "seq_len": seq_len, "n_top": n_top, "dead": int((count == 0).sum()),
                "created_at": created}
        (folder / META_FILE).write_text(json.dumps(meta), encoding="utf-8")
        (folder / COMPLETE_MARKER).write_text("ok", encoding="utf-8")
        job_id = f"job_fa{i:04d}"
        repos["analyses"].insert(AnalysisRecord(
            id=fa_id, sae_id=sae_id, status="completed", job_id=job_id,
            model_id=aset.model_id, hook_name=aset.hook_name, tokenization=aset.tokenization,
            n_tokens=n_tokens, d_sae=d, folder=str(folder), summary={"dead": meta["dead"]},
            created_at=created, finished_at=created))
        _finished_job(studio.jobs.repo, job_id, "features.analyze", f"Analyze {sae_id}",
                      fa_id, {"analysis_id": fa_id, "sae_id": sae_id}, str(folder), created,
                      result={"analysis_id": fa_id, "d_sae": d})
        top_words = [" ".join(rng.choice(WORDS, 5)) for _ in range(512)]
        pick = rng.integers(0, len(top_words), (d, 3))
        ld = np.where(density > 0, np.log10(np.maximum(density, 1e-12)), -math.inf)
        repos["analyses"].replace_features(fa_id, (
            {"feature": f, "firing_count": int(count[f]), "density": float(density[f]),
             "log10_density": float(ld[f]), "max_act": float(max_act[f]),
             "mean_act": float(sum_act[f] / count[f]) if count[f] else 0.0,
             "dead": count[f] == 0, "top_tokens": top_words[pick[f, 0]],
             "logit_top": top_words[pick[f, 1]], "logit_bottom": top_words[pick[f, 2]]}
            for f in range(d)))
        ids.append(fa_id)
    log(f"{len(ids)} analyses ({sum(d for _, d, _ in analysed):,} feature rows)")
    return ids


def make_load_folder(folder: str | Path, size: LoadSize | None = None, *, seed: int = 0,
                     log=print) -> dict:
    """Fill ``folder`` (new or empty) with ``size``'s entities; returns their counts."""
    from mistudio.activations.repository import ActivationSetsRepo
    from mistudio.analysis.repository import FeatureAnalysesRepo
    from mistudio.data.repository import DatasetsRepo
    from mistudio.models.repository import ModelsRepo
    from mistudio.sae.repository import SAEsRepo, TrainingsRepo
    from mistudio.secrets_test_support import MemorySecrets
    from mistudio.studio import Studio

    size = size or LoadSize()
    folder = Path(folder)
    if folder.exists() and any(folder.iterdir()):
        raise SystemExit(f"{folder} is not empty: give a new folder.")
    rng = np.random.default_rng(seed)
    studio = Studio(folder, secrets=MemorySecrets(), setup_logs=False)
    try:
        store = studio.store
        repos = {"datasets": DatasetsRepo(store), "models": ModelsRepo(store),
                 "sets": ActivationSetsRepo(store), "trainings": TrainingsRepo(store),
                 "saes": SAEsRepo(store), "analyses": FeatureAnalysesRepo(store)}
        datasets = write_datasets(studio, repos, rng, size, log)
        models = write_models(studio, repos, rng, size, log)
        sets = write_activation_sets(studio, repos, rng, size, models, datasets, log)
        saes = write_trainings(studio, repos, rng, size, sets, log)
        analyses = write_analyses(studio, repos, rng, size, saes, log)
        studio.store.db.execute("analyze")  # the query planner's statistics, as after use
    finally:
        studio.close()
    return {"datasets": len(datasets), "models": len(models), "activation_sets": len(sets),
            "trainings": len(saes), "analyses": len(analyses)}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder")
    d = LoadSize()
    for name in ("datasets", "models", "sets", "trainings", "steps", "analyses"):
        ap.add_argument(f"--{name}", type=int, default=getattr(d, name))
    ap.add_argument("--metrics", type=int, default=len(METRIC_NAMES),
                    help="metrics per step (the engine reports ~15)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    size = LoadSize(datasets=args.datasets, models=args.models, sets=args.sets,
                    trainings=args.trainings, steps=args.steps, analyses=args.analyses,
                    metric_names=METRIC_NAMES[:max(1, args.metrics)])
    t0 = time.monotonic()
    counts = make_load_folder(args.folder, size, seed=args.seed,
                              log=lambda m: print(m, file=sys.stderr, flush=True))
    print(json.dumps(counts), f"in {time.monotonic() - t0:.0f} s")


if __name__ == "__main__":
    main()
