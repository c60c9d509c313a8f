"""The job kinds of SAE training, import and evaluation: registered when the application starts (``mistudio.app.job_kinds``).

Each names its function by dotted path, so that registering imports nothing heavy.
"""

from mistudio.jobs.registry import JobKind, register

register(JobKind("sae.train", "mistudio.sae.job:train_job", gpu=True, title="Train SAE",
                 pausable=True))
register(JobKind("sae.import", "mistudio.sae.job:import_job", title="Import SAE"))
register(JobKind("sae.catalogue_download", "mistudio.sae.job:catalogue_import_job",
                 title="Download SAE from the catalogue"))
register(JobKind("sae.evaluate", "mistudio.sae.evaluation:evaluate_job", gpu=True,
                 title="Evaluate SAE spliced into its model"))
register(JobKind("training.export_checkpoint",
                 "mistudio.sae.checkpoint_export:export_checkpoint_job",
                 title="Export checkpoint as SAELens folder"))
