"""Feature maps: start the projection job for an SAE and read its cached result."""

from __future__ import annotations

import numpy as np

from mistudio.app.jobs import JobRecord, JobService
from mistudio.errors import UserError
from mistudio.feature_map import projection
from mistudio.feature_map.clustering import check_size, cluster_order, decoder_cosine
from mistudio.paths import DataPaths
from mistudio.sae.repository import SAERecord, SAEsRepo

JOB_KIND = "features.map"


class FeatureMapService:
    def __init__(self, saes: SAEsRepo, jobs: JobService, paths: DataPaths):
        self.saes = saes
        self.jobs = jobs
        self.paths = paths
        self._decoders: dict[str, np.ndarray] = {}  # one SAE at a time: the one being browsed

    def _sae(self, sae_id: str) -> SAERecord:
        rec = self.saes.get(sae_id)
        if rec is None:
            raise UserError(f"No SAE with id {sae_id!r}.", hint="`mistudio sae list` shows them.")
        return rec

    def load_map(self, sae_id: str, method: str = "umap", seed: int = 0) -> np.ndarray | None:
        """The cached [d_sae, 2] coordinates, or None when the map was not computed yet."""
        got = projection.read_map(projection.map_file(self.paths.cache, sae_id, method, seed))
        if got is None:
            return None
        coords, meta = got
        if len(coords) != self._sae(sae_id).d_sae:  # a replaced SAE with the same id
            return None
        return coords

    def map_info(self, sae_id: str, method: str = "umap", seed: int = 0) -> dict | None:
        got = projection.read_map(projection.map_file(self.paths.cache, sae_id, method, seed))
        return None if got is None else got[1]

    def active_job(self, sae_id: str, method: str = "umap") -> JobRecord | None:
        for job_id in self.jobs.active_ids():
            rec = self.jobs.find(job_id)
            if rec and rec.kind == JOB_KIND and rec.target == sae_id \
                    and rec.params.get("method") == method:
                return rec
        return None

    def start_map(self, sae_id: str, method: str = "umap", seed: int = 0) -> JobRecord:
        """Compute the map in the background (one job per SAE and method at a time)."""
        if method not in projection.METHODS:
            raise UserError(f"Unknown map method {method!r}.",
                            hint=f"Use one of {', '.join(projection.METHODS)}.")
        rec = self._sae(sae_id)
        running = self.active_job(sae_id, method)
        if running is not None:
            return running
        params = {"sae_id": rec.id, "sae_folder": rec.folder, "method": method, "seed": seed,
                  "cache_dir": str(self.paths.cache)}
        return self.jobs.submit(JOB_KIND, params,
                                title=f"{method.upper()} map of {rec.name or rec.id}",
                                target=rec.id)

    def decoder(self, sae_id: str) -> np.ndarray:
        rows = self._decoders.get(sae_id)
        if rows is None:
            rows = projection.decoder_rows(self._sae(sae_id).folder)
            self._decoders = {sae_id: rows}
        return rows

    def decoder_similarity(self, sae_id: str, indices) -> tuple[np.ndarray, np.ndarray]:
        """(indices in clustered order, cosine matrix in that order) for a heatmap."""
        indices = np.asarray(sorted({int(i) for i in indices}), dtype=np.int64)
        check_size(len(indices))
        rows = self.decoder(sae_id)
        if indices.max() >= len(rows):
            raise UserError(f"Feature {indices.max()} does not exist in this SAE.",
                            hint="Pick features of this SAE.")
        sim = decoder_cosine(rows[indices])
        order = cluster_order(sim)
        return indices[order], sim[np.ix_(order, order)]

    @staticmethod
    def clustered(indices, similarity: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Order any [n, n] similarity (e.g. activation correlation from the analysis)."""
        indices = np.asarray(indices)
        check_size(len(indices))
        order = cluster_order(similarity)
        return indices[order], np.asarray(similarity)[np.ix_(order, order)]
