"""The job kinds of SAE training, import and evaluation: registered when the application starts (``mistudio.app.job_kinds``).

Each names its function by dotted path, so that registering imports nothing heavy.
"""

from mistudio.jobs.registry import JobKind, register

register(JobKind("sae.train", "mistudio.sae.job:train_job", gpu=True, title="Train SAE",
                 pausable=True,
                 memory_hint="Lower batch_size or the SAE width (d_sae / expansion_factor), or "
                 "train in dtype bfloat16; on the fly, lower onthefly_batch_sequences. "
                 "`mistudio sae resume ID` continues from the last checkpoint."))
register(JobKind("sae.import", "mistudio.sae.job:import_job", title="Import SAE"))
register(JobKind("sae.catalogue_download", "mistudio.sae.job:catalogue_import_job",
                 title="Download SAE from the catalogue"))
register(JobKind("sae.evaluate", "mistudio.sae.evaluation:evaluate_job", gpu=True,
                 title="Evaluate SAE spliced into its model",
                 memory_hint="Evaluate on fewer tokens (--tokens) or on the CPU (--device cpu)."))
register(JobKind("training.export_checkpoint",
                 "mistudio.sae.checkpoint_export:export_checkpoint_job",
                 title="Export checkpoint as SAELens folder"))
