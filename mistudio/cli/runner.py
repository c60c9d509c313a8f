"""Run a job from the terminal: submit through the facade, draw a progress bar, Ctrl+C cancels."""

from __future__ import annotations

import os
import shutil
import sys
import threading
import time

from mistudio.cli.table import fit_progress_line


class TerminalProgress:
    def __init__(self, job_id: str, stream=None, quiet: bool = False):
        self.job_id = job_id
        stream = stream if stream is not None else sys.stderr  # looked up now, not at import
        self.stream = stream
        self.quiet = quiet or not stream.isatty()
        self._last = 0.0
        self._lock = threading.Lock()
        self._line = ""

    def __call__(self, job_id: str, kind: str, payload: dict) -> None:
        if job_id != self.job_id:
            return
        if kind == "progress":
            self._draw(payload)
        elif kind == "log" and payload.get("level") in ("warning", "error"):
            self._print(f"{payload['level']}: {payload['message']}")
        elif kind == "log" and self.quiet:
            self._print(payload["message"])

    def _draw(self, p: dict) -> None:
        now = time.monotonic()
        if self.quiet:
            if now - self._last < 5 and not (p["total"] and p["done"] >= p["total"]):
                return
        elif now - self._last < 0.1:
            return
        self._last = now
        width = self._width()
        frac = min(1.0, p["done"] / p["total"]) if p.get("total") else None
        line = fit_progress_line(frac, p["done"], p.get("eta_s"), p.get("message") or "",
                                 width)
        with self._lock:
            if self.quiet:
                print(line, file=self.stream)
            else:
                self.stream.write("\r" + line.ljust(len(self._line)))
                self.stream.flush()
            self._line = line

    def _width(self) -> int:
        if self.quiet:
            return 200  # lines of a log, not one terminal line: nothing to fit
        try:  # the terminal the bar is drawn on (stderr), even when stdout is piped
            return os.get_terminal_size(self.stream.fileno()).columns
        except (AttributeError, OSError, ValueError):
            return shutil.get_terminal_size((80, 20)).columns

    def _print(self, text: str) -> None:
        with self._lock:
            if self._line and not self.quiet:
                self.stream.write("\n")
                self._line = ""
            print(text, file=self.stream)

    def finish(self) -> None:
        with self._lock:
            if self._line and not self.quiet:
                self.stream.write("\n")
                self.stream.flush()
            self._line = ""


def silence_library_progress_bars() -> None:
    """Turn off the tqdm bars of huggingface_hub, transformers, datasets and plain tqdm.

    A job run from the terminal draws the app's own progress bar; their bars (downloads,
    "Loading checkpoint shards", map/filter) would be written over it on the same line.
    An explicit ``HF_HUB_DISABLE_PROGRESS_BARS`` / ``HF_DATASETS_DISABLE_PROGRESS_BARS``
    set by the user is respected.
    """
    # Plain tqdm bars (transformers' GGUF conversion) read TQDM_DISABLE when tqdm is first
    # imported, which in a CLI process happens inside the job, after this.
    os.environ.setdefault("TQDM_DISABLE", "1")
    hub_set = "HF_HUB_DISABLE_PROGRESS_BARS" in os.environ
    datasets_set = "HF_DATASETS_DISABLE_PROGRESS_BARS" in os.environ
    # Read when those libraries are imported (transformers follows huggingface_hub's).
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    if not hub_set:
        if "huggingface_hub" in sys.modules:
            from huggingface_hub.utils import disable_progress_bars

            disable_progress_bars()
        if "transformers" in sys.modules:
            from mistudio.hf import transformers_module

            transformers_module().utils.logging.disable_progress_bar()
    if not datasets_set and "datasets" in sys.modules:
        from datasets.utils.tqdm import disable_progress_bars as disable_datasets_bars

        disable_datasets_bars()


def follow_job_cli(studio, job, *, quiet: bool = False,
                   stop_message: str = "Stopping (press Ctrl+C again to force)..."):
    """Wait for a submitted job with a progress bar; Ctrl+C asks it to stop cleanly.

    Returns the finished :class:`JobRecord`; prints its error if it failed.
    """
    silence_library_progress_bars()
    bar = TerminalProgress(job.id, quiet=quiet)
    studio.add_job_listener(bar)
    try:
        while True:
            try:
                final = studio.jobs.wait(job.id, timeout=0.5)
                if final and final.status not in ("queued", "running", "paused"):
                    # The row is final before the services' recording listeners are done:
                    # wait for them, so what is printed next reads the recorded outcome.
                    final = studio.jobs.wait(job.id) or final
                    break
            except KeyboardInterrupt:
                print(f"\n{stop_message}", file=sys.stderr)
                studio.jobs.cancel(job.id)
                final = studio.jobs.wait(job.id)
                break
    finally:
        bar.finish()
        studio.jobs.remove_listener(bar)
    if final.status == "failed":
        print(f"error: {final.error}\n(details: {final.log_path})", file=sys.stderr)
    elif final.status == "cancelled":
        print("cancelled", file=sys.stderr)
    return final


def run_job_cli(studio, kind: str, params: dict, *, title: str = "", target: str = "",
                artifact_dir=None, quiet: bool = False, job_id: str | None = None):
    """Submit a job and follow it (see :func:`follow_job_cli`)."""
    silence_library_progress_bars()  # before the job starts loading anything
    rec = studio.submit_job(kind, params, title=title, target=target, artifact_dir=artifact_dir,
                            job_id=job_id)
    return follow_job_cli(studio, rec, quiet=quiet)
