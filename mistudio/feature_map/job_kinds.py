"""The job kind of feature maps: registered when the application starts
(``mistudio.app.job_kinds``); the function is named by dotted path, so nothing heavy loads."""

from mistudio.jobs.registry import JobKind, register

register(JobKind("features.map", "mistudio.feature_map.projection:run",
                 title="Map SAE features (UMAP / t-SNE)"))
