"""Every area's job kinds, registered once when the application starts (``Studio`` imports
this module). A new area adds one import here and keeps its kinds in its own package."""

import mistudio.activations.job_kinds  # noqa: F401
import mistudio.data.job_kinds  # noqa: F401
import mistudio.models.job_kinds  # noqa: F401
import mistudio.sae.job_kinds  # noqa: F401
from mistudio.jobs.registry import JobKind, register

# the checkpoint export is a step of the training workflows (moves with them to the domain)
register(JobKind("training.export_checkpoint", "mistudio.workflows:export_checkpoint_job",
                 title="Export checkpoint as SAELens folder"))
