"""The GenARM fusion: log_softmax(base) + Σ_k w_k · log_softmax(arm_k), per row.

``fuse`` picks the Triton kernel for CUDA tensors and the torch path otherwise;
both are tested against ``fuse_reference`` (float64).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from genarm.arm_kernels.reference import fuse_reference
from genarm.arm_kernels.torch_fuse import fuse_torch

__all__ = ["fuse", "fuse_reference", "fuse_torch", "fuse_triton"]


def fuse_triton(
    base_logits: torch.Tensor, arm_logits: Sequence[torch.Tensor], weights: torch.Tensor
) -> torch.Tensor:
    """The Triton kernel; Triton is imported on first use only."""
    from genarm.arm_kernels.triton_fuse import fuse_triton as kernel

    return kernel(base_logits, arm_logits, weights)


def _triton_usable(base_logits: torch.Tensor, num_arms: int) -> bool:
    if not base_logits.is_cuda or num_arms > 4:
        return False
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def fuse(
    base_logits: torch.Tensor, arm_logits: Sequence[torch.Tensor], weights: torch.Tensor
) -> torch.Tensor:
    """float32 [B, V] guided log-probabilities (unnormalised across ARMs' sum).

    base_logits: [B, V]; arm_logits: K tensors [B, V]; weights: [B, K].
    """
    if _triton_usable(base_logits, len(arm_logits)):
        return fuse_triton(base_logits, arm_logits, weights)
    return fuse_torch(base_logits, arm_logits, weights)
