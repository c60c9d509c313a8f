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


class JobCancelled(Exception):
    """Raised inside a job when the user cancelled it (cooperative cancellation)."""


def describe_exception(exc: BaseException) -> str:
    """One or two sentences that say what failed, the likely cause and what to do."""
    if isinstance(exc, UserError):
        return str(exc)
    name = type(exc).__name__
    text = str(exc).strip()
    low = text.lower()
    if name == "OutOfMemoryError" or "out of memory" in low:
        return ("The device ran out of memory. Try a smaller batch size, a smaller dtype "
                "(bf16/fp16), or close other programs using the GPU.")
    if isinstance(exc, MemoryError):
        return "The computer ran out of RAM. Try a smaller batch size or fewer samples."
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
