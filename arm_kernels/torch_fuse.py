"""The CPU path of the GenARM fusion: one weighted sum, and a per-row constant only where asked.

log_softmax(x) = x - lse(x), so the fusion is
``base + Σ_k w_k·arm_k - c`` with one constant per row,
``c = lse(base) + Σ_k w_k·lse(arm_k)``. Rows whose later processing is
shift-invariant (``exact`` False for them) skip ``c``: they cost one weighted
sum, a few large in-place ops over memory. Exact rows also need each input's
log-sum-exp, the only part that evaluates exp (compute-bound on a CPU), taken
in cache-sized row chunks.

Measured at 256 x 128256 x 2 float32 on the 2-core dev VM
(``benchmarks/kernel_bench.py``): the weighted sum is memory-bound; the
log_softmax of every input, which the previous version computed for every row,
is what made it only 2.3x faster than the unfused ops.

-inf needs care only where a weight is 0 (0 · -inf = NaN) or negative
(-w · -inf = +inf); finite logits never produce NaN or +inf. So the fast pass
ignores -inf, and one row-max over the output finds the rows it got wrong.
Those rows (rare: masked tokens under a zero or negative weight) are redone
with explicit masking.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

# Rows per chunk of the log-sum-exp: 32 rows of a 128k vocabulary in float32
# (16 MiB) stay in a server CPU's last-level cache between max, exp and sum.
LSE_ROW_CHUNK = 32


def fuse_torch(
    base_logits: torch.Tensor,
    arm_logits: Sequence[torch.Tensor],
    weights: torch.Tensor,
    out: torch.Tensor | None = None,
    exact: bool | torch.Tensor = True,
) -> torch.Tensor:
    """float32 [B, V] = log_softmax(base) + Σ_k weights[:, k] · log_softmax(arm_k).

    ``exact``: True (every row), False, or a bool [B] tensor. A row that is not
    exact may come back shifted by a per-row constant (``base + Σ_k w_k·arm_k``).
    ``out``, if given, is a float32 [B, V] tensor not overlapping the inputs,
    written in full and returned.
    """
    weights = weights.to(torch.float32)
    exact_rows = _exact_rows(exact, base_logits.shape[0])
    shift = None
    if exact_rows is None or exact_rows.numel():
        shift = _log_normalizer(base_logits, arm_logits, weights, exact_rows)
    out = _weighted_sum(base_logits, arm_logits, weights, out)
    if shift is None:
        return out
    if exact_rows is None:
        return out.sub_(shift[:, None])
    out[exact_rows] -= shift[:, None]
    return out


def _exact_rows(exact: bool | torch.Tensor, num_rows: int) -> torch.Tensor | None:
    """Indices of the exact rows; None means every row (no indexing needed)."""
    if isinstance(exact, bool):
        return None if exact else torch.zeros(0, dtype=torch.long)
    if exact.shape != (num_rows,):
        raise ValueError(f"exact must be a bool or a [{num_rows}] tensor, got {exact.shape}")
    rows = exact.nonzero().flatten()
    return None if rows.numel() == num_rows else rows


def _weighted_sum(
    base_logits: torch.Tensor,
    arm_logits: Sequence[torch.Tensor],
    weights: torch.Tensor,
    out: torch.Tensor | None,
) -> torch.Tensor:
    """base + Σ_k w_k·arm_k in float32, with fuse_reference's -inf rules."""
    if out is None:
        out = torch.empty(base_logits.shape, dtype=torch.float32, device=base_logits.device)
    same_dtype = all(a.dtype == torch.float32 for a in (base_logits, *arm_logits))
    if same_dtype and arm_logits:
        # One op reads base and the first ARM and writes out.
        torch.addcmul(base_logits, arm_logits[0], weights[:, :1], out=out)
        rest = range(1, len(arm_logits))
    else:
        out.copy_(base_logits)
        rest = range(len(arm_logits))
    scratch = None
    for k in rest:
        arm = arm_logits[k]
        if arm.dtype != torch.float32:
            # On a CPU, a mixed-dtype op first copies the whole input to a fresh
            # float32 tensor; converting into one reused buffer is cheaper.
            scratch = arm.to(torch.float32) if scratch is None else scratch.copy_(arm)
            arm = scratch
        out.addcmul_(arm, weights[:, k : k + 1])
    if not arm_logits:
        return out
    # NaN and +inf can only come from -inf under a zero or negative weight.
    row_max = out.amax(dim=-1)
    bad_rows = (row_max.isnan() | row_max.isposinf()).nonzero().flatten()
    if bad_rows.numel():
        out[bad_rows] = _weighted_sum_masked(
            base_logits[bad_rows], [arm[bad_rows] for arm in arm_logits], weights[bad_rows]
        )
    return out


def _weighted_sum_masked(
    base_logits: torch.Tensor, arm_logits: Sequence[torch.Tensor], weights: torch.Tensor
) -> torch.Tensor:
    """The same sum, -inf safe everywhere (slower: more passes per ARM)."""
    out = base_logits.to(torch.float32, copy=True)
    for k, arm in enumerate(arm_logits):
        term = arm.to(torch.float32, copy=True).mul_(weights[:, k : k + 1])
        # A zero weight adds nothing (0 · -inf = NaN -> 0); a token an ARM rules
        # out stays ruled out whatever the weight's sign (+inf -> -inf).
        term.nan_to_num_(nan=0.0, posinf=-torch.inf, neginf=-torch.inf)
        out.add_(term)
    return out


def _log_normalizer(
    base_logits: torch.Tensor,
    arm_logits: Sequence[torch.Tensor],
    weights: torch.Tensor,
    rows: torch.Tensor | None,
) -> torch.Tensor:
    """c = lse(base) + Σ_k w_k·lse(arm_k) per row (of ``rows``; None: all)."""
    if rows is not None:
        base_logits, weights = base_logits[rows], weights[rows]
        arm_logits = [arm[rows] for arm in arm_logits]
    shift = row_logsumexp(base_logits)
    for k, arm in enumerate(arm_logits):
        w = weights[:, k]
        shift += torch.where(w == 0, 0.0, w * row_logsumexp(arm))
    # A row whose base or weighted ARM rules out every token is -inf throughout
    # already; subtracting a non-finite constant would only turn it into NaN.
    return shift.nan_to_num_(nan=0.0, posinf=0.0, neginf=0.0)


def row_logsumexp(x: torch.Tensor) -> torch.Tensor:
    """float32 [B] log-sum-exp of each row, -inf safe (an all -inf row gives -inf).

    torch.logsumexp allocates three [B, V] temporaries; here one chunk-sized
    buffer is reused while the chunk is still in cache.
    """
    num_rows = x.shape[0]
    result = torch.empty(num_rows, dtype=torch.float32, device=x.device)
    buffer = None
    for start in range(0, num_rows, LSE_ROW_CHUNK):
        chunk = x[start : start + LSE_ROW_CHUNK]
        row_max = chunk.amax(dim=-1, keepdim=True).float()
        row_max = torch.where(row_max.isfinite(), row_max, 0.0)
        if buffer is None or buffer.shape[0] != chunk.shape[0]:
            buffer = torch.empty(chunk.shape, dtype=torch.float32, device=x.device)
        torch.sub(chunk, row_max, out=buffer).exp_()
        result[start : start + chunk.shape[0]] = buffer.sum(dim=-1).log_() + row_max[:, 0]
    return result
