"""Which PyTorch build this machine needs, as the installer shows and runs it.

The choice itself is ``mistudio.torch_build.choose_torch``, the one ``run.sh`` makes (CPU
build without an NVIDIA driver, the newest CUDA build the driver runs, NVIDIA's own wheel on a
Jetson, ``MISTUDIO_TORCH`` as pip arguments to override): one policy for source and package
installs. This module only adds what the first-run window needs: a label, the download size,
and the index whose host must be reachable.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mistudio import torch_build

# Download sizes measured for one Python version (packaging/README.md, "Measured").
APPROX_DOWNLOAD = {"cpu": "about 200 MB", "cuda": "about 3 GB"}


@dataclass(frozen=True)
class TorchChoice:
    kind: str  # "cpu", "cuda", "jetson" or "custom"
    pip_args: tuple[str, ...]  # what pip installs; empty: nothing to install automatically
    reason: str  # what was found and why this build
    variant: str = ""  # torch_build's name: "cpu", "cu128", "jetson", "override", ...

    @property
    def download(self) -> str:
        return APPROX_DOWNLOAD.get(self.kind, "")

    @property
    def index_url(self) -> str | None:
        """The index the build comes from (None: PyPI)."""
        args = list(self.pip_args)
        for flag in ("--index-url", "-i", "--extra-index-url"):
            if flag in args[:-1]:
                return args[args.index(flag) + 1]
        return None

    def label(self) -> str:
        if self.kind == "cuda":
            return f"PyTorch {torch_build.TORCH_VERSION} with CUDA {self.variant[2:-1]}.{self.variant[-1]}"
        if self.kind == "cpu":
            return f"PyTorch {torch_build.TORCH_VERSION} for the CPU"
        if self.kind == "jetson":
            return "NVIDIA's PyTorch for JetPack"
        return f"PyTorch ({' '.join(self.pip_args)})"

    def describe(self) -> str:
        size = f" ({self.download})" if self.download else ""
        return f"{self.label()}{size}. Why: {self.reason}."


def from_build(choice: torch_build.TorchChoice) -> TorchChoice:
    kind = {"cpu": "cpu", "jetson": "jetson", "override": "custom", "pypi": "custom"}.get(
        choice.build, "cuda")
    return TorchChoice(kind, tuple(choice.pip_args), choice.reason, choice.build)


def choose(root: Path | str = "/", nvidia_smi: str | None | bool = True,
           env: dict | None = None) -> TorchChoice:
    """The build for the machine whose files are under ``root``; ``nvidia_smi`` is its output
    (True: run it here, None: not available)."""
    smi = torch_build.run_nvidia_smi() if nvidia_smi is True else nvidia_smi
    return from_build(torch_build.choose_torch(root=root, nvidia_smi=smi, env=env, system="Linux"))
