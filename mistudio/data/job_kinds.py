"""The job kinds of the Datasets area: registered when the application starts (``mistudio.app.job_kinds``).

Each names its function by dotted path, so that registering imports nothing heavy.
"""

from mistudio.jobs.registry import JobKind, register

register(JobKind("datasets.import", "mistudio.data.importer:run_import", title="Import dataset"))
register(JobKind("datasets.tokenize", "mistudio.data.tokenize:run_tokenize",
                 title="Tokenize dataset"))
register(JobKind("datasets.stats", "mistudio.data.stats:run_stats", title="Dataset statistics"))
