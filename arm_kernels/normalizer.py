"""The torch path's exact rows: which rows, and their constant.

log_softmax(x) = x - lse(x), so an exact row is the weighted sum minus
``c = lse(base) + Σ_k w_k·lse(arm_k)``. The CUDA kernel computes the same
constant on the device (``triton_fuse._log_normalizer``), with the same rules,
since any torch op between its launches cost more than the fusion itself.
"""

from __future__ import annotations

import torch


def exact_row_indices(exact: bool | torch.Tensor, num_rows: int) -> torch.Tensor | None:
    """Indices of the rows ``exact`` asks for, on its device; None means every row.

    A host mask (what the logits processor has) costs no device sync here.
    """
    if isinstance(exact, bool):
        return None if exact else torch.zeros(0, dtype=torch.long)
    if exact.shape != (num_rows,):
        raise ValueError(f"exact must be a bool or a [{num_rows}] tensor, got {exact.shape}")
    rows = exact.nonzero().flatten()
    return None if rows.numel() == num_rows else rows


def log_normalizer(lse: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """[rows] c from ``lse`` [rows, 1 + K] (the base's, then each ARM's) and weights [rows, K]."""
    terms = torch.where(weights == 0, 0.0, weights * lse[:, 1:])
    # A row whose base or weighted ARM rules out every token is -inf throughout
    # already; subtracting a non-finite constant would only turn it into NaN.
    return (lse[:, 0] + terms.sum(dim=1)).nan_to_num_(nan=0.0, posinf=0.0, neginf=0.0)
