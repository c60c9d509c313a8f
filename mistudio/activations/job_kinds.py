"""The job kinds of activation extraction: registered when the application starts (``mistudio.app.job_kinds``).

Each names its function by dotted path, so that registering imports nothing heavy.
"""

from mistudio.jobs.registry import JobKind, register

register(JobKind("activations.extract", "mistudio.activations.extract:run", gpu=True,
                 title="Extract activations", pausable=True))
