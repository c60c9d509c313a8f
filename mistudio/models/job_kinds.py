"""The job kinds of the Models area: registered when the application starts (``mistudio.app.job_kinds``).

Each names its function by dotted path, so that registering imports nothing heavy.
"""

from mistudio.jobs.registry import JobKind, register

register(JobKind("models.download", "mistudio.models.sources:hub_download_job",
                 title="Download model"))
register(JobKind("models.import", "mistudio.models.sources:import_local_job",
                 title="Import model folder"))
register(JobKind("models.convert_gguf", "mistudio.models.sources:convert_gguf_job",
                 title="Convert GGUF model"))
register(JobKind("models.quantize", "mistudio.models.sources:save_quantized_job", gpu=True,
                 title="Save quantized model",
                 memory_hint="Quantize to 4bit instead of 8bit, or close other programs "
                 "using the GPU; the model itself is unchanged."))
