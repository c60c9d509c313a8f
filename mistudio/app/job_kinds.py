"""Every area's job kinds, registered once when the application starts (``Studio`` imports
this module). A new area adds one import here and keeps its kinds in its own package."""

import mistudio.activations.job_kinds  # noqa: F401
import mistudio.analysis.job_kinds  # noqa: F401
import mistudio.data.job_kinds  # noqa: F401
import mistudio.feature_map.job_kinds  # noqa: F401
import mistudio.models.job_kinds  # noqa: F401
import mistudio.sae.job_kinds  # noqa: F401
import mistudio.steering.job_kinds  # noqa: F401
import mistudio.autointerp.job_kinds  # noqa: F401
