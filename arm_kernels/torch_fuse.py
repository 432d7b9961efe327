"""The CPU path of the GenARM fusion: a few large torch ops, and a fix-up only where needed.

The fusion is memory-bound. The unfused expression allocates a fresh [B, V]
tensor for every intermediate (about 3K + 1 of them) and streams each through
memory; here the output is written in place and one scratch buffer is reused
for every ARM, so 3 + 5K passes remain (the last one a check) and nothing is allocated per ARM.

Each op is one large parallel region on purpose: running the same ops on small
cache-sized row chunks is faster on an idle machine, but every op then ends in
a thread barrier, and on a shared CPU (vLLM's own threads, other processes) a
descheduled thread stalls every barrier: chunking measured 2x slower than the
unfused ops under load, while this path stays 2-3x faster than them either way.

-inf needs care only where a weight is 0 (0 · -inf = NaN) or negative
(-w · -inf = +inf); finite logits never produce NaN or +inf. So the fast pass
ignores -inf, and one row-max over the output finds the rows it got wrong.
Those rows (rare: masked tokens under a zero or negative weight) are redone
with explicit masking.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def fuse_torch(
    base_logits: torch.Tensor,
    arm_logits: Sequence[torch.Tensor],
    weights: torch.Tensor,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """float32 [B, V] = log_softmax(base) + Σ_k weights[:, k] · log_softmax(arm_k).

    ``out``, if given, is a float32 [B, V] tensor written in full and returned.
    """
    weights = weights.to(torch.float32)
    out = torch.log_softmax(base_logits.float(), dim=-1, out=out)
    scratch = None
    for k, arm in enumerate(arm_logits):
        scratch = torch.log_softmax(arm, dim=-1, dtype=torch.float32, out=scratch)
        out.addcmul_(scratch, weights[:, k : k + 1])
    if not arm_logits:
        return out
    # NaN and +inf can only come from -inf under a zero or negative weight.
    row_max = out.amax(dim=-1)
    bad_rows = (row_max.isnan() | row_max.isposinf()).nonzero().flatten()
    if bad_rows.numel():
        out[bad_rows] = _fuse_masked(
            base_logits[bad_rows], [arm[bad_rows] for arm in arm_logits], weights[bad_rows]
        )
    return out


def _fuse_masked(
    base_logits: torch.Tensor, arm_logits: Sequence[torch.Tensor], weights: torch.Tensor
) -> torch.Tensor:
    """The same fusion, -inf safe everywhere (slower: one more pass per ARM)."""
    out = torch.log_softmax(base_logits.float(), dim=-1)
    for k, arm in enumerate(arm_logits):
        term = torch.log_softmax(arm, dim=-1, dtype=torch.float32).mul_(weights[:, k : k + 1])
        # A zero weight adds nothing (0 · -inf = NaN -> 0); a token an ARM rules
        # out stays ruled out whatever the weight's sign (+inf -> -inf).
        term.nan_to_num_(nan=0.0, posinf=-torch.inf, neginf=-torch.inf)
        out.add_(term)
    return out
