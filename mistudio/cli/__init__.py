"""``mistudio``: no arguments opens the GUI; subcommands run headless over the facade.

Each area adds a module ``mistudio/cli/<name>.py`` with ``register(subparsers)``; the
parser picks up every module listed in ``COMMAND_MODULES`` that exists.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import re
import sys

from mistudio import __version__

COMMAND_MODULES = ["info", "jobs", "screenshot", "datasets", "models", "extract", "train", "sae",
                   "templates", "features", "steer", "storage"]


def plain_text(text: str) -> str:
    """Help text without reStructuredText markup: ``x`` and `x` become 'x', :class:`X` X."""
    text = re.sub(r":[a-z]+:`~?([^`]+)`", r"\1", text)
    text = re.sub(r"``([^`]+)``", r"'\1'", text)
    return re.sub(r"`([^`]+)`", r"'\1'", text)


class StudioArgumentParser(argparse.ArgumentParser):
    """Prints help without the RST markup our docstrings use (subcommands inherit it)."""

    def format_help(self) -> str:
        return plain_text(super().format_help())

    def format_usage(self) -> str:
        return plain_text(super().format_usage())


def build_parser() -> argparse.ArgumentParser:
    parser = StudioArgumentParser(
        prog="mistudio",
        description="MechInterp Studio. With no command, opens the desktop app.")
    parser.add_argument("--version", action="version", version=f"mistudio {__version__}")
    parser.add_argument("--data-dir", help="data folder (default: $MISTUDIO_DATA_DIR or the "
                        "per-user data folder)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        modname = f"mistudio.cli.{name}"
        if importlib.util.find_spec(modname) is None:
            continue
        importlib.import_module(modname).register(sub)
    return parser


def open_studio(args):
    from mistudio.studio import Studio

    return Studio(getattr(args, "data_dir", None))


def with_studio(fn):
    """A command ``fn(studio, args)`` run on a Studio opened for it and closed after."""
    def wrapped(args):
        studio = open_studio(args)
        try:
            return fn(studio, args)
        finally:
            studio.close(timeout=30)
    return wrapped


def print_json(obj) -> None:
    print(json.dumps(obj, indent=2, default=str))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        from mistudio.ui.app import main as gui_main

        return gui_main(data_dir=args.data_dir)
    from mistudio.errors import UserError, describe_exception

    try:
        rc = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's last flush
        return rc
    except BrokenPipeError:
        # The reader went away (`mistudio jobs list | head -1`): stop quietly, like other
        # command-line tools; later writes to stdout go nowhere instead of failing again.
        _stdout_to_devnull()
        return 141  # 128 + SIGPIPE, what a shell reports for a tool stopped this way
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a short message; the traceback goes to the log
        import logging

        logging.getLogger("mistudio").exception("command failed")
        print(f"error: {describe_exception(exc)}", file=sys.stderr)
        return 1


def _stdout_to_devnull() -> None:
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return  # not a real file (tests capture stdout)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


def entry() -> None:
    """Console-script entry point.

    After a command that ran torch on worker threads, interpreter teardown can crash inside
    torch's thread pools (seen here once as a segfault *after* all output was written), which
    would turn a successful run into exit code 139 for scripts. Everything is flushed and the
    store closed by then, so we leave without that teardown.
    """
    rc = main()
    if "torch" in sys.modules:
        sys.stdout.flush()
        sys.stderr.flush()
        import logging

        logging.shutdown()
        os._exit(rc)
    raise SystemExit(rc)
