"""The installer's view of the PyTorch choice: mistudio.torch_build decides (its policy has
its own tests in tests/foundation/test_torch_build.py); here, over stand-in driver and Tegra
files, what the first-run window shows and which index it must reach.

Expected builds are written from NVIDIA's driver table (570.26 is the first CUDA 12.8 driver,
580.65 the first 13.0 one, 560.28 the first 12.6 one), not computed by the code under test.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mistudio import torch_build
from mistudio_setup.torch_choice import choose

PROC = ("NVRM version: NVIDIA UNIX x86_64 Kernel Module  {v}  Fri Jan 24 23:39:24 UTC 2025\n"
        "GCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\n")


def machine_root(tmp_path: Path, driver: str | None = None, tegra: bool = False) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    if driver:
        p = tmp_path / "proc/driver/nvidia/version"
        p.parent.mkdir(parents=True)
        p.write_text(PROC.format(v=driver))
    if tegra:
        (tmp_path / "etc").mkdir()
        (tmp_path / "etc/nv_tegra_release").write_text(
            "# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64\n")
    return tmp_path


@pytest.mark.parametrize("driver,variant,cuda", [
    ("580.65.06", "cu130", "13.0"), ("570.86.15", "cu128", "12.8"), ("560.35.03", "cu126", "12.6"),
])
def test_nvidia_driver_gets_a_cuda_build_from_pytorchs_index(tmp_path, driver, variant, cuda):
    c = choose(machine_root(tmp_path, driver), nvidia_smi=None, env={})
    assert (c.kind, c.variant) == ("cuda", variant)
    assert c.index_url == f"https://download.pytorch.org/whl/{variant}"
    assert c.pip_args[0] == f"torch=={torch_build.TORCH_VERSION}+{variant}"
    assert c.label() == f"PyTorch {torch_build.TORCH_VERSION} with CUDA {cuda}"
    assert c.download == "about 3 GB" and driver in c.reason


def test_no_driver_gets_the_cpu_build_and_says_why(tmp_path):
    c = choose(machine_root(tmp_path), nvidia_smi=None, env={})
    assert c.kind == "cpu" and c.index_url == "https://download.pytorch.org/whl/cpu"
    assert "(about 200 MB). Why: no NVIDIA driver found" in c.describe()


def test_nvidia_smi_output_is_used_when_given(tmp_path):
    smi = "| NVIDIA-SMI 570.86.15   Driver Version: 570.86.15   CUDA Version: 12.8 |"
    assert choose(machine_root(tmp_path), nvidia_smi=smi, env={}).variant == "cu128"


def test_jetson_has_nothing_to_download(tmp_path):
    c = choose(machine_root(tmp_path, tegra=True), nvidia_smi=None, env={})
    assert c.kind == "jetson" and c.pip_args == () and c.download == ""


def test_mistudio_torch_overrides_with_its_own_index(tmp_path):
    c = choose(machine_root(tmp_path, "570.86.15"), nvidia_smi=None,
               env={"MISTUDIO_TORCH": "torch==2.13.0+cpu --index-url file:///srv/torch/simple"})
    assert c.kind == "custom" and c.index_url == "file:///srv/torch/simple"
    assert c.pip_args == ("torch==2.13.0+cpu", "--index-url", "file:///srv/torch/simple")
