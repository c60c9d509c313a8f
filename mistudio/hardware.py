"""What the machine has: CUDA GPU (name, memory, compute capability, bf16), Jetson, RAM.

``probe_fast()`` never imports torch (NVML + /proc), for the status bar at start-up;
``probe()`` adds torch's view (CUDA availability, bf16) and is called from a worker or
the CLI.
"""

from __future__ import annotations

import os
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil


@dataclass
class GpuInfo:
    index: int
    name: str
    total_bytes: int | None = None
    used_bytes: int | None = None
    free_bytes: int | None = None
    compute_capability: str | None = None
    bf16: bool | None = None
    utilization: float | None = None
    temperature_c: float | None = None
    power_w: float | None = None


@dataclass
class HardwareInfo:
    machine: str
    system: str
    cpu_count: int
    ram_total_bytes: int
    ram_available_bytes: int
    jetson: bool
    jetson_model: str | None = None
    cuda_available: bool | None = None  # None: torch not asked yet
    cuda_version: str | None = None
    torch_version: str | None = None
    gpus: list[GpuInfo] = field(default_factory=list)
    nvml: bool = False
    fallback_reason: str = ""

    @property
    def best_device(self) -> str:
        return "cuda" if self.cuda_available or (self.cuda_available is None and self.gpus) else "cpu"

    @property
    def unified_memory(self) -> bool:
        return self.jetson

    def device_label(self) -> str:
        if self.gpus:
            g = self.gpus[0]
            mem = f", {g.total_bytes / 2**30:.0f} GiB" if g.total_bytes else ""
            return f"{g.name}{mem}"
        return f"CPU ({self.cpu_count} cores)"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["best_device"] = self.best_device
        return d


def detect_jetson(model_files=("/proc/device-tree/model", "/sys/firmware/devicetree/base/model"),
                  release_file="/etc/nv_tegra_release") -> tuple[bool, str | None]:
    """Jetson (Tegra) boards: the L4T release file, or 'Jetson'/'Orin' in the device-tree model."""
    model = None
    for p in model_files:
        try:
            model = Path(p).read_bytes().rstrip(b"\0").decode(errors="replace").strip()
            break
        except OSError:
            continue
    is_jetson = Path(release_file).exists() or bool(
        model and ("jetson" in model.lower() or "orin" in model.lower() or "tegra" in model.lower()))
    return is_jetson, model if is_jetson else None


def nvml_gpus() -> list[GpuInfo]:
    """GPU list through NVML; [] if there is no NVIDIA driver. Never raises."""
    try:
        import pynvml
    except Exception:
        return []
    try:
        pynvml.nvmlInit()
    except Exception:
        return []
    gpus = []
    try:
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            name = pynvml.nvmlDeviceGetName(h)
            name = name.decode() if isinstance(name, bytes) else name
            g = GpuInfo(index=i, name=name)
            try:
                mem = pynvml.nvmlDeviceGetMemoryInfo(h)
                g.total_bytes, g.used_bytes, g.free_bytes = int(mem.total), int(mem.used), int(mem.free)
            except Exception:  # Jetson: memory "not supported"
                pass
            try:
                g.utilization = float(pynvml.nvmlDeviceGetUtilizationRates(h).gpu)
            except Exception:
                pass
            try:
                g.temperature_c = float(pynvml.nvmlDeviceGetTemperature(h, 0))
            except Exception:
                pass
            try:
                g.power_w = pynvml.nvmlDeviceGetPowerUsage(h) / 1000.0
            except Exception:
                pass
            try:
                major, minor = pynvml.nvmlDeviceGetCudaComputeCapability(h)
                g.compute_capability = f"{major}.{minor}"
                g.bf16 = major >= 8
            except Exception:
                pass
            gpus.append(g)
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:
            pass
    return gpus


def probe_fast() -> HardwareInfo:
    vm = psutil.virtual_memory()
    jetson, model = detect_jetson()
    gpus = nvml_gpus()
    return HardwareInfo(
        machine=platform.machine(), system=f"{platform.system()} {platform.release()}",
        cpu_count=os.cpu_count() or 1, ram_total_bytes=int(vm.total),
        ram_available_bytes=int(vm.available), jetson=jetson, jetson_model=model, gpus=gpus,
        nvml=bool(gpus),
    )


def probe() -> HardwareInfo:
    """Full probe including torch (imports torch: call off the GUI thread)."""
    info = probe_fast()
    try:
        import torch
    except Exception as exc:  # torch missing or broken
        info.cuda_available = False
        info.fallback_reason = f"PyTorch could not be imported ({exc})."
        return info
    info.torch_version = torch.__version__
    info.cuda_version = torch.version.cuda
    try:
        info.cuda_available = bool(torch.cuda.is_available())
    except Exception as exc:
        info.cuda_available = False
        info.fallback_reason = f"CUDA check failed: {exc}"
    if info.cuda_available:
        torch_gpus = []
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            g = next((x for x in info.gpus if x.index == i), None) or GpuInfo(i, props.name)
            g.name = props.name
            g.compute_capability = f"{props.major}.{props.minor}"
            g.bf16 = props.major >= 8
            g.total_bytes = g.total_bytes or int(props.total_memory)
            try:
                free, total = torch.cuda.mem_get_info(i)
                g.free_bytes, g.total_bytes = int(free), int(total)
            except Exception:
                pass
            if info.jetson:  # unified memory: CUDA's free figure ignores the page cache
                g.free_bytes = info.ram_available_bytes
            torch_gpus.append(g)
        info.gpus = torch_gpus
    else:
        if not info.fallback_reason:
            if info.gpus:
                info.fallback_reason = ("An NVIDIA GPU is present but this PyTorch build has no "
                                        "CUDA support (install a CUDA build of torch).")
            else:
                info.fallback_reason = "No CUDA GPU found; jobs run on the CPU."
        info.gpus = [] if not info.cuda_available else info.gpus
    return info


def resolve_device(setting: str = "auto") -> str:
    """'auto' -> 'cuda' when available, else 'cpu'. Imports torch."""
    import torch

    if setting == "cpu":
        return "cpu"
    if setting in ("auto", "cuda") and torch.cuda.is_available():
        return "cuda"
    return "cpu"


def resolve_dtype(setting: str = "auto", device: str = "cpu") -> str:
    if setting != "auto":
        return setting
    if device.startswith("cuda"):
        import torch

        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    return "float32"


#: Instruction-set extensions that change numerical kernels' speed and results (oneDNN,
#: MKL, ATen, bitsandbytes pick their code paths by these); benchmarks print them.
ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "avx512_fp16",
             "amx_tile", "amx_bf16", "amx_int8", "avx_vnni", "asimd", "sve", "sve2")


def cpu_summary(cpuinfo: str | None = None) -> str:
    """'<CPU model> (<arch>; <ISA extensions>)', for benchmark output: a speed figure means
    little without the CPU it came from. ``cpuinfo``: /proc/cpuinfo's text (tests)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            cpuinfo = ""
    model, flags = "", set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if not model and key in ("model name", "cpu model", "hardware"):
            model = value.strip()
        elif not flags and key in ("flags", "features"):
            flags = set(value.split())
    model = model or platform.processor() or "unknown CPU"
    isa = [f for f in ISA_FLAGS if f in flags]
    return f"{model} ({platform.machine()}; {', '.join(isa) or 'no AVX2/AVX-512/AMX/NEON'})"
