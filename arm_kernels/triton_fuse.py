"""The CUDA path of the GenARM fusion: the vocabulary split across programs.

log_softmax(x) = x - lse(x), so the fusion is ``base + Σ_k w_k·arm_k - c``
with one constant per row, ``c = lse(base) + Σ_k w_k·lse(arm_k)``. Two kernels:

- ``_partial_lse_kernel`` (exact rows only): each program takes one chunk of
  one row and writes the chunk's log-sum-exp of every input.
- ``_fuse_kernel``: each program streams one chunk of one row once, reading
  every input and writing ``base + Σ_k w_k·arm_k - c`` (``c`` = 0 for rows that
  may be shifted); for an exact row it first merges the row's chunk
  log-sum-exps into ``c`` itself.

Nothing but these launches runs on the device: on an H200 under a decode-sized
batch, each extra torch op between them cost more than the memory traffic
(the first version merged ``c`` with ~10 small torch ops and an
exact row took ~550 µs at any size).

A row that may be shifted thus costs one read of its inputs and one write,
the memory-bound minimum; an exact row one more read of its inputs. Splitting
each row into chunks keeps every SM busy at small batches, where one program
per row left most of the GPU idle (97 µs for one row on an H100).
Up to ``MAX_ARMS`` ARMs are fused per launch; more (rare) take further
launches that add their terms to the output (HAS_BASE=False).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

import torch
import triton
import triton.language as tl

MAX_ARMS = 4
BLOCK = 1024
NUM_WARPS = 8
# Programs to aim for per launch: enough waves for every SM of a large GPU.
PROGRAMS_PER_SM = 16
PARTS_BLOCK = 128  # chunk log-sum-exps merged per step (a row has at most ~150 chunks)


@triton.jit
def _weighted_term(x, w):
    """w · x, 0 for a zero weight, -inf where the ARM rules a token out."""
    term = tl.where(x == float("-inf"), float("-inf"), w * x)
    return tl.where(w == 0.0, 0.0, term)


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
def _is_exact(exact_ptr, row, EXACT: tl.constexpr):
    """EXACT 0: no row, 1: every row, 2: the rows a [B] mask on the device marks."""
    if EXACT == 2:
        return tl.load(exact_ptr + row) != 0
    else:
        return EXACT == 1


@triton.jit
def _weighted_lse(lse_ptr, slot, num_rows, parts, row, w, PARTS_BLOCK: tl.constexpr):
    """w · lse(x[row]) from the chunks' log-sum-exps (slot-major [SLOTS, B, parts])."""
    lse = _chunk_lse(lse_ptr + slot * num_rows * parts, parts, row, 0, parts, PARTS_BLOCK)
    return tl.where(w == 0.0, 0.0, w * lse)


@triton.jit
def _log_normalizer(
    lse_ptr,
    num_rows,
    parts,
    row,
    w_0,
    w_1,
    w_2,
    w_3,
    K: tl.constexpr,
    HAS_BASE: tl.constexpr,
    PARTS_BLOCK: tl.constexpr,
):
    """This launch's share of c: lse(base) (first launch) + Σ_k w_k·lse(arm_k).

    Merged from the chunks' log-sum-exps by every program of the row (a few
    hundred floats, from L2): no torch ops and no launch between the kernels.
    """
    c = 0.0
    if HAS_BASE:
        c += _weighted_lse(lse_ptr, 0, num_rows, parts, row, 1.0, PARTS_BLOCK)
    first: tl.constexpr = 1 if HAS_BASE else 0
    if K > 0:
        c += _weighted_lse(lse_ptr, first + 0, num_rows, parts, row, w_0, PARTS_BLOCK)
    if K > 1:
        c += _weighted_lse(lse_ptr, first + 1, num_rows, parts, row, w_1, PARTS_BLOCK)
    if K > 2:
        c += _weighted_lse(lse_ptr, first + 2, num_rows, parts, row, w_2, PARTS_BLOCK)
    if K > 3:
        c += _weighted_lse(lse_ptr, first + 3, num_rows, parts, row, w_3, PARTS_BLOCK)
    # A row whose base or weighted ARM rules out every token is -inf throughout
    # already; subtracting a non-finite constant would only turn it into NaN.
    return tl.where((c == c) & (tl.abs(c) != float("inf")), c, 0.0)


