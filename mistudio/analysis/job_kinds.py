"""The job kinds of feature analysis: registered when the application starts
(``mistudio.app.job_kinds``). Each names its function by dotted path, so that registering
imports nothing heavy.
"""

from mistudio.jobs.registry import JobKind, register

register(JobKind("features.analyze", "mistudio.analysis.job:run", gpu=True,
                 title="Analyse SAE features", pausable=True,
                 memory_hint="Lower the batch size (batch_size, sequences per forward pass) "
                 "or analyse fewer tokens (--max-tokens), or run it on the CPU (--device cpu); "
                 "`mistudio analyze --resume FA_ID` continues."))
