"""The job kind of auto-interpretation, registered when the application starts
(``mistudio.app.job_kinds``); named by dotted path, so registering imports nothing heavy."""

from mistudio.jobs.registry import JobKind, register

register(JobKind("autointerp.run", "mistudio.autointerp.job:run", gpu=True,
                 title="Explain and score features", pausable=True,
                 memory_hint="Lower the batch size (batch_size, prompts per generation) or "
                 "explain fewer features at once (--features), or use a smaller explainer "
                 "model; explanations already made are kept and reused."))
