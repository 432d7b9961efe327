"""The CUDA path of the GenARM fusion: the vocabulary split across programs.

log_softmax(x) = x - lse(x), so the fusion is ``base + Σ_k w_k·arm_k - c``
with one constant per row, ``c = lse(base) + Σ_k w_k·lse(arm_k)``. Two kernels:

- ``_partial_lse_kernel`` (exact rows only): each program takes one chunk of
  one row and writes the chunk's log-sum-exp of every input; a few tiny torch
  ops merge the chunks into ``c``.
- ``_fuse_kernel``: each program streams one chunk of one row once, reading
  every input and writing ``base + Σ_k w_k·arm_k - c`` (``c`` = 0 for rows that
  may be shifted).

A row that may be shifted thus costs one read of its inputs and one write,
the memory-bound minimum; an exact row one more read of its inputs. Splitting
each row into chunks keeps every SM busy at small batches, where one program
per row left most of the GPU idle (issue 16: 97 µs for one row on an H100).
Up to ``MAX_ARMS`` ARMs are fused per launch; more (rare) take further
launches that add their terms to the output (HAS_BASE=False).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

import torch
import triton
import triton.language as tl

from genarm.arm_kernels.normalizer import exact_row_indices, log_normalizer

MAX_ARMS = 4
BLOCK = 1024
NUM_WARPS = 4
# Programs to aim for per launch: enough waves for every SM of a large GPU.
PROGRAMS_PER_SM = 4


@triton.jit
def _weighted_term(x, w):
    """w · x, 0 for a zero weight, -inf where the ARM rules a token out."""
    term = tl.where(x == float("-inf"), float("-inf"), w * x)
    return tl.where(w == 0.0, 0.0, term)


@triton.jit
def _fuse_kernel(
    out_ptr,
    base_ptr,
    arm0_ptr,
    arm1_ptr,
    arm2_ptr,
    arm3_ptr,
    w_ptr,
    shift_ptr,
    V,
    chunk,
    stride_out,
    stride_base,
    stride_arm0,
    stride_arm1,
    stride_arm2,
    stride_arm3,
    stride_w,
    K: tl.constexpr,
    HAS_BASE: tl.constexpr,
    HAS_SHIFT: tl.constexpr,
    BLOCK: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    begin = tl.program_id(1) * chunk
    end = tl.minimum(begin + chunk, V)
    lanes = tl.arange(0, BLOCK)
    w_0 = tl.load(w_ptr + row * stride_w + 0) if K > 0 else 0.0
    w_1 = tl.load(w_ptr + row * stride_w + 1) if K > 1 else 0.0
    w_2 = tl.load(w_ptr + row * stride_w + 2) if K > 2 else 0.0
    w_3 = tl.load(w_ptr + row * stride_w + 3) if K > 3 else 0.0
    shift = tl.load(shift_ptr + row) if HAS_SHIFT else 0.0
    for start in range(begin, end, BLOCK):
        cols = start + lanes
        mask = cols < end
        if HAS_BASE:
            acc = tl.load(base_ptr + row * stride_base + cols, mask=mask).to(tl.float32)
        else:  # a later launch for ARMs beyond MAX_ARMS: add to what the first wrote
            acc = tl.load(out_ptr + row * stride_out + cols, mask=mask)
        if K > 0:
            x = tl.load(arm0_ptr + row * stride_arm0 + cols, mask=mask)
            acc += _weighted_term(x.to(tl.float32), w_0)
        if K > 1:
            x = tl.load(arm1_ptr + row * stride_arm1 + cols, mask=mask)
            acc += _weighted_term(x.to(tl.float32), w_1)
        if K > 2:
            x = tl.load(arm2_ptr + row * stride_arm2 + cols, mask=mask)
            acc += _weighted_term(x.to(tl.float32), w_2)
        if K > 3:
            x = tl.load(arm3_ptr + row * stride_arm3 + cols, mask=mask)
            acc += _weighted_term(x.to(tl.float32), w_3)
        if HAS_SHIFT:
            acc = acc - shift
        tl.store(out_ptr + row * stride_out + cols, acc, mask=mask)


@triton.jit
def _chunk_lse(ptr, stride, row, begin, end, BLOCK: tl.constexpr):
    """log-sum-exp of x[row, begin:end]: per-lane online max and sum, merged at the end."""
    lanes = tl.arange(0, BLOCK)
    m = tl.full([BLOCK], float("-inf"), tl.float32)
    s = tl.zeros([BLOCK], tl.float32)
    for start in range(begin, end, BLOCK):
        cols = start + lanes
        x = tl.load(ptr + row * stride + cols, mask=cols < end, other=float("-inf"))
        m_new = tl.maximum(m, x.to(tl.float32))
        finite = m_new != float("-inf")
        s = s * tl.where(finite, tl.exp(m - m_new), 0.0) + tl.where(
            finite, tl.exp(x.to(tl.float32) - m_new), 0.0
        )
        m = m_new
    m_all = tl.max(m, axis=0)
    scaled = tl.where(m != float("-inf"), s * tl.exp(m - m_all), 0.0)
    return m_all + tl.log(tl.sum(scaled, axis=0))


@triton.jit
def _partial_lse_kernel(
    lse_ptr,
    rows_ptr,
    base_ptr,
    arm0_ptr,
    arm1_ptr,
    arm2_ptr,
    arm3_ptr,
    V,
    chunk,
    stride_base,
    stride_arm0,
    stride_arm1,
    stride_arm2,
    stride_arm3,
    K: tl.constexpr,
    HAS_BASE: tl.constexpr,
    SLOTS: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """lse[i, chunk, slot] for row rows[i]: slot 0 the base (if HAS_BASE), then the ARMs."""
    i = tl.program_id(0).to(tl.int64)
    part = tl.program_id(1)
    num_parts = tl.num_programs(1)
    row = tl.load(rows_ptr + i).to(tl.int64)
    begin = part * chunk
    end = tl.minimum(begin + chunk, V)
    out = lse_ptr + (i * num_parts + part) * SLOTS
    if HAS_BASE:
        tl.store(out, _chunk_lse(base_ptr, stride_base, row, begin, end, BLOCK))
        out += 1
    if K > 0:
        tl.store(out + 0, _chunk_lse(arm0_ptr, stride_arm0, row, begin, end, BLOCK))
    if K > 1:
        tl.store(out + 1, _chunk_lse(arm1_ptr, stride_arm1, row, begin, end, BLOCK))
    if K > 2:
        tl.store(out + 2, _chunk_lse(arm2_ptr, stride_arm2, row, begin, end, BLOCK))
    if K > 3:
        tl.store(out + 3, _chunk_lse(arm3_ptr, stride_arm3, row, begin, end, BLOCK))


@cache
def _num_sms(device_index: int) -> int:
    if not torch.cuda.is_available():  # the interpreter (tests) on CPU tensors
        return 2
    return torch.cuda.get_device_properties(device_index).multi_processor_count


def chunk_size(num_rows: int, vocab: int, device: torch.device, block: int = BLOCK) -> int:
    """Columns per program: whole blocks, enough programs to fill the GPU."""
    wanted = _num_sms(device.index or 0) * PROGRAMS_PER_SM
    blocks = triton.cdiv(vocab, block)
    parts = max(1, min(blocks, triton.cdiv(wanted, max(num_rows, 1))))
    return triton.cdiv(blocks, parts) * block


def _arm_groups(arms: list[torch.Tensor], out: torch.Tensor):
    """(first arm index, K, the MAX_ARMS pointer slots) per launch; unused slots get out."""
    for start in range(0, max(len(arms), 1), MAX_ARMS):
        group = arms[start : start + MAX_ARMS]
        yield start, len(group), group + [out] * (MAX_ARMS - len(group))


def _log_normalizer(
    base: torch.Tensor,
    arms: list[torch.Tensor],
    weights: torch.Tensor,
    rows: torch.Tensor,
    chunk: int,
    block: int,
    out: torch.Tensor,
) -> torch.Tensor:
    """c = lse(base) + Σ_k w_k·lse(arm_k) for ``rows``, as a float32 [B] (0 elsewhere)."""
    vocab = base.shape[1]
    parts = triton.cdiv(vocab, chunk)
    lse = []
    for start, num_arms, slots in _arm_groups(arms, out):
        first = start == 0
        partial = torch.empty(
            (rows.numel(), parts, num_arms + first), dtype=torch.float32, device=base.device
        )
        _partial_lse_kernel[(rows.numel(), parts)](
            partial,
            rows,
            base,
            *slots,
            vocab,
            chunk,
            base.stride(0),
            *(a.stride(0) for a in slots),
            K=num_arms,
            HAS_BASE=first,
            SLOTS=num_arms + first,
            BLOCK=block,
            num_warps=NUM_WARPS,
        )
        lse.append(torch.logsumexp(partial, dim=1))
    row_shift = log_normalizer(torch.cat(lse, dim=1), weights[rows])
    shift = torch.zeros(base.shape[0], dtype=torch.float32, device=base.device)
    return shift.index_copy_(0, rows, row_shift)


def fuse_triton(
    base_logits: torch.Tensor,
    arm_logits: Sequence[torch.Tensor],
    weights: torch.Tensor,
    out: torch.Tensor | None = None,
    exact: bool | torch.Tensor = True,
    block: int = BLOCK,
    chunk: int | None = None,
) -> torch.Tensor:
    """float32 [B, V] fusion; see ``genarm.arm_kernels.fuse`` for ``exact``.

    ``out``, if given, is a float32 [B, V] tensor (unit stride along V) written
    in full and returned; it may be ``base_logits`` itself (float32): each
    element is read before it is written, by the same program.
    ``chunk``: columns per program (default: enough programs to fill the GPU).
    """
    num_rows, vocab = base_logits.shape
    if out is None:
        out = torch.empty((num_rows, vocab), dtype=torch.float32, device=base_logits.device)
    if out.dtype != torch.float32 or out.shape != base_logits.shape or out.stride(-1) != 1:
        raise ValueError("out must be a float32 [B, V] tensor with unit stride along V")
    if num_rows == 0:
        return out
    # The kernels walk each row with unit stride; rows themselves may be strided.
    base = base_logits if base_logits.stride(-1) == 1 else base_logits.contiguous()
    arms = [a if a.stride(-1) == 1 else a.contiguous() for a in arm_logits]
    weights = weights.to(device=base.device, dtype=torch.float32).contiguous()
    chunk = chunk or chunk_size(num_rows, vocab, base.device, block)
    rows = exact_row_indices(exact, num_rows)
    rows = torch.arange(num_rows, device=base.device) if rows is None else rows.to(base.device)
    shift = None
    if rows.numel():
        # Before the fusion: ``out`` may be ``base`` itself.
        shift = _log_normalizer(base, arms, weights, rows, chunk, block, out)
    grid = (num_rows, triton.cdiv(vocab, chunk))
    for start, num_arms, slots in _arm_groups(arms, out):
        first = start == 0
        w = weights[:, start:] if num_arms else out
        _fuse_kernel[grid](
            out,
            base,
            *slots,
            w,
            shift if shift is not None else out,
            vocab,
            chunk,
            out.stride(0),
            base.stride(0),
            *(a.stride(0) for a in slots),
            w.stride(0),
            K=num_arms,
            HAS_BASE=first,
            HAS_SHIFT=first and shift is not None,
            BLOCK=block,
            num_warps=NUM_WARPS,
        )
    return out
