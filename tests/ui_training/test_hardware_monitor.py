"""The Qt-free resource sampler: CPU/RAM always, GPU through NVML, gaps handled."""

from __future__ import annotations

import os
import sys
import types

import psutil

from mistudio.hardware_monitor import ResourceSampler


def test_cpu_and_ram_match_psutil():
    with ResourceSampler() as sampler:
        s = sampler.sample()
    vm = psutil.virtual_memory()
    assert s.ram_total_bytes == vm.total
    # Other processes move RAM a little between the two readings.
    assert abs(s.ram_available_bytes - vm.available) < 0.05 * vm.total
    assert 0.0 <= s.cpu_percent <= 100.0 and 0.0 <= s.process_cpu_percent <= 100.0
    rss = psutil.Process(os.getpid()).memory_info().rss
    assert abs(s.process_rss_bytes - rss) < 0.2 * rss
    assert 0.0 < s.ram_fraction < 1.0


def test_no_gpu_says_so(monkeypatch):
    # This machine has no NVIDIA driver: NVML init fails, the note explains it.
    with ResourceSampler() as sampler:
        s = sampler.sample()
        if sampler.has_gpu:  # on a GPU machine the sample lists it instead
            assert s.gpus and s.gpus[0].name
            return
    assert s.gpus == [] and "GPU" in s.gpu_note


def test_process_cpu_share_matches_the_process_cpu_time():
    """The share is this process's CPU time over the interval / (wall time x cores),
    computed here independently from os.times(); on a loaded machine the busy loop may get
    only part of a core, so the expectation comes from what it really got."""
    import os
    import time

    with ResourceSampler(use_nvml=False) as sampler:
        sampler.sample()
        t0, c0 = time.monotonic(), sum(os.times()[:2])
        acc = 0
        for i in range(3_000_000):
            acc += i
        s = sampler.sample()
        t1, c1 = time.monotonic(), sum(os.times()[:2])
    expected = 100.0 * (c1 - c0) / (t1 - t0) / s.cpu_count
    assert expected > 0
    assert abs(s.process_cpu_percent - expected) <= max(0.35 * expected, 100.0 / s.cpu_count / 10)


class _NotSupported(Exception):
    pass


def _fake_nvml(memory_supported: bool, power_supported: bool, pid: int):
    """A stand-in for the NVIDIA driver's NVML library (not installable without a GPU)."""
    m = types.ModuleType("pynvml")
    m.nvmlInit = lambda: None
    m.nvmlShutdown = lambda: None
    m.nvmlDeviceGetCount = lambda: 1
    m.nvmlDeviceGetHandleByIndex = lambda i: f"h{i}"
    m.nvmlDeviceGetName = lambda h: b"Orin (nvgpu)"
    m.nvmlDeviceGetUtilizationRates = lambda h: types.SimpleNamespace(gpu=42)

    def mem(h):
        if not memory_supported:
            raise _NotSupported("Not Supported")
        return types.SimpleNamespace(total=8 * 2**30, used=2 * 2**30, free=6 * 2**30)

    def power(h):
        if not power_supported:
            raise _NotSupported("Not Supported")
        return 123_000

    m.nvmlDeviceGetMemoryInfo = mem
    m.nvmlDeviceGetPowerUsage = power
    m.nvmlDeviceGetEnforcedPowerLimit = power
    m.nvmlDeviceGetTemperature = lambda h, sensor: 55
    m.nvmlDeviceGetComputeRunningProcesses = lambda h: [
        types.SimpleNamespace(pid=pid, usedGpuMemory=512 * 2**20)]
    return m


def test_full_nvml_readings(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", _fake_nvml(True, True, os.getpid()))
    with ResourceSampler() as sampler:
        s = sampler.sample()
    g = s.gpus[0]
    assert (g.utilization, g.temperature_c, g.power_w) == (42.0, 55.0, 123.0)
    assert g.memory_fraction == 0.25 and g.process_memory_bytes == 512 * 2**20


def test_jetson_without_memory_or_power_degrades(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", _fake_nvml(False, False, -1))
    monkeypatch.setattr("mistudio.hardware_monitor.detect_jetson", lambda: (True, "Jetson Orin"))
    with ResourceSampler() as sampler:
        s = sampler.sample()
    g = s.gpus[0]
    assert g.utilization == 42.0 and g.power_w is None and g.process_memory_bytes is None
    # Unified memory: the GPU's memory is the system RAM.
    assert g.unified_memory and g.memory_total_bytes == psutil.virtual_memory().total
