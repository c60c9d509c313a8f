"""The job kinds of activation extraction: registered when the application starts (``mistudio.app.job_kinds``).

Each names its function by dotted path, so that registering imports nothing heavy.
"""

from mistudio.jobs.registry import JobKind, register

register(JobKind("activations.extract", "mistudio.activations.extract:run", gpu=True,
                 title="Extract activations", pausable=True,
                 memory_hint="Lower the batch size (--batch-size; Batch size in the Models tab), "
                 "or load the model in a smaller dtype (--model-dtype bfloat16 or float16) or "
                 "quantized (--quantization 8bit); `mistudio extract resume ID --batch-size N` "
                 "continues where it stopped."))
