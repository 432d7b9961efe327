"""The CUDA path of the GenARM fusion: one Triton program per row.

The fusion is memory-bound: it must read (K + 1) · V logits and write V
outputs per row. Pass 1 streams every input once, keeping an online
log-sum-exp per input in registers (per-lane max and sum, merged at the end);
pass 2 streams them again and writes the fused log-probabilities. Up to
``MAX_ARMS`` ARMs are fused per launch; more (rare) take further launches that
add their terms to the output (HAS_BASE=False), costing one more read and
write of it each.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import triton
import triton.language as tl

MAX_ARMS = 4
BLOCK = 2048


@triton.jit
def _online_lse_update(m, s, x):
    """Merge a block into per-lane running (max, sum of exp(x - max)); -inf safe."""
    m_new = tl.maximum(m, x)
    finite = m_new != float("-inf")
    scale = tl.where(finite, tl.exp(m - m_new), 0.0)
    s = s * scale + tl.where(finite, tl.exp(x - m_new), 0.0)
    return m_new, s


@triton.jit
def _finish_lse(m, s):
    m_row = tl.max(m, axis=0)
    scaled = tl.where(m != float("-inf"), s * tl.exp(m - m_row), 0.0)
    return m_row + tl.log(tl.sum(scaled, axis=0))


@triton.jit
def _weighted_term(x, lse, w):
    """w · (x - lse), 0 for a zero weight, -inf where the ARM rules a token out."""
    term = tl.where(x == float("-inf"), float("-inf"), w * (x - lse))
    return tl.where(w == 0.0, 0.0, term)


@triton.jit
def _genarm_fuse_kernel(
    out_ptr,
    base_ptr,
    arm0_ptr,
    arm1_ptr,
    arm2_ptr,
    arm3_ptr,
    w_ptr,
    V,
    stride_out,
    stride_base,
    stride_arm0,
    stride_arm1,
    stride_arm2,
    stride_arm3,
    stride_w,
    K: tl.constexpr,
    HAS_BASE: tl.constexpr,
    BLOCK: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    lanes = tl.arange(0, BLOCK)
    neg_inf = tl.full([BLOCK], float("-inf"), tl.float32)
    zero = tl.zeros([BLOCK], tl.float32)
    m_b, s_b = neg_inf, zero
    m_0, s_0 = neg_inf, zero
    m_1, s_1 = neg_inf, zero
    m_2, s_2 = neg_inf, zero
    m_3, s_3 = neg_inf, zero

    # Pass 1: one online log-sum-exp per input.
    for start in range(0, V, BLOCK):
        cols = start + lanes
        mask = cols < V
        if HAS_BASE:
            x = tl.load(base_ptr + row * stride_base + cols, mask=mask, other=float("-inf"))
            m_b, s_b = _online_lse_update(m_b, s_b, x.to(tl.float32))
        if K > 0:
            x = tl.load(arm0_ptr + row * stride_arm0 + cols, mask=mask, other=float("-inf"))
            m_0, s_0 = _online_lse_update(m_0, s_0, x.to(tl.float32))
        if K > 1:
            x = tl.load(arm1_ptr + row * stride_arm1 + cols, mask=mask, other=float("-inf"))
            m_1, s_1 = _online_lse_update(m_1, s_1, x.to(tl.float32))
        if K > 2:
            x = tl.load(arm2_ptr + row * stride_arm2 + cols, mask=mask, other=float("-inf"))
            m_2, s_2 = _online_lse_update(m_2, s_2, x.to(tl.float32))
        if K > 3:
            x = tl.load(arm3_ptr + row * stride_arm3 + cols, mask=mask, other=float("-inf"))
            m_3, s_3 = _online_lse_update(m_3, s_3, x.to(tl.float32))

    lse_b = _finish_lse(m_b, s_b)
    lse_0 = _finish_lse(m_0, s_0)
    lse_1 = _finish_lse(m_1, s_1)
    lse_2 = _finish_lse(m_2, s_2)
    lse_3 = _finish_lse(m_3, s_3)
    w_0 = tl.load(w_ptr + row * stride_w + 0) if K > 0 else 0.0
    w_1 = tl.load(w_ptr + row * stride_w + 1) if K > 1 else 0.0
    w_2 = tl.load(w_ptr + row * stride_w + 2) if K > 2 else 0.0
    w_3 = tl.load(w_ptr + row * stride_w + 3) if K > 3 else 0.0

    # Pass 2: write the fused log-probabilities.
    for start in range(0, V, BLOCK):
        cols = start + lanes
        mask = cols < V
        if HAS_BASE:
            x = tl.load(base_ptr + row * stride_base + cols, mask=mask, other=0.0)
            acc = x.to(tl.float32) - lse_b
        else:  # a later launch for ARMs beyond MAX_ARMS: add to what the first wrote
            acc = tl.load(out_ptr + row * stride_out + cols, mask=mask, other=0.0)
        if K > 0:
            x = tl.load(arm0_ptr + row * stride_arm0 + cols, mask=mask, other=0.0)
            acc += _weighted_term(x.to(tl.float32), lse_0, w_0)
        if K > 1:
            x = tl.load(arm1_ptr + row * stride_arm1 + cols, mask=mask, other=0.0)
            acc += _weighted_term(x.to(tl.float32), lse_1, w_1)
        if K > 2:
            x = tl.load(arm2_ptr + row * stride_arm2 + cols, mask=mask, other=0.0)
            acc += _weighted_term(x.to(tl.float32), lse_2, w_2)
        if K > 3:
            x = tl.load(arm3_ptr + row * stride_arm3 + cols, mask=mask, other=0.0)
            acc += _weighted_term(x.to(tl.float32), lse_3, w_3)
        tl.store(out_ptr + row * stride_out + cols, acc, mask=mask)


def fuse_triton(
    base_logits: torch.Tensor,
    arm_logits: Sequence[torch.Tensor],
    weights: torch.Tensor,
    out: torch.Tensor | None = None,
    block: int = BLOCK,
) -> torch.Tensor:
    """float32 [B, V] fusion: one launch per MAX_ARMS ARMs (one launch for K <= 4).

    ``out``, if given, is a float32 [B, V] tensor (unit stride along V) written
    in full and returned.
    """
    num_rows, vocab = base_logits.shape
    if out is None:
        out = torch.empty((num_rows, vocab), dtype=torch.float32, device=base_logits.device)
    if out.dtype != torch.float32 or out.shape != base_logits.shape or out.stride(-1) != 1:
        raise ValueError("out must be a float32 [B, V] tensor with unit stride along V")
    if num_rows == 0:
        return out
    # The kernel walks each row with unit stride; rows themselves may be strided.
    base_logits = base_logits if base_logits.stride(-1) == 1 else base_logits.contiguous()
    arms = [a if a.stride(-1) == 1 else a.contiguous() for a in arm_logits]
    weights = weights.to(device=base_logits.device, dtype=torch.float32).contiguous()
    first = True
    for start in range(0, max(len(arms), 1), MAX_ARMS):
        group = arms[start : start + MAX_ARMS]
        num_arms = len(group)
        # Unused pointer slots get a valid tensor that the kernel never reads.
        slots = group + [out] * (MAX_ARMS - num_arms)
        w = weights[:, start:] if num_arms else out
        _genarm_fuse_kernel[(num_rows,)](
            out,
            base_logits,
            *slots,
            w,
            vocab,
            out.stride(0),
            base_logits.stride(0),
            *(a.stride(0) for a in slots),
            w.stride(0),
            K=num_arms,
            HAS_BASE=first,
            BLOCK=block,
            num_warps=8,
        )
        first = False
    return out
