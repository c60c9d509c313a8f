"""The job kinds of feature analysis: registered when the application starts
(``mistudio.app.job_kinds``). Each names its function by dotted path, so that registering
imports nothing heavy.
"""

from mistudio.jobs.registry import JobKind, register

register(JobKind("features.analyze", "mistudio.analysis.job:run", gpu=True,
                 title="Analyse SAE features", pausable=True))
