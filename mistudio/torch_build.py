"""Which PyTorch build to install on this machine (used by ``run.sh`` and ``run-tests.sh``).

Standard library only: it runs before anything is installed, as
``python3 -m mistudio.torch_build``, and prints the ``pip install`` arguments one per line
(stdout) and which build it chose and why (stderr). Exit status 3: nothing can be chosen
automatically (a Jetson needs NVIDIA's own wheel); the message says what to do.

The policy, the same for the app and the test environment:

- ``MISTUDIO_TORCH`` set: installed as given (split like a shell would:
  ``"torch==2.5.1 --index-url https://download.pytorch.org/whl/cpu"``).
- An NVIDIA Jetson (``/etc/nv_tegra_release``): NVIDIA's wheel for its JetPack; PyPI has none.
- An NVIDIA driver (``nvidia-smi`` answers, or ``/proc/driver/nvidia/version`` exists): the
  newest CUDA build of :data:`TORCH_VERSION` that the driver supports.
- Otherwise on Linux (no driver, or one too old for every CUDA build): the CPU build from
  PyTorch's CPU index (about 200 MB instead of the CUDA build's several GB).
- macOS: PyPI's build (CPU and Apple GPUs).

Every choice pins :data:`TORCH_VERSION`, the version the test suite is run with, and the
build by its local label (``torch==2.13.0+cpu``), so an unreachable index is an error, never a
silent fallback to PyPI's multi-GB CUDA build. The index is given as ``--extra-index-url`` so
that PyPI still serves torch's dependencies.
"""

from __future__ import annotations

import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

TORCH_VERSION = "2.13.0"
INDEX = "https://download.pytorch.org/whl/"
# The CUDA builds on PyTorch's index for TORCH_VERSION (newest last); update with the version.
CUDA_BUILDS = ((12, 6), (12, 8), (13, 0))
# The oldest Linux driver each CUDA release needs (NVIDIA's CUDA Toolkit release notes,
# "CUDA Toolkit and Corresponding Driver Versions"); used when only the driver version is known.
DRIVER_FOR_CUDA = (((13, 0), (580, 65, 6)), ((12, 9), (575, 51, 3)), ((12, 8), (570, 26)),
                   ((12, 6), (560, 28, 3)), ((12, 4), (550, 54, 14)), ((12, 1), (530, 30, 2)),
                   ((11, 8), (520, 61, 5)))
EXIT_NO_CHOICE = 3


@dataclass
class TorchChoice:
    build: str                      #: "cpu", "cu128", "pypi", "jetson", "override"
    reason: str                     #: one sentence: what was found and why this build
    pip_args: list[str] = field(default_factory=list)  #: empty: cannot install automatically

    def describe(self) -> str:
        what = {"cpu": "the CPU build", "pypi": "the build from PyPI",
                "jetson": "NVIDIA's Jetson build", "override": "MISTUDIO_TORCH"
                }.get(self.build, f"the CUDA {self.build[2:-1]}.{self.build[-1]} build")
        return f"PyTorch {TORCH_VERSION}: {what}. Why: {self.reason}."


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split("."))


def parse_nvidia_smi(text: str) -> tuple[str | None, tuple[int, ...] | None]:
    """(driver version, highest CUDA version it supports) from ``nvidia-smi``'s header."""
    driver = re.search(r"Driver Version:\s*([\d.]+)", text)
    cuda = re.search(r"CUDA Version:\s*([\d.]+)", text)
    return (driver.group(1) if driver else None,
            _version(cuda.group(1))[:2] if cuda else None)


def parse_proc_driver_version(text: str) -> str | None:
    """The driver version from ``/proc/driver/nvidia/version`` ("Kernel Module  550.54.14")."""
    m = re.search(r"Kernel Module(?: for \w+)?\s+([\d]+\.[\d.]+)", text) or \
        re.search(r"NVRM version:.*?\s(\d{3,}\.\d+(?:\.\d+)?)\s", text)
    return m.group(1) if m else None