@triton.jit
def _fuse_kernel(
    out_ptr,
    base_ptr,
    arm0_ptr,
    arm1_ptr,
    arm2_ptr,
    arm3_ptr,
    w_ptr,
    exact_ptr,
    lse_ptr,
    V,
    chunk,
    parts,
    num_rows,
    stride_out,
    stride_base,
    stride_arm0,
    stride_arm1,
    stride_arm2,
    stride_arm3,
    stride_w,
    K: tl.constexpr,
    HAS_BASE: tl.constexpr,
    EXACT: tl.constexpr,
    BLOCK: tl.constexpr,
    PARTS_BLOCK: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    begin = tl.program_id(1) * chunk
    end = tl.minimum(begin + chunk, V)
    lanes = tl.arange(0, BLOCK)
    w_0 = tl.load(w_ptr + row * stride_w + 0) if K > 0 else 0.0
    w_1 = tl.load(w_ptr + row * stride_w + 1) if K > 1 else 0.0
    w_2 = tl.load(w_ptr + row * stride_w + 2) if K > 2 else 0.0
    w_3 = tl.load(w_ptr + row * stride_w + 3) if K > 3 else 0.0
    shift = 0.0
    if EXACT != 0:
        if _is_exact(exact_ptr, row, EXACT):
            shift = _log_normalizer(
                lse_ptr, num_rows, parts, row, w_0, w_1, w_2, w_3, K, HAS_BASE, PARTS_BLOCK
            )
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
        if EXACT != 0:
            acc = acc - shift
        tl.store(out_ptr + row * stride_out + cols, acc, mask=mask)


@triton.jit
def _partial_lse_kernel(
    lse_ptr,
    exact_ptr,
    base_ptr,
    arm0_ptr,
    arm1_ptr,
    arm2_ptr,
    arm3_ptr,
    V,
    chunk,
    num_rows,
    stride_base,
    stride_arm0,
    stride_arm1,
    stride_arm2,
    stride_arm3,
    K: tl.constexpr,
    HAS_BASE: tl.constexpr,
    EXACT: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """lse[slot, row, chunk]: slot 0 the base (if HAS_BASE), then the ARMs; exact rows only."""
    row = tl.program_id(0).to(tl.int64)
    part = tl.program_id(1)
    parts = tl.num_programs(1)
    if _is_exact(exact_ptr, row, EXACT):
        begin = part * chunk
        end = tl.minimum(begin + chunk, V)
        out = lse_ptr + row * parts + part
        step = num_rows * parts
        if HAS_BASE:
            tl.store(out, _chunk_lse(base_ptr, stride_base, row, begin, end, BLOCK))
            out += step
        if K > 0:
            tl.store(out, _chunk_lse(arm0_ptr, stride_arm0, row, begin, end, BLOCK))
        if K > 1:
            tl.store(out + step, _chunk_lse(arm1_ptr, stride_arm1, row, begin, end, BLOCK))
        if K > 2:
            tl.store(out + 2 * step, _chunk_lse(arm2_ptr, stride_arm2, row, begin, end, BLOCK))
        if K > 3:
            tl.store(out + 3 * step, _chunk_lse(arm3_ptr, stride_arm3, row, begin, end, BLOCK))


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


def _exact_mode(exact: bool | torch.Tensor, num_rows: int, device: torch.device):
    """(EXACT, the device mask or None): 0 no row, 1 every row, 2 the mask's rows.

    A host mask (what the logits processors have) that is all one way costs
    nothing on the device; a mixed one is copied once. A device mask is used
    as it is (no sync to look at it).
    """
    if isinstance(exact, bool):
        return int(exact), None
    if exact.shape != (num_rows,):
        raise ValueError(f"exact must be a bool or a [{num_rows}] tensor, got {exact.shape}")
    if exact.device.type == "cpu":
        if not exact.any():
            return 0, None
        if exact.all():
            return 1, None
    return 2, exact.to(device=device, dtype=torch.bool, non_blocking=True)


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
    One launch per MAX_ARMS ARMs, two where rows are exact: nothing else runs
    on the device, since at small batches every launch costs more than the
    memory traffic.
    """
    num_rows, vocab = base_logits.shape
    if out is None:
        out = torch.empty((num_rows, vocab), dtype=torch.float32, device=base_logits.device)
    if out.dtype != torch.float32 or out.shape != base_logits.shape or out.stride(-1) != 1:
        raise ValueError("out must be a float32 [B, V] tensor with unit stride along V")
    if num_rows == 0:
        return out
    base = base_logits if base_logits.stride(-1) == 1 else base_logits.contiguous()
    arms = [a if a.stride(-1) == 1 else a.contiguous() for a in arm_logits]
    if weights.dtype != torch.float32 or weights.device != base.device:
        weights = weights.to(device=base.device, dtype=torch.float32)
    weights = weights if weights.stride(-1) == 1 else weights.contiguous()
    mode, mask = _exact_mode(exact, num_rows, base.device)
    chunk = chunk or chunk_size(num_rows, vocab, base.device, block)
    parts = triton.cdiv(vocab, chunk)
    grid = (num_rows, parts)
    for start, num_arms, slots in _arm_groups(arms, out):
        first = start == 0
        w = weights[:, start:] if num_arms else out
        lse = out  # unused unless rows are exact
        if mode:
            lse = torch.empty(
                (num_arms + first, num_rows, parts), dtype=torch.float32, device=base.device
            )
            _partial_lse_kernel[grid](
                lse,
                mask if mask is not None else out,
                base,
                *slots,
                vocab,
                chunk,
                num_rows,
                base.stride(0),
                *(a.stride(0) for a in slots),
                K=num_arms,
                HAS_BASE=first,
                EXACT=mode,
                BLOCK=block,
                num_warps=NUM_WARPS,
            )
        _fuse_kernel[grid](
            out,
            base,
            *slots,
            w,
            mask if mask is not None else out,
            lse,
            vocab,
            chunk,
            parts,
            num_rows,
            out.stride(0),
            base.stride(0),
            *(a.stride(0) for a in slots),
            w.stride(0),
            K=num_arms,
            HAS_BASE=first,
            EXACT=mode,
            BLOCK=block,
            PARTS_BLOCK=PARTS_BLOCK,
            num_warps=NUM_WARPS,
        )
    return out
