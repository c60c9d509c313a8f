"""A Qt-free sampler of what the machine is doing: GPU (NVML), CPU and RAM, and our share.

``ResourceSampler.sample()`` returns one :class:`ResourceSample`. It never raises: NVML
missing (no NVIDIA driver), NVML queries "not supported" (Jetson reports no memory, some
boards no power) or a GPU that vanished all leave the matching field ``None`` and a short
note explaining why. On unified-memory Jetson boards the GPU shares system RAM, so the
"GPU memory" shown there is the system's (``MemAvailable``), as CUDA's own figure ignores
the page cache.

NVML is initialised once per sampler and shut down by :meth:`close`; a sample costs well
under a millisecond per GPU, so a 1 Hz timer on the GUI thread is fine.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import psutil

from mistudio.hardware import detect_jetson


@dataclass
class GpuSample:
    index: int
    name: str
    utilization: float | None = None  # percent
    memory_used_bytes: int | None = None
    memory_total_bytes: int | None = None
    process_memory_bytes: int | None = None  # this process's share, when NVML tells
    temperature_c: float | None = None
    power_w: float | None = None
    power_limit_w: float | None = None
    unified_memory: bool = False  # Jetson: memory figures are the system RAM's

    @property
    def memory_fraction(self) -> float | None:
        if self.memory_used_bytes is None or not self.memory_total_bytes:
            return None
        return self.memory_used_bytes / self.memory_total_bytes


@dataclass
class ResourceSample:
    t: float
    cpu_percent: float  # whole machine, 0-100
    cpu_count: int
    ram_used_bytes: int
    ram_total_bytes: int
    ram_available_bytes: int
    process_cpu_percent: float  # this process, 0-100 of the whole machine
    process_rss_bytes: int
    gpus: list[GpuSample] = field(default_factory=list)
    gpu_note: str = ""  # why there is no (or partial) GPU information

    @property
    def ram_fraction(self) -> float:
        return self.ram_used_bytes / self.ram_total_bytes if self.ram_total_bytes else 0.0


class ResourceSampler:
    """Holds the NVML session and the psutil process handle between samples."""

    def __init__(self, *, use_nvml: bool = True, pid: int | None = None):
        self._pid = pid or os.getpid()
        self._process = psutil.Process(self._pid)
        self._nvml = None
        self._handles: list = []
        self._names: list[str] = []
        self.jetson, self.jetson_model = detect_jetson()
        self.gpu_note = ""
        # The first cpu_percent() call of psutil returns 0.0; prime both now.
        psutil.cpu_percent(interval=None)
        try:
            self._process.cpu_percent(interval=None)
        except psutil.Error:
            pass
        if use_nvml:
            self._init_nvml()
        else:
            self.gpu_note = "GPU monitoring is off."

    # ------------------------------------------------------------------ NVML

    def _init_nvml(self) -> None:
        try:
            import pynvml
        except Exception:
            self.gpu_note = "No GPU monitoring: the nvidia-ml-py package is not installed."
            return
        try:
            pynvml.nvmlInit()
        except Exception:
            self.gpu_note = ("No NVIDIA GPU found (no driver or NVML); showing CPU and RAM. "
                             "Jobs run on the CPU.")
            if self.jetson:
                self.gpu_note = ("This Jetson board does not expose NVML; GPU load is not "
                                 "available. Memory is shared with the system RAM shown here.")
            return
        self._nvml = pynvml
        try:
            count = pynvml.nvmlDeviceGetCount()
        except Exception:
            count = 0
        for i in range(count):
            try:
                h = pynvml.nvmlDeviceGetHandleByIndex(i)
                name = pynvml.nvmlDeviceGetName(h)
                self._handles.append(h)
                self._names.append(name.decode() if isinstance(name, bytes) else str(name))
            except Exception:
                continue
        if not self._handles:
            self.gpu_note = "The NVIDIA driver reports no usable GPU; showing CPU and RAM."

    @property
    def has_gpu(self) -> bool:
        return bool(self._handles)

    def _gpu_sample(self, index: int, handle, name: str, vm) -> GpuSample:
        nv = self._nvml
        g = GpuSample(index=index, name=name, unified_memory=self.jetson)
        try:
            g.utilization = float(nv.nvmlDeviceGetUtilizationRates(handle).gpu)
        except Exception:
            pass
        try:
            mem = nv.nvmlDeviceGetMemoryInfo(handle)
            g.memory_used_bytes, g.memory_total_bytes = int(mem.used), int(mem.total)
        except Exception:
            pass
        if self.jetson or g.memory_total_bytes is None:
            if self.jetson:  # unified memory: the system RAM is the GPU's memory
                g.memory_total_bytes = int(vm.total)
                g.memory_used_bytes = int(vm.total - vm.available)
        try:
            g.temperature_c = float(nv.nvmlDeviceGetTemperature(handle, 0))
        except Exception:
            pass
        try:
            g.power_w = nv.nvmlDeviceGetPowerUsage(handle) / 1000.0
        except Exception:
            pass
        try:
            g.power_limit_w = nv.nvmlDeviceGetEnforcedPowerLimit(handle) / 1000.0
        except Exception:
            pass
        g.process_memory_bytes = self._process_gpu_memory(handle)
        return g

    def _process_gpu_memory(self, handle) -> int | None:
        nv = self._nvml
        for fn_name in ("nvmlDeviceGetComputeRunningProcesses",
                        "nvmlDeviceGetGraphicsRunningProcesses"):
            fn = getattr(nv, fn_name, None)
            if fn is None:
                continue
            try:
                for proc in fn(handle):
                    if int(proc.pid) == self._pid and proc.usedGpuMemory is not None:
                        return int(proc.usedGpuMemory)
            except Exception:
                continue
        return None

    # ------------------------------------------------------------------ sampling

    def sample(self) -> ResourceSample:
        vm = psutil.virtual_memory()
        cpu_count = psutil.cpu_count() or 1
        try:
            with self._process.oneshot():
                # psutil reports process CPU as percent of one core; scale to the machine.
                # Over a very short interval psutil's ratio overshoots; the share is <= 100%.
                proc_cpu = min(100.0, self._process.cpu_percent(interval=None) / cpu_count)
                rss = int(self._process.memory_info().rss)
        except psutil.Error:
            proc_cpu, rss = 0.0, 0
        gpus = []
        for i, (h, name) in enumerate(zip(self._handles, self._names)):
            try:
                gpus.append(self._gpu_sample(i, h, name, vm))
            except Exception:
                continue
        note = self.gpu_note
        if self._handles and gpus and all(g.memory_total_bytes is None for g in gpus):
            note = "NVML does not report GPU memory on this device."
        return ResourceSample(
            t=time.time(), cpu_percent=float(psutil.cpu_percent(interval=None)),
            cpu_count=cpu_count, ram_used_bytes=int(vm.total - vm.available),
            ram_total_bytes=int(vm.total), ram_available_bytes=int(vm.available),
            process_cpu_percent=float(proc_cpu), process_rss_bytes=rss, gpus=gpus,
            gpu_note=note)

    def close(self) -> None:
        if self._nvml is not None:
            try:
                self._nvml.nvmlShutdown()
            except Exception:
                pass
            self._nvml = None
            self._handles, self._names = [], []

    def __enter__(self) -> "ResourceSampler":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