def cuda_for_driver(driver: tuple[int, ...]) -> tuple[int, int] | None:
    """The newest CUDA release a Linux driver of this version runs."""
    for cuda, minimum in DRIVER_FOR_CUDA:
        if driver >= minimum:
            return cuda
    return None


def _fmt(version) -> str:
    return ".".join(str(v) for v in version)


def choose_torch(*, root: Path | str = "/", nvidia_smi: str | None = None,
                 env: dict | None = None, system: str | None = None) -> TorchChoice:
    """The build for a machine whose files are under ``root`` (tests pass a folder with
    stand-in driver files), ``nvidia-smi``'s output (None: not available) and ``env``."""
    env = os.environ if env is None else env
    system = system or platform.system()
    root = Path(root)
    pinned = f"torch=={TORCH_VERSION}"
    override = (env.get("MISTUDIO_TORCH") or "").strip()
    if override:
        return TorchChoice("override", f"MISTUDIO_TORCH={override!r} is set",
                           shlex.split(override))
    if system == "Darwin":
        return TorchChoice("pypi", "macOS: PyPI's build runs on the CPU and Apple GPUs",
                           [pinned])
    tegra = root / "etc" / "nv_tegra_release"
    if tegra.is_file():  # checked first: a Jetson may answer nvidia-smi too
        first = tegra.read_text(errors="replace").splitlines()[:1]
        m = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", first[0] if first else "")
        l4t = f"L4T R{m.group(1)}.{m.group(2)}" if m else "L4T"
        return TorchChoice(
            "jetson", f"an NVIDIA Jetson ({l4t}, {tegra} found): PyPI has no CUDA build for "
            "it. Install NVIDIA's PyTorch wheel for your JetPack into .venv "
            "(.venv/bin/pip install torch-...whl, see NVIDIA's 'PyTorch for Jetson' page), "
            "or set MISTUDIO_TORCH to that wheel, then run this again")
    driver = cuda = None
    where = ""
    if nvidia_smi:
        driver, cuda = parse_nvidia_smi(nvidia_smi)
        where = "nvidia-smi"
    proc = root / "proc" / "driver" / "nvidia" / "version"
    if driver is None and proc.is_file():
        driver = parse_proc_driver_version(proc.read_text(errors="replace"))
        where = str(proc)
    if driver is not None or cuda is not None:
        if cuda is None:
            cuda = cuda_for_driver(_version(driver))
        found = (f"NVIDIA driver {driver or '?'}"
                 + (f" supporting CUDA {_fmt(cuda)}" if cuda else "") + f", from {where}")
        usable = [b for b in CUDA_BUILDS if cuda is not None and b <= cuda]
        if usable:
            build = "cu" + "".join(str(v) for v in usable[-1])
            return TorchChoice(build, f"{found}; the newest CUDA build it runs",
                               [f"{pinned}+{build}", "--extra-index-url", INDEX + build])
        oldest = _fmt(CUDA_BUILDS[0])
        return TorchChoice("cpu", f"{found}, older than the CUDA {oldest} the oldest CUDA "
                           f"build of PyTorch {TORCH_VERSION} needs: update the driver for GPU "
                           "work, or set MISTUDIO_TORCH",
                           [f"{pinned}+cpu", "--extra-index-url", INDEX + "cpu"])
    return TorchChoice("cpu", f"no NVIDIA driver found (no nvidia-smi, no {proc})",
                       [f"{pinned}+cpu", "--extra-index-url", INDEX + "cpu"])


def run_nvidia_smi() -> str | None:
    exe = shutil.which("nvidia-smi")
    if not exe:
        return None
    try:
        out = subprocess.run([exe], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


def main() -> int:
    choice = choose_torch(nvidia_smi=run_nvidia_smi())
    print(choice.describe(), file=sys.stderr)
    if not choice.pip_args:
        return EXIT_NO_CHOICE
    print("\n".join(choice.pip_args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
