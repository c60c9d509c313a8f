"""Jobs: plain functions ``run(params, ctx) -> result`` run by a queue (Qt-free)."""

from mistudio.errors import JobCancelled
from mistudio.jobs.context import JobContext
from mistudio.jobs.registry import JobKind, get_kind, job_kinds

__all__ = ["JobCancelled", "JobContext", "JobKind", "get_kind", "job_kinds"]
