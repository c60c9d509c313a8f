"""The PyTorch build ``run.sh`` and ``run-tests.sh`` install, chosen from stand-in driver
files (the real indexes are not reachable from the test machines)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mistudio.torch_build import TORCH_VERSION, choose_torch

REPO = Path(__file__).resolve().parents[2]
SMI = """Sat Dec  5 12:00:00 2026
+-----------------------------------------------------------------------------------------+
| NVIDIA-SMI 570.86.15              Driver Version: 570.86.15      CUDA Version: {cuda}     |
|-----------------------------------------+------------------------+----------------------+
"""
PROC = ("NVRM version: NVIDIA UNIX x86_64 Kernel Module  {driver}  Thu Feb 22 01:44:30 UTC "
        "2024\nGCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\n")
PROC_OPEN = ("NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  {driver}  Release Build  "
             "(dvs-builder@U16-I3-B03-4-3)  Tue Jan  7 17:42:58 UTC 2025\n")


def _root(tmp_path, proc: str | None = None, tegra: str | None = None) -> Path:
    if proc is not None:
        (tmp_path / "proc/driver/nvidia").mkdir(parents=True)
        (tmp_path / "proc/driver/nvidia/version").write_text(proc)
    if tegra is not None:
        (tmp_path / "etc").mkdir()
        (tmp_path / "etc/nv_tegra_release").write_text(tegra)
    return tmp_path


def test_no_driver_gets_the_cpu_build_from_the_cpu_index(tmp_path):
    c = choose_torch(root=_root(tmp_path), env={}, system="Linux")
    assert c.build == "cpu"
    assert c.pip_args == [f"torch=={TORCH_VERSION}+cpu", "--extra-index-url",
                          "https://download.pytorch.org/whl/cpu"]
    assert "no NVIDIA driver found" in c.describe() and "CPU build" in c.describe()


@pytest.mark.parametrize("cuda, build", [("12.8", "cu128"), ("13.2", "cu130"),
                                         ("12.7", "cu126"), ("12.6", "cu126")])
def test_the_newest_cuda_build_the_driver_runs(tmp_path, cuda, build):
    c = choose_torch(root=_root(tmp_path), nvidia_smi=SMI.format(cuda=cuda), env={},
                     system="Linux")
    assert c.build == build and c.pip_args[0] == f"torch=={TORCH_VERSION}+{build}"
    assert c.pip_args[1:] == ["--extra-index-url", f"https://download.pytorch.org/whl/{build}"]
    assert f"CUDA {cuda}" in c.reason and "nvidia-smi" in c.reason


@pytest.mark.parametrize("text, driver, build", [
    (PROC, "570.124.04", "cu128"), (PROC_OPEN, "580.82.07", "cu130"),
    (PROC, "560.35.03", "cu126"), (PROC, "550.54.14", "cpu"), (PROC, "470.256.02", "cpu")])
def test_driver_version_from_proc_without_nvidia_smi(tmp_path, text, driver, build):
    c = choose_torch(root=_root(tmp_path, proc=text.format(driver=driver)), env={},
                     system="Linux")
    assert c.build == build and f"NVIDIA driver {driver}" in c.reason
    if build == "cpu":  # a driver too old for every CUDA build: say so, install the CPU one
        assert "update the driver" in c.reason and c.pip_args[0].endswith("+cpu")


def test_jetson_is_told_to_use_nvidias_wheel(tmp_path):
    root = _root(tmp_path, proc=PROC.format(driver="540.4.0"),
                 tegra="# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, "
                       "EABI: aarch64, DATE: Wed Jan  8 01:49:37 UTC 2025\n")
    c = choose_torch(root=root, nvidia_smi=SMI.format(cuda="12.6"), env={}, system="Linux")
    assert c.build == "jetson" and c.pip_args == []
    assert "L4T R36.4.3" in c.reason and "MISTUDIO_TORCH" in c.reason


def test_override_and_macos(tmp_path):
    env = {"MISTUDIO_TORCH": "torch==2.5.1 --index-url https://download.pytorch.org/whl/cpu"}
    c = choose_torch(root=_root(tmp_path, proc=PROC.format(driver="570.1")), env=env,
                     system="Linux")
    assert c.build == "override" and c.pip_args == [
        "torch==2.5.1", "--index-url", "https://download.pytorch.org/whl/cpu"]
    mac = choose_torch(root=tmp_path, env={}, system="Darwin")
    assert mac.build == "pypi" and mac.pip_args == [f"torch=={TORCH_VERSION}"]


def test_the_command_asks_nvidia_smi_on_the_path(tmp_path):
    fake = tmp_path / "bin" / "nvidia-smi"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\ncat <<'END'\n" + SMI.format(cuda="12.9") + "END\n")
    fake.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "MISTUDIO_TORCH"}
    env["PATH"] = f"{fake.parent}{os.pathsep}{env['PATH']}"
    run = subprocess.run([sys.executable, "-m", "mistudio.torch_build"], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == [f"torch=={TORCH_VERSION}+cu128", "--extra-index-url",
                                  "https://download.pytorch.org/whl/cu128"]
    assert "CUDA 12.8 build" in run.stderr and "CUDA 12.9" in run.stderr


def test_app_and_test_env_share_the_policy():
    for script in ("run.sh", "run-tests.sh"):
        text = (REPO / script).read_text()
        assert "-m mistudio.torch_build" in text, script
        assert "torch==" not in text, script  # no second pinned version to drift
    readme = (REPO / "README.md").read_text()
    assert "./run.sh" in readme and "./run-tests.sh" in readme
    assert f"torch {TORCH_VERSION}" in readme.lower() or TORCH_VERSION in readme
