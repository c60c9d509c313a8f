"""Which PyTorch build the package installs, decided from stand-in driver and Tegra files.

The expected variants are written from NVIDIA's tables (CUDA 12.x minor version
compatibility needs driver >= 525.60, CUDA 13.x needs >= 580; driver 570 ships CUDA 12.8,
535 ships 12.2, 470 ships 11.4), not computed by the code under test.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mistudio_setup.torch_choice import MachineFacts, choose, parse_driver_version, read_machine

PROPRIETARY = ("NVRM version: NVIDIA UNIX x86_64 Kernel Module  {v}  Fri Jan 24 23:39:24 UTC 2025\n"
               "GCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\n")
OPEN_MODULE = ("NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  {v}  Release Build  "
               "(dvs-builder@U16-I3-B03-4-3)  Wed Mar  5 21:17:10 UTC 2025\n")


def machine_root(tmp_path: Path, driver: str | None = None, template=PROPRIETARY,
                 tegra: bool = False, model: str | None = None) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    if driver:
        p = tmp_path / "proc/driver/nvidia/version"
        p.parent.mkdir(parents=True)
        p.write_text(template.format(v=driver))
    if tegra:
        (tmp_path / "etc").mkdir(exist_ok=True)
        (tmp_path / "etc/nv_tegra_release").write_text("# R36 (release), REVISION: 4.3\n")
    if model:
        p = tmp_path / "proc/device-tree/model"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(model.encode() + b"\0")
    return tmp_path


@pytest.mark.parametrize("driver,template,variant", [
    ("580.65.06", PROPRIETARY, "cu130"),
    ("570.86.15", PROPRIETARY, "cu128"),
    ("570.133.07", OPEN_MODULE, "cu128"),
    ("560.35.03", PROPRIETARY, "cu126"),
    ("535.183.01", PROPRIETARY, "cu126"),  # CUDA 12.2 driver: a 12.x build by minor compat
    ("525.60.13", PROPRIETARY, "cu126"),
    ("470.256.02", PROPRIETARY, "cu118"),  # CUDA 11.4 driver: the 11.8 build by minor compat
])
def test_nvidia_driver_gets_the_cuda_build_it_runs(tmp_path, driver, template, variant):
    facts = read_machine(machine_root(tmp_path, driver, template), machine="x86_64",
                         use_nvml=False, nvidia_smi=None)
    assert facts.driver_version == tuple(int(x) for x in driver.split(".")[:2])
    choice = choose(facts, env={})
    assert (choice.kind, choice.variant) == ("cuda", variant)
    assert choice.index_url == f"https://download.pytorch.org/whl/{variant}"
    assert driver.rsplit(".", 1)[0] in choice.reason


def test_driver_too_old_or_absent_gets_the_cpu_build_and_says_why(tmp_path):
    old = choose(read_machine(machine_root(tmp_path / "a", "390.157"), machine="x86_64",
                              use_nvml=False, nvidia_smi=None), env={})
    assert old.kind == "cpu" and old.index_url.endswith("/whl/cpu")
    assert "too old" in old.reason and "390.157" in old.reason
    none = choose(read_machine(machine_root(tmp_path / "b"), machine="x86_64", use_nvml=False,
                               nvidia_smi=None), env={})
    assert none.kind == "cpu" and "no NVIDIA driver" in none.reason
    assert "200 MB" in none.describe()


def test_nvml_cuda_version_wins_over_the_driver_table():
    # a 560 driver reports CUDA 12.6 in NVML: 12.8 is newer than it runs as is
    facts = MachineFacts(machine="x86_64", driver_version=(560, 35), driver_cuda=(12, 6))
    assert choose(facts, env={}).variant == "cu126"
    facts = MachineFacts(machine="x86_64", driver_version=(575, 51), driver_cuda=(12, 9))
    assert choose(facts, env={}).variant == "cu128"


def test_jetson_uses_jetpack_torch(tmp_path):
    by_release = read_machine(machine_root(tmp_path / "a", tegra=True), machine="aarch64",
                              use_nvml=False, nvidia_smi=None)
    by_model = read_machine(machine_root(tmp_path / "b", model="NVIDIA Jetson AGX Orin Developer Kit"),
                            machine="aarch64", use_nvml=False, nvidia_smi=None)
    for facts in (by_release, by_model):
        choice = choose(facts, env={})
        assert choice.kind == "jetson" and choice.index_url is None


def test_other_arm64_machine_gets_cpu(tmp_path):
    facts = read_machine(machine_root(tmp_path, model="Raspberry Pi 5 Model B Rev 1.0"),
                         machine="aarch64", use_nvml=False, nvidia_smi=None)
    choice = choose(facts, env={})
    assert choice.kind == "cpu" and "aarch64" in choice.reason


def test_environment_overrides_the_choice():
    facts = MachineFacts(machine="x86_64", driver_version=(570, 86))
    c = choose(facts, env={"MISTUDIO_TORCH": "torch==2.13.0"})
    assert (c.kind, c.requirement, c.index_url) == ("custom", "torch==2.13.0", None)
    c = choose(facts, env={"MISTUDIO_TORCH_INDEX": "https://example.org/simple"})
    assert (c.requirement, c.index_url) == ("torch>=2.3", "https://example.org/simple")


@pytest.mark.parametrize("text,expected", [
    ("570.86.15\n", (570, 86)),
    ("Driver Version: 535.183.01     CUDA Version: 12.2", (535, 183)),
    ("no driver here", None),
])
def test_parse_driver_version(text, expected):
    assert parse_driver_version(text) == expected
