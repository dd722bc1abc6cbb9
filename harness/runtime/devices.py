"""Where a trial runs and in what precision: the device, its name for the record, the compute dtype, and
how many CPU threads torch may use. torch is imported inside each function, never at import time."""

from __future__ import annotations

import contextlib
import os
import platform
from typing import Any

THREADS_ENV = "HARNESS_TORCH_THREADS"
"""CPU threads for the trial process (set per worker by `--workers N`: the cores split between them)."""


def pick_device() -> str:
    """`cuda` when a GPU is visible, else `cpu`."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def device_name(device: str) -> str:
    """What a trial runs on, for its record: the GPU's name, or the CPU's model name and its cores."""
    import torch

    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    name = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    return f"{name} ({cores} cores)"


def bf16_supported(device: str) -> bool:
    """Whether bf16 math is native on the device: CUDA's own check; on CPU AVX512-BF16 or AMX."""
    import torch

    if device.startswith("cuda"):
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        check = getattr(torch.cpu, probe, None)  # private torch helpers, hence guarded
        with contextlib.suppress(Exception):
            if check is not None and check():
                return True
    return False


def compute_dtype(device: str) -> Any:
    """bf16 where native; else fp16 on CUDA and fp32 on CPU (fp16 on CPU is slow)."""
    import torch

    if bf16_supported(device):
        return torch.bfloat16
    return torch.float16 if device.startswith("cuda") else torch.float32


def autocast_for(device: str) -> contextlib.AbstractContextManager[Any]:
    """The autocast a trial's forward passes run under, training and evaluation alike (a trial alone and the
    members of a pack): bf16 on CUDA, none elsewhere."""
    import torch

    return torch.autocast("cuda", dtype=torch.bfloat16) if device == "cuda" else contextlib.nullcontext()


def torch_threads() -> int:
    """CPU threads torch should use in this process: `$HARNESS_TORCH_THREADS` when set (a worker's share of
    the cores under `--workers N`, which a model load must not undo), else every core."""
    value = os.environ.get(THREADS_ENV)
    return max(1, int(value)) if value else max(1, os.cpu_count() or 1)


def loaded_hub_kernels() -> list[str]:
    """The hub kernels (`repo_id@revision`) the `kernels` package has loaded into this process, without
    importing it. On a CPU with AVX512-BF16, importing bitsandbytes loads `kernels-community/quantization-
    bitsandbytes` for its 4-bit matmuls when the hub or its cache has it, and otherwise computes them with its
    own C kernel (an empty list): two code paths whose numbers are not interchangeable, so each trial and
    `harness doctor` say which one ran."""
    import sys

    kernels = sys.modules.get("kernels")
    if kernels is None or not hasattr(kernels, "get_loaded_kernels"):
        return []
    names = []
    for loaded in kernels.get_loaded_kernels():
        info = getattr(loaded, "repo_info", None)
        names.append(f"{info.repo_id}@{info.revision}" if info is not None else str(loaded.metadata.name))
    return sorted(names)
