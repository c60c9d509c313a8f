"""Which PyTorch build this machine needs, and why, read from the machine without torch.

- NVIDIA Jetson (an L4T release file or a Tegra device-tree model): NVIDIA's JetPack torch,
  which the user installs system-wide; the venv sees it through system site packages.
- An NVIDIA driver (``/proc/driver/nvidia/version``, or ``nvidia-smi``): the newest CUDA
  variant of PyTorch's wheel index that the driver runs. The driver's CUDA version comes from
  NVML when it answers, else from the driver version through NVIDIA's table. CUDA's minor
  version compatibility lets a driver of CUDA X.y run any X.z build (12.x needs >= 525,
  13.x >= 580), so a 12.4 driver gets cu126 rather than an old cu118.
- Otherwise: the CPU build (about 200 MB instead of several GB of CUDA libraries).

``MISTUDIO_TORCH`` (the requirement, as in run.sh) and ``MISTUDIO_TORCH_INDEX`` (an index
URL) override the choice.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

PYTORCH_INDEX = "https://download.pytorch.org/whl"

# PyTorch's CUDA wheel variants, newest first: (index tag, CUDA major, minor, minimum driver).
# The minimum driver is CUDA's minor-version-compatibility floor for that major version.
CUDA_VARIANTS = [
    ("cu130", 13, 0, (580, 0)),
    ("cu128", 12, 8, (525, 60)),
    ("cu126", 12, 6, (525, 60)),
    ("cu118", 11, 8, (450, 80)),
]

# The CUDA version each driver release first supports (NVIDIA's CUDA toolkit release notes),
# for when NVML cannot be asked.
DRIVER_CUDA = [
    ((580, 0), (13, 0)), ((570, 0), (12, 8)), ((560, 0), (12, 6)), ((555, 0), (12, 5)),
    ((550, 0), (12, 4)), ((545, 0), (12, 3)), ((535, 0), (12, 2)), ((530, 0), (12, 1)),
    ((525, 60), (12, 0)), ((520, 0), (11, 8)), ((450, 80), (11, 0)),
]

# Download sizes shown before the install (measured from the wheels of torch 2.x).
APPROX_DOWNLOAD = {"cpu": "about 200 MB", "cuda": "about 3 GB"}


@dataclass(frozen=True)
class TorchChoice:
    kind: str  # "cpu", "cuda", "jetson" or "custom"
    requirement: str  # what pip installs, e.g. "torch>=2.3"
    index_url: str | None  # None: the default index (PyPI), or nothing to install (jetson)
    reason: str  # one sentence for the user: what was found and what that means
    variant: str = ""  # "cpu", "cu128", ...

    @property
    def download(self) -> str:
        return APPROX_DOWNLOAD.get(self.kind, "")

    def describe(self) -> str:
        size = f" ({self.download})" if self.download else ""
        return f"{self.label()}{size}: {self.reason}"

    def label(self) -> str:
        if self.kind == "cuda":
            return f"PyTorch with CUDA {self.variant[2:-1]}.{self.variant[-1]}"
        if self.kind == "cpu":
            return "PyTorch for the CPU"
        if self.kind == "jetson":
            return "NVIDIA's PyTorch for JetPack"
        return f"PyTorch ({self.requirement})"


@dataclass(frozen=True)
class MachineFacts:
    """What the choice depends on; read by ``read_machine()``, built by hand in tests."""

    machine: str  # platform.machine()
    jetson: bool = False
    driver_version: tuple[int, int] | None = None  # (570, 86)
    driver_cuda: tuple[int, int] | None = None  # from NVML: the CUDA version the driver runs


def parse_driver_version(text: str) -> tuple[int, int] | None:
    """``/proc/driver/nvidia/version`` or ``nvidia-smi`` output -> (major, minor)."""
    m = re.search(r"Kernel Module(?:\s+for\s+\S+)?\s+(\d+)\.(\d+)", text)
    m = m or re.search(r"Driver Version:\s*(\d+)\.(\d+)", text)
    m = m or re.fullmatch(r"\s*(\d+)\.(\d+)(?:\.\d+)?\s*", text)
    return (int(m.group(1)), int(m.group(2))) if m else None


def cuda_for_driver(driver: tuple[int, int]) -> tuple[int, int] | None:
    for floor, cuda in DRIVER_CUDA:
        if driver >= floor:
            return cuda
    return None


def is_jetson(release_file: Path, model_files: list[Path]) -> bool:
    if release_file.exists():
        return True
    for p in model_files:
        try:
            model = p.read_bytes().rstrip(b"\0").decode(errors="replace").lower()
        except OSError:
            continue
        if any(word in model for word in ("jetson", "orin", "tegra")):
            return True
    return False


def _nvml_driver_cuda() -> tuple[int, int] | None:
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:
        return None
    try:
        v = int(pynvml.nvmlSystemGetCudaDriverVersion())  # 12080 for 12.8
        return v // 1000, (v % 1000) // 10
    except Exception:
        return None
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:
            pass


def read_machine(root: Path = Path("/"), machine: str | None = None, use_nvml: bool = True,
                 nvidia_smi: str | None = "nvidia-smi") -> MachineFacts:
    """The facts under ``root`` (tests pass a folder of stand-in files)."""
    import platform

    jetson = is_jetson(root / "etc/nv_tegra_release",
                       [root / "proc/device-tree/model",
                        root / "sys/firmware/devicetree/base/model"])
    driver = None
    try:
        driver = parse_driver_version((root / "proc/driver/nvidia/version").read_text())
    except OSError:
        pass
    if driver is None and nvidia_smi and shutil.which(nvidia_smi):
        try:
            out = subprocess.run([nvidia_smi, "--query-gpu=driver_version", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=10).stdout
            driver = parse_driver_version(out.splitlines()[0]) if out.strip() else None
        except (OSError, subprocess.SubprocessError):
            driver = None
    cuda = _nvml_driver_cuda() if (use_nvml and driver) else None
    return MachineFacts(machine=machine or platform.machine(), jetson=jetson,
                        driver_version=driver, driver_cuda=cuda)


def choose(facts: MachineFacts, env: dict | None = None) -> TorchChoice:
    env = os.environ if env is None else env
    override, index = env.get("MISTUDIO_TORCH", "").strip(), env.get("MISTUDIO_TORCH_INDEX", "").strip()
    if override or index:
        return TorchChoice("custom", override or "torch>=2.3", index or None,
                           "chosen by MISTUDIO_TORCH / MISTUDIO_TORCH_INDEX.", "custom")
    if facts.jetson:
        return TorchChoice("jetson", "torch", None,
                           "this is an NVIDIA Jetson: the app uses the PyTorch that NVIDIA builds "
                           "for JetPack, installed system-wide (see docs/jetson.md).", "jetson")
    cpu = TorchChoice("cpu", "torch>=2.3", f"{PYTORCH_INDEX}/cpu", "", "cpu")
    if facts.machine not in ("x86_64", "AMD64"):
        return _with(cpu, f"PyTorch's CUDA wheels are built for x86-64 only; this is {facts.machine}.")
    if facts.driver_version is None:
        return _with(cpu, "no NVIDIA driver was found, so work runs on the CPU.")
    drv = facts.driver_version
    drv_text = f"{drv[0]}.{drv[1]:02d}"
    cuda = facts.driver_cuda or cuda_for_driver(drv)
    if cuda is None:
        return _with(cpu, f"NVIDIA driver {drv_text} is too old for any PyTorch CUDA build "
                          "(update the driver to 525 or newer for CUDA 12).")
    pick = _variant_for(cuda, drv)
    if pick is None:
        return _with(cpu, f"NVIDIA driver {drv_text} is too old for any PyTorch CUDA build "
                          "(update the driver to 525 or newer for CUDA 12).")
    tag = pick[0]
    return TorchChoice("cuda", "torch>=2.3", f"{PYTORCH_INDEX}/{tag}",
                       f"NVIDIA driver {drv_text} (CUDA {cuda[0]}.{cuda[1]}) was found; this is "
                       f"the newest PyTorch CUDA build it runs.", tag)


def _variant_for(cuda: tuple[int, int], driver: tuple[int, int]):
    """The newest variant of the driver's CUDA major version that it runs as is; else the
    oldest of that major version (minor version compatibility); else an older major version."""
    runnable = [v for v in CUDA_VARIANTS if driver >= v[3]]
    same_major = [v for v in runnable if v[1] == cuda[0]]
    exact = [v for v in same_major if (v[1], v[2]) <= cuda]
    older = [v for v in runnable if v[1] < cuda[0]]
    if exact:
        return exact[0]
    if same_major:
        return same_major[-1]
    return older[0] if older else None


def _with(choice: TorchChoice, reason: str) -> TorchChoice:
    return TorchChoice(choice.kind, choice.requirement, choice.index_url, reason, choice.variant)
