"""Errors users see, and the translation of everything else into a short clear message."""

from __future__ import annotations

import errno


class UserError(Exception):
    """An error whose message is meant for the user as-is: what is wrong and what to do."""

    def __init__(self, message: str, *, hint: str = ""):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} {self.hint}".strip() if self.hint else self.message


class JobFailed(RuntimeError):
    """A job ended 'failed'; its message (the job row's error) is already the user's, so it
    is shown as it is, never translated again."""


class JobCancelled(Exception):
    """Raised inside a job when the user cancelled it (cooperative cancellation)."""


#: What allocators say when memory runs out: torch on CUDA/MPS ("CUDA out of memory"),
#: torch on the CPU ("DefaultCPUAllocator: can't allocate memory"), numpy ("Unable to
#: allocate 3.2 GiB"), Python (MemoryError).
_RAM_SIGNS = ("can't allocate memory", "cannot allocate memory", "unable to allocate")

GENERIC_MEMORY_HINT = ("Try a smaller batch size or a smaller dtype (bfloat16/float16), or "
                       "close other programs using the memory.")


def out_of_memory(exc: BaseException) -> str:
    """'gpu', 'ram' or '' (not an out-of-memory error)."""
    name = type(exc).__name__
    low = str(exc).lower()
    if isinstance(exc, MemoryError) or any(sign in low for sign in _RAM_SIGNS):
        return "ram"
    if name == "OutOfMemoryError" or "out of memory" in low:
        return "gpu"
    return ""


def describe_exception(exc: BaseException, memory_hint: str = "") -> str:
    """One or two sentences that say what failed, the likely cause and what to do.

    ``memory_hint``: for an out-of-memory error, the settings of the failed job's kind to
    lower (:attr:`mistudio.jobs.registry.JobKind.memory_hint`), instead of generic advice.
    Every job failure goes through here (the queue), so each kind says the same way which
    of its settings to lower."""
    if isinstance(exc, (UserError, JobFailed)):
        return str(exc)
    name = type(exc).__name__
    text = str(exc).strip()
    low = text.lower()
    where = out_of_memory(exc)
    if where:
        what = ("The GPU ran out of memory." if where == "gpu"
                else "The computer ran out of memory (RAM).")
        return f"{what} {memory_hint or GENERIC_MEMORY_HINT} Files already saved were kept."
    if "database or disk is full" in low:
        return ("The disk holding the database is full. Free some space, then resume the "
                "job; what was saved before is kept.")
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return ("The disk is full. Free some space or move the data folder to a larger disk in "
                "Settings; files already saved were kept.")
    if isinstance(exc, PermissionError):
        return f"Permission denied: {exc.filename or text}. Check that the folder is writable."
    if isinstance(exc, FileNotFoundError):
        return f"File not found: {exc.filename or text}."
    if name in ("GatedRepoError",):
        return ("This Hugging Face repository is gated. Accept its licence on the Hub and add "
                "your token in File > Settings.")
    if name in ("RepositoryNotFoundError",):
        return "That Hugging Face repository does not exist (or is private). Check the id."
    if name in ("LocalEntryNotFoundError", "ConnectionError", "ConnectTimeout") or "connection" in low:
        return "Could not reach the network. Check the connection, or use local files."
    if not text:
        return f"{name} (see the log for details)"
    first = text.splitlines()[0]
    if len(first) > 300:
        first = first[:297] + "..."
    return f"{name}: {first}"
