"""The CPU path of the GenARM fusion: one weighted sum, and a per-row constant only where asked.

log_softmax(x) = x - lse(x), so the fusion is
``base + Σ_k w_k·arm_k - c`` with one constant per row,
``c = lse(base) + Σ_k w_k·lse(arm_k)``. Rows whose later processing is
shift-invariant (``exact`` False for them) skip ``c``: they cost one weighted
sum, a few large in-place ops over memory. Exact rows also need each input's
log-sum-exp, the only part that evaluates exp (compute-bound on a CPU), taken
in cache-sized row chunks.

Measured at 256 x 128256 x 2 float32 on the 2-core dev VM
(``benchmarks/kernel_bench.py``, README): one-pass rows 11.3x the unfused
ops (65% of the copy bandwidth), exact rows 3.1x; the previous version took
every input's log_softmax for every row (2.3x).

-inf needs care only where a weight is 0 (0 · -inf = NaN) or negative
(-w · -inf = +inf); finite logits never produce NaN or +inf. So the fast pass
ignores -inf, and one row-max over the output finds the rows it got wrong.
Those rows (rare: masked tokens under a zero or negative weight) are redone
with explicit masking.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from genarm.arm_kernels.normalizer import exact_row_indices, log_normalizer

# Rows per chunk of the log-sum-exp: 32 rows of a 128k vocabulary in float32
# (16 MiB) stay in a server CPU's last-level cache between max, exp and sum.
LSE_ROW_CHUNK = 32
# Below this many elements torch.logsumexp's one call beats the chunk loop's
# ten (2-core VM: 86 vs 196 us at 1 x 128256; 29 vs 69 ms the other way at 256 rows).
LSE_SMALL_INPUT = 1 << 22


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
    exact_rows = exact_row_indices(exact, base_logits.shape[0])
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


def _weighted_sum(
    base_logits: torch.Tensor,
    arm_logits: Sequence[torch.Tensor],
    weights: torch.Tensor,
    out: torch.Tensor | None,
) -> torch.Tensor:
    """base + Σ_k w_k·arm_k in float32, with fuse_reference's -inf rules."""
    if out is None:
        out = torch.empty(base_logits.shape, dtype=torch.float32, device=base_logits.device)
    if not arm_logits:
        return out.copy_(base_logits)
    scratch: list[torch.Tensor] = []
    for k, arm in enumerate(arm_logits):
        for rows, arm_rows in _float32_row_chunks(arm, scratch):
            w = weights[rows, k : k + 1]
            if k > 0:
                out[rows].addcmul_(arm_rows, w)
            elif base_logits.dtype == torch.float32:  # one op reads base and ARM 0
                torch.addcmul(base_logits[rows], arm_rows, w, out=out[rows])
            else:
                out[rows].copy_(base_logits[rows]).addcmul_(arm_rows, w)
    # NaN and +inf can only come from -inf under a zero or negative weight.
    row_max = out.amax(dim=-1)
    bad_rows = (row_max.isnan() | row_max.isposinf()).nonzero().flatten()
    if bad_rows.numel():
        out[bad_rows] = _weighted_sum_masked(
            base_logits[bad_rows], [arm[bad_rows] for arm in arm_logits], weights[bad_rows]
        )
    return out


def _float32_row_chunks(arm: torch.Tensor, scratch: list[torch.Tensor]):
    """(rows, float32 view of arm[rows]) pieces covering the ARM.

    float32: one piece, the ARM itself. Otherwise row chunks converted into one
    reused chunk-sized buffer (``scratch`` keeps it across ARMs): on a CPU a
    mixed-dtype op would first copy the whole ARM into a fresh float32 tensor,
    and a fresh 100 MB tensor costs a write pass in page faults.
    """
    if arm.dtype == torch.float32:
        yield slice(None), arm
        return
    num_rows, vocab = arm.shape
    chunk = max(1, LSE_SMALL_INPUT // max(vocab, 1))
    if not scratch:
        scratch.append(torch.empty((min(chunk, num_rows), vocab), device=arm.device))
    for start in range(0, num_rows, chunk):
        rows = slice(start, min(start + chunk, num_rows))
        piece = scratch[0][: rows.stop - start]
        yield rows, piece.copy_(arm[rows])


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
    lse = torch.stack([row_logsumexp(x) for x in (base_logits, *arm_logits)], dim=1)
    return log_normalizer(lse, weights)


def row_logsumexp(x: torch.Tensor) -> torch.Tensor:
    """float32 [B] log-sum-exp of each row, -inf safe (an all -inf row gives -inf).

    torch.logsumexp allocates three [B, V] temporaries; for large inputs one
    chunk-sized buffer is reused here instead, while the chunk is still in cache.
    """
    if x.numel() <= LSE_SMALL_INPUT:
        return torch.logsumexp(x.float(), dim=-1)
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
