"""The job kinds of steering: registered when the application starts
(``mistudio.app.job_kinds``); the function is named by dotted path, so registering imports
nothing heavy."""

from mistudio.jobs.registry import JobKind, register

register(JobKind("steering.generate", "mistudio.steering.job:generate_job", gpu=True,
                 title="Steered generation",
                 memory_hint="Generate fewer tokens (--max-new-tokens), steer fewer columns "
                 "(a shorter --sweep), or run on the CPU (--device cpu)."))
