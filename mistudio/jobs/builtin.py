"""Small self-test jobs: used by tests and by `mistudio jobs selftest` to check the queue."""

from __future__ import annotations

import time

from mistudio.errors import UserError


def sleep_job(params: dict, ctx) -> dict:
    """Wait ``seconds`` in small steps, reporting progress; pausable and cancellable."""
    seconds = float(params.get("seconds", 1.0))
    steps = max(1, round(seconds / 0.05))
    for i in range(steps):
        ctx.pause_point()
        time.sleep(seconds / steps)
        ctx.progress(i + 1, steps, f"step {i + 1}/{steps}")
        if i % 10 == 0:
            ctx.metric(i, value=float(i))
    return {"steps": steps}


def busy_job(params: dict, ctx) -> dict:
    """Pure-Python busy loop for ``seconds`` (holds the GIL in short bursts, like real jobs)."""
    seconds = float(params.get("seconds", 1.0))
    t_end = time.monotonic() + seconds
    n = 0
    acc = 0
    while time.monotonic() < t_end:
        ctx.check_cancelled()
        for j in range(20_000):
            acc += j * j
        n += 1
        ctx.progress(min(seconds, seconds - (t_end - time.monotonic())), seconds)
    return {"iterations": n}


def fail_job(params: dict, ctx) -> dict:
    ctx.log("about to fail on purpose")
    if params.get("user_error", True):
        raise UserError("The input file is empty.", hint="Pick a file with text in it.")
    raise RuntimeError("boom")
