"""What this machine computes natively, for choosing dtypes.

On a CPU without bfloat16 instructions torch and vLLM emulate bf16, several
times slower than float32 (docs/benchmarks.md, docs/training.md).
"""

from __future__ import annotations

from pathlib import Path

import torch

# CPU flags of native bfloat16 arithmetic (x86 AVX-512 BF16 / AMX, Arm's BF16 extension).
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")


def cpu_has_native_bf16(cpuinfo: str | None = None) -> bool | None:
    """Whether this CPU computes in bfloat16 natively; None where it cannot tell."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return None
    flags = {
        flag
        for line in cpuinfo.splitlines()
        if line.split(":")[0].strip() in ("flags", "Features")
        for flag in line.split(":", 1)[1].split()
    }
    return any(flag in flags for flag in NATIVE_BF16_FLAGS)


def training_device() -> torch.device:
    """CUDA when one is present, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def bf16_is_fast(device: torch.device) -> bool:
    """Whether bfloat16 compute pays on ``device`` (native there, not emulated)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return cpu_has_native_bf16() is True
