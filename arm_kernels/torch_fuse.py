"""The CPU path of the GenARM fusion: torch ops over cache-sized row chunks.

Unfused, each op streams the whole [B, V] tensor through memory (about ten
passes for K = 2). Running the same ops on a few rows at a time keeps the
working set in cache, so only the inputs are read once and the output written
once from main memory: about 3x faster at B = 256, V = 128256 on 2 cores.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

# Rows per chunk: ~8 rows x 128k vocab x 4 B x (K + 2) buffers stays in L2/L3.
ROWS_PER_CHUNK = 8


def fuse_torch(
    base_logits: torch.Tensor,
    arm_logits: Sequence[torch.Tensor],
    weights: torch.Tensor,
    rows_per_chunk: int = ROWS_PER_CHUNK,
) -> torch.Tensor:
    """float32 [B, V] = log_softmax(base) + Σ_k w_k · log_softmax(arm_k)."""
    num_rows = base_logits.shape[0]
    out = torch.empty(base_logits.shape, dtype=torch.float32, device=base_logits.device)
    weights = weights.to(torch.float32)
    for start in range(0, num_rows, rows_per_chunk):
        rows = slice(start, start + rows_per_chunk)
        chunk = out[rows]
        torch.log_softmax(base_logits[rows].float(), dim=-1, out=chunk)
        for k, arm in enumerate(arm_logits):
            term = torch.log_softmax(arm[rows].float(), dim=-1).mul_(weights[rows, k : k + 1])
            # 0 * -inf is NaN: a zero weight adds nothing. w < 0 turns an ARM's
            # -inf into +inf: the token stays ruled out (-inf), as in the reference.
            term.nan_to_num_(nan=0.0, posinf=-torch.inf, neginf=-torch.inf)
            chunk.add_(term)
    return out
