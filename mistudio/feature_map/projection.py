"""The feature map: every decoder direction of an SAE placed in 2-D (UMAP or t-SNE).

A job, because UMAP on 65k rows takes minutes on a laptop CPU and numba compiles UMAP's
kernels on first use (~1 min). The compiled kernels are cached in the data folder's
``cache/numba`` (numba's own on-disk cache), so only the first map ever pays that.

Rows are unit-normalised first (a feature's direction, not its scale, is what places it;
on unit vectors Euclidean distance orders pairs as cosine does) and reduced to at most
``PCA_DIMS`` dimensions with an exact PCA, which keeps the neighbour search fast for wide
models and changes little in the layout (the usual practice before UMAP / t-SNE).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from mistudio.errors import UserError
from mistudio.paths import atomic_path, atomic_write_json

METHODS = ("umap", "tsne")
PCA_DIMS = 50


def configure_numba_cache(cache_dir: str | Path) -> None:
    """Point numba's on-disk cache at ``cache_dir`` (before umap is imported, or reload)."""
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    os.environ["NUMBA_CACHE_DIR"] = str(cache_dir)
    if "numba" in sys.modules:
        from numba.core import config

        config.reload_config()


def decoder_rows(sae_folder: str | Path) -> np.ndarray:
    """``W_dec`` [d_sae, d_out] of a SAELens-layout folder as float32, without building the SAE."""
    from safetensors import safe_open

    path = Path(sae_folder) / "sae_weights.safetensors"
    if not path.exists():
        raise UserError(f"The SAE's weights are missing: {path}.",
                        hint="Import or train the SAE again; its folder was moved or deleted.")
    with safe_open(str(path), framework="pt") as f:
        return f.get_tensor("W_dec").float().numpy()


def prepare(rows: np.ndarray, dims: int = PCA_DIMS) -> np.ndarray:
    """Unit rows, then PCA to ``dims`` (exact, through the d x d covariance)."""
    rows = np.asarray(rows, dtype=np.float32)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    unit = rows / np.maximum(norms, 1e-12)
    if unit.shape[1] <= dims:
        return unit
    centred = unit - unit.mean(axis=0)
    cov = centred.T.astype(np.float64) @ centred.astype(np.float64)
    _vals, vecs = np.linalg.eigh(cov)
    top = vecs[:, ::-1][:, :dims].astype(np.float32)
    return centred @ top


def project(rows: np.ndarray, method: str = "umap", *, seed: int = 0, n_neighbors: int = 15,
            min_dist: float = 0.1, progress=None) -> np.ndarray:
    """2-D coordinates [n, 2] (float32) for ``rows``; ``progress(message)`` at each stage."""
    if method not in METHODS:
        raise UserError(f"Unknown map method {method!r}.", hint=f"Use one of {', '.join(METHODS)}.")
    n = len(rows)
    if n < 4:
        raise UserError(f"A map needs at least 4 features (this SAE has {n}).",
                        hint="Maps are for SAEs with many features.")
    say = progress or (lambda _m: None)
    say("reducing dimensions")
    x = prepare(rows)
    if method == "umap":
        say("compiling/loading UMAP kernels")
        import umap

        say("UMAP: neighbours and layout")
        reducer = umap.UMAP(n_neighbors=min(n_neighbors, n - 1), min_dist=min_dist,
                            n_components=2, random_state=seed, n_jobs=1,
                            low_memory=True)  # a seed makes UMAP serial anyway
        out = reducer.fit_transform(x)
    else:
        from sklearn.manifold import TSNE

        say("t-SNE layout")
        out = TSNE(n_components=2, perplexity=min(30.0, (n - 1) / 3), init="pca",
                   random_state=seed).fit_transform(x)
    return np.ascontiguousarray(out, dtype=np.float32)


def map_file(cache_dir: str | Path, sae_id: str, method: str, seed: int) -> Path:
    return Path(cache_dir) / "feature_maps" / sae_id / f"{method}-s{seed}.npy"


def read_map(path: str | Path) -> tuple[np.ndarray, dict] | None:
    path = Path(path)
    meta_path = path.with_suffix(".json")
    if not path.exists() or not meta_path.exists():
        return None
    return np.load(path), json.loads(meta_path.read_text(encoding="utf-8"))


def run(params: dict, ctx) -> dict:
    """Job ``features.map``: params sae_id, sae_folder, method, seed, cache_dir."""
    cache_dir = Path(params["cache_dir"])
    configure_numba_cache(cache_dir / "numba")
    method, seed = params.get("method", "umap"), int(params.get("seed", 0))
    stages = ["reading decoder", "reducing dimensions", "compiling/loading UMAP kernels",
              "UMAP: neighbours and layout", "t-SNE layout"]

    def say(message: str) -> None:
        ctx.check_cancelled()  # between stages; UMAP itself cannot be interrupted
        ctx.progress(stages.index(message), len(stages), message)

    t0 = time.perf_counter()
    say("reading decoder")
    rows = decoder_rows(params["sae_folder"])
    coords = project(rows, method, seed=seed, progress=say)
    ctx.check_cancelled()
    out = map_file(cache_dir, params["sae_id"], method, seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, coords)
    meta = {"sae_id": params["sae_id"], "method": method, "seed": seed, "n": len(coords),
            "d": int(rows.shape[1]), "pca_dims": min(PCA_DIMS, int(rows.shape[1])),
            "seconds": round(time.perf_counter() - t0, 2)}
    atomic_write_json(out.with_suffix(".json"), meta)
    ctx.progress(len(stages), len(stages), f"{method} map of {len(coords):,} features ready")
    return {**meta, "path": str(out)}
