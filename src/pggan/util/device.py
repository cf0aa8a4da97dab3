"""Choosing the device and the precision at run time, and measuring memory."""
from __future__ import annotations

import contextlib
import resource

import torch

from .errors import DeviceError

PRECISIONS = ("fp32", "bf16", "fp16")
PRECISION_CHOICES = ("auto",) + PRECISIONS     # auto: bf16 where the hardware computes it natively


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise DeviceError(f"unknown device '{name}'; use auto, cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"device '{name}' was asked for but CUDA is not available here; use --device cpu or auto")
    if dev.type == "cuda" and dev.index is not None:
        count = torch.cuda.device_count()
        if dev.index >= count:
            have = f"cuda:0 to cuda:{count - 1}" if count > 1 else "cuda:0"
            raise DeviceError(f"device '{name}' was asked for but this machine has {count} CUDA device(s): "
                              f"use one of {have}")
        torch.cuda.set_device(dev)     # what defaults to the current GPU (streams, graphs' pools) uses this one
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceError("device 'mps' was asked for but MPS is not available here; use --device cpu or auto")
    return dev


def cpu_has_native_bf16() -> bool:
    """AVX-512-BF16 or AMX: without them PyTorch runs bf16 convolutions through a slow fallback."""
    return any(getattr(torch.cpu, f, lambda: False)() for f in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))


def resolve_precision(precision: str, device: torch.device) -> tuple[str, str]:
    """(the precision to train in, why): ``auto`` is bf16 where the device computes it natively (a CPU
    with AVX-512-BF16 or AMX, a CUDA GPU with bf16), otherwise fp32; any other value is kept."""
    if precision != "auto":
        return precision, "as asked"
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return "bf16", f"auto: {torch.cuda.get_device_name(device)} computes bf16 natively"
        return "fp32", "auto: this GPU has no native bf16"
    if device.type == "cpu":
        if cpu_has_native_bf16():
            return "bf16", "auto: this CPU computes bf16 natively (AVX-512-BF16 or AMX)"
        return "fp32", ("auto: this CPU has no native bf16 (no AVX-512-BF16 or AMX), where bf16 runs through a "
                        "slow fallback")
    return "fp32", f"auto: fp32 on {device.type}"


def precision_note(device: torch.device, precision: str) -> str | None:
    """A warning when bf16 is asked of a CPU without native bf16."""
    if device.type != "cpu" or precision != "bf16" or cpu_has_native_bf16():
        return None
    return ("note: this CPU has no native bf16 (no AVX-512-BF16 or AMX); bf16 convolutions run through a slow "
            "fallback, about 10-15x slower than fp32 here: consider --precision fp32")


def autocast_for(device: torch.device, precision: str):
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


MAX_MEMORY_FRACTION = 0.5    # of the available memory, the most one command's in-memory data may take


def available_memory() -> int:
    """Bytes of host memory a new allocation can take (Linux's MemAvailable; 8 GiB where it is not known)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 8 << 30


def synchronize(device: torch.device) -> None:
    """Wait until ``device`` has finished the work queued on it (a GPU runs asynchronously: a timing
    without this measures only the launches); a CPU has finished when its calls return."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def to_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A host tensor on ``device`` without the host waiting: to a GPU from pinned memory, asynchronously
    (a copy from pageable memory waits for the GPU's queue to drain: a sync per minibatch)."""
    if device.type != "cuda":
        return x.to(device)
    return x.pin_memory().to(device, non_blocking=True)


def configure_cuda(device: torch.device, deterministic: bool = False) -> str | None:
    """The GPU's fast paths, once per process: TF32 for fp32 convolutions and matrix products (the
    tensor cores; bf16 runs are unaffected), and cuDNN's autotuner (off for deterministic runs). Returns
    the line for the run's log."""
    if device.type != "cuda":
        return None
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = not deterministic
    return (f"CUDA: TF32 on for fp32 convolutions and matrix products; cudnn.benchmark "
            f"{'off (deterministic)' if deterministic else 'on'}")
