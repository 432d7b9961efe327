"""The GenARM fusion: log_softmax(base) + Σ_k w_k · log_softmax(arm_k), per row.

Rows may ask for less: everything vLLM does after a logits processor
(sampling, temperature, top-k/p, min-p, processed logprobs, presence and
frequency penalties, logit bias) is unchanged by adding a constant to a row, so
such rows can take ``base + Σ_k w_k·arm_k``, one read of the inputs and one
write (``exact`` False for them). A repetition penalty, which scales positive
and negative logits differently, or a logprobs mode that returns the logits
themselves, needs the exact form.

``fuse`` picks the Triton kernel for CUDA tensors (when Triton imports) and the
torch path otherwise; both are tested against ``fuse_reference`` (float64).
Triton is imported only when the kernel is first used, so this package imports
without it.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

import torch

from genarm.arm_kernels.reference import fuse_reference
from genarm.arm_kernels.torch_fuse import fuse_torch

__all__ = ["can_fuse_in_place", "fuse", "fuse_reference", "fuse_torch", "fuse_triton"]


def fuse_triton(
    base_logits: torch.Tensor,
    arm_logits: Sequence[torch.Tensor],
    weights: torch.Tensor,
    out: torch.Tensor | None = None,
    exact: bool | torch.Tensor = True,
    **tuning: int,
) -> torch.Tensor:
    """The Triton kernels (see ``triton_fuse``); float32 [B, V]."""
    from genarm.arm_kernels.triton_fuse import fuse_triton as kernel

    return kernel(base_logits, arm_logits, weights, out=out, exact=exact, **tuning)


@cache
def _triton_available() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def can_fuse_in_place(base_logits: torch.Tensor) -> bool:
    """Whether ``fuse(base_logits, ..., out=base_logits)`` is allowed.

    The Triton kernels read each element before writing it, by the same
    program; the torch path still needs the base after writing its output.
    """
    return (
        base_logits.is_cuda
        and base_logits.dtype == torch.float32
        and base_logits.stride(-1) == 1
        and _triton_available()
    )


def fuse(
    base_logits: torch.Tensor,
    arm_logits: Sequence[torch.Tensor],
    weights: torch.Tensor,
    out: torch.Tensor | None = None,
    exact: bool | torch.Tensor = True,
) -> torch.Tensor:
    """float32 [B, V] guided log-probabilities (not renormalised: Σα ≠ 0 in general).

    base_logits: [B, V]; arm_logits: K tensors [B, V] (any float dtype, computed
    in float32); weights: [B, K]. ``out``: optional float32 [B, V] to write
    into, not overlapping the inputs (or base_logits itself where
    ``can_fuse_in_place`` says so). ``exact``: True (every row), False, or a
    bool [B] tensor (on the host, to spare a GPU sync); a row that is not exact
    may come back shifted by a per-row constant.
    """
    if base_logits.is_cuda and _triton_available():
        return fuse_triton(base_logits, arm_logits, weights, out=out, exact=exact)
    return fuse_torch(base_logits, arm_logits, weights, out=out, exact=exact)
