"""/usr/bin/mistudio and /usr/bin/mistudio-setup-torch of the installed package.

``mistudio`` with no arguments (the menu entry) opens the window; when PyTorch is not
installed yet, the first-run window installs the build this machine needs and then starts the
app, so nothing has to be typed. With arguments it runs the CLI as usual (``--version`` and
``info`` work without torch; other commands get a one-line note).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from mistudio_setup import torch_choice, torch_layer

NO_TORCH_NEEDED = {"--version", "-h", "--help", "info"}


def run_app(argv: list[str]) -> None:
    from mistudio.cli import entry

    sys.argv = ["mistudio", *argv]
    entry()


def opens_window(argv: list[str]) -> bool:
    """No command: ``mistudio`` or ``mistudio --data-dir DIR`` opens the window."""
    rest = argv[2:] if argv[:1] == ["--data-dir"] else [a for a in argv if not a.startswith("--data-dir=")]
    return not rest


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    gui = opens_window(argv)
    if torch_layer.torch_present() or os.environ.get("MISTUDIO_SKIP_TORCH_SETUP"):
        run_app(argv)
        return
    choice = torch_choice.choose()
    if gui:
        from mistudio_setup.first_run import run_first_run

        if run_first_run(choice):  # a fresh process sees the new layer like any later start
            os.execv(sys.executable, [sys.executable, "-m", "mistudio_setup.launch", *argv])
        raise SystemExit(1)
    if not NO_TORCH_NEEDED & set(argv):
        print("note: PyTorch is not installed yet; open MechInterp Studio from the applications "
              "menu (it installs it) or run `mistudio-setup-torch`.", file=sys.stderr)
    run_app(argv)


def verify_torch() -> tuple[bool, str]:
    """Import torch in a fresh interpreter (the .pth file adds the new layer there)."""
    code = "import torch; print(torch.__version__, 'cuda' if torch.cuda.is_available() else 'cpu')"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    if r.returncode == 0:
        return True, r.stdout.strip()
    return False, (r.stderr.strip().splitlines() or ["torch does not import"])[-1]


def setup_main(argv: list[str] | None = None) -> int:
    """``mistudio-setup-torch``: the first-run install as a command (``--system`` as root)."""
    parser = argparse.ArgumentParser(prog="mistudio-setup-torch",
                                     description="Install the PyTorch build this machine needs.")
    parser.add_argument("--system", action="store_true",
                        help=f"for every user, into {torch_layer.system_layer()} (needs root)")
    parser.add_argument("--show", action="store_true", help="only say which build would be chosen")
    args = parser.parse_args(argv)
    choice = torch_choice.choose()
    print(choice.describe())
    if args.show:
        return 0
    if not choice.pip_args:  # a Jetson: NVIDIA's wheel, installed system-wide by the user
        print("Install NVIDIA's PyTorch wheel for your JetPack system-wide (docs/jetson.md); the "
              "app sees it through the system site packages.", file=sys.stderr)
        return 2
    layer = torch_layer.system_layer() if args.system else torch_layer.user_layer()
    if args.system and os.geteuid() != 0:
        print("error: --system needs root: sudo mistudio-setup-torch --system", file=sys.stderr)
        return 2
    if why := torch_layer.reachable(choice.index_url):
        print("error: " + torch_layer.offline_message(choice.label(), choice.index_url, why),
              file=sys.stderr)
        return 2
    partial = torch_layer.partial_dir(layer)
    cmd = torch_layer.pip_command(partial, choice.pip_args)
    parser_out = torch_layer.PipOutput()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=torch_layer.pip_environment())
    last = 0.0
    for line in proc.stdout:
        p = parser_out.feed(line)
        if not line.startswith("Progress "):
            print(line.rstrip())
        elif time.monotonic() - last > 2 or p.done == p.total:
            last = time.monotonic()
            print(f"  {p.name}: {p.done / 2**20:.0f} of {p.total / 2**20:.0f} MiB", flush=True)
    rc = proc.wait()
    if rc != 0:
        detail, offline = parser_out.failure(rc)
        if offline:
            detail = torch_layer.offline_message(choice.label(), choice.index_url, detail)
        print(f"error: {detail}", file=sys.stderr)
        return 1
    torch_layer.finish_install(partial, layer)
    ok, text = verify_torch()
    print(f"PyTorch {text} installed in {layer}" if ok else f"error: {text}")
    return 0 if ok else 1


if __name__ == "__main__":
    main()
