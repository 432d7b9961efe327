"""The fusion's fast paths against the float64 reference, on fresh random inputs.

The Triton kernel runs here through Triton's interpreter (TRITON_INTERPRET=1,
on CPU tensors), which must be set before triton is imported: those cases run
in a subprocess so that the rest of the suite (vLLM imports triton) is
unaffected.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from genarm.arm_kernels import can_fuse_in_place, fuse, fuse_torch

from support import assert_close_to_reference

DTYPES = [torch.float32, torch.bfloat16, torch.float16]
BIG = 1e4  # exp(1e4) overflows float32 (and float64): needs a max-subtracted log-sum-exp


def fresh_seed() -> int:
    return int(torch.randint(0, 2**31 - 1, ()))


def make_inputs(
    num_rows: int, vocab: int, num_arms: int, dtype: torch.dtype, seed: int, device="cpu"
):
    """Random logits with the awkward cases: ±1e4, -inf, zero and negative weights.

    Row 0: +1e4 and -inf in the base, -inf in every ARM, the first under a
    negative weight. Row 1: all weights zero, -inf in ARM 0. Row 2: ARM 0 has
    -inf under a zero weight while the other ARMs count. Row 3: every logit
    near +1e4. Last row: -1e4 in the base, +1e4 in every ARM.
    """
    gen = torch.Generator().manual_seed(seed)
    base = torch.randn(num_rows, vocab, generator=gen) * 4
    arms = [torch.randn(num_rows, vocab, generator=gen) * 4 for _ in range(num_arms)]
    weights = torch.randn(num_rows, num_arms, generator=gen) * 2
    base[0, 1], base[0, 3] = BIG, -torch.inf
    for k, arm in enumerate(arms):
        arm[0, 10 + k] = -torch.inf
        arm[-1, 20 + k] = BIG
    base[-1, 2] = -BIG
    if num_arms:
        weights[0, 0] = -abs(float(weights[0, 0])) - 0.5
    if num_rows > 1 and num_arms:
        weights[1] = 0.0
        arms[0][1, 30] = -torch.inf
    if num_rows > 2 and num_arms:
        weights[2, 0] = 0.0
        arms[0][2, 40:45] = -torch.inf
    if num_rows > 3:
        base[3] += BIG
    # Drawn on the CPU (one generator, the same values on every device), then moved.
    return (
        base.to(device, dtype),
        [a.to(device, dtype) for a in arms],
        weights.to(device),
    )


def exact_masks(num_rows: int, seed: int, device="cpu") -> list[bool | torch.Tensor]:
    """Every row exact, none, and a random mix (the awkward rows 0-3 in both kinds)."""
    mixed = torch.rand(num_rows, generator=torch.Generator().manual_seed(seed)) < 0.5
    return [True, False, mixed.to(device)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("num_arms", [1, 2, 3, 4])
@pytest.mark.parametrize(("num_rows", "vocab"), [(1, 1000), (37, 32001)])
def test_torch_path_matches_reference(dtype, num_arms, num_rows, vocab):
    seed = fresh_seed()
    base, arms, weights = make_inputs(num_rows, vocab, num_arms, dtype, seed)
    poisoned = torch.full((num_rows, vocab), torch.nan)  # every element must be written
    out = fuse_torch(base, arms, weights, out=poisoned)
    assert out.data_ptr() == poisoned.data_ptr()
    assert_close_to_reference(out, base, arms, weights, f"(seed {seed})")
    assert torch.equal(fuse_torch(base, arms, weights), out)  # allocating output: same values


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("num_arms", [0, 1, 2, 4])
def test_torch_path_shifted_and_mixed_rows(dtype, num_arms):
    """exact=False rows equal the reference up to a per-row constant; exact rows exactly."""
    seed = fresh_seed()
    base, arms, weights = make_inputs(37, 32001, num_arms, dtype, seed)
    for exact in exact_masks(37, seed):
        out = fuse_torch(base, arms, weights, out=torch.full((37, 32001), torch.nan), exact=exact)
        assert_close_to_reference(out, base, arms, weights, f"(seed {seed}, {exact})", exact)


@pytest.mark.parametrize("dtype", DTYPES)
def test_chunked_logsumexp_of_large_inputs(monkeypatch, dtype):
    """Large inputs take the chunk loop (here forced on a small one, 4-row chunks)."""
    from genarm.arm_kernels import torch_fuse

    monkeypatch.setattr(torch_fuse, "LSE_SMALL_INPUT", 0)
    monkeypatch.setattr(torch_fuse, "LSE_ROW_CHUNK", 4)
    x = torch.randn(10, 999) * 4
    x[3] = -torch.inf  # a row with nothing left: -inf, not NaN
    x[5, :10] = -torch.inf
    x[7, 0] = BIG
    x = x.to(dtype)
    expected = torch.logsumexp(x.double(), dim=-1)
    torch.testing.assert_close(torch_fuse.row_logsumexp(x).double(), expected)
    seed = fresh_seed()
    base, arms, weights = make_inputs(9, 2001, 2, dtype, seed)
    for exact in exact_masks(9, seed):
        out = fuse_torch(base, arms, weights, exact=exact)
        assert_close_to_reference(out, base, arms, weights, f"(seed {seed}, {exact})", exact)


def test_shifted_rows_are_the_weighted_sum():
    """Shifted rows are base + Σ w·arm: an unguided row (all weights 0) is the base itself."""
    base, arms, weights = make_inputs(6, 500, 2, torch.float32, fresh_seed())
    out = fuse_torch(base, arms, weights, exact=False)
    assert torch.equal(out[1], base[1])  # row 1: every weight zero, -inf in ARM 0
    expected = base + weights[:, :1] * arms[0] + weights[:, 1:] * arms[1]
    torch.testing.assert_close(out[4], expected[4])


def test_exact_mask_must_match_rows():
    base, arms, weights = make_inputs(4, 100, 1, torch.float32, fresh_seed())
    with pytest.raises(ValueError, match="exact"):
        fuse_torch(base, arms, weights, exact=torch.ones(3, dtype=torch.bool))


def test_torch_path_on_strided_rows():
    """vLLM hands over row slices of wider buffers; rows need not be contiguous."""
    wide = torch.randn(6, 2100) * 4
    base, arm = wide[:, :1000], wide[:, 1100:2100]
    arm[0, 7] = -torch.inf
    weights = torch.tensor([[0.0], [1.0], [-2.0], [0.5], [3.0], [-0.25]])
    assert_close_to_reference(fuse_torch(base, [arm], weights), base, [arm], weights)


@pytest.mark.parametrize("num_rows", [1, 4])
def test_no_arms_is_log_softmax_of_base(num_rows):
    base = torch.randn(num_rows, 100).bfloat16()
    weights = torch.zeros(num_rows, 0)
    out = fuse(base, [], weights)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, torch.log_softmax(base.float(), dim=-1))
    assert_close_to_reference(out, base, [], weights)


def test_fuse_uses_torch_path_on_cpu():
    base, arms, weights = make_inputs(5, 300, 2, torch.float32, seed=fresh_seed())
    assert torch.equal(fuse(base, arms, weights), fuse_torch(base, arms, weights))
    assert not can_fuse_in_place(base)  # the torch path needs the base after writing


def run_triton_cases(device: str = "cpu") -> int:
    """The Triton kernel vs the reference: on CPU tensors with TRITON_INTERPRET=1
    (the subprocess below), or on a GPU (the CUDA test)."""
    from genarm.arm_kernels import fuse_triton
    from genarm.arm_kernels.triton_fuse import fuse_triton as kernel

    cases = 0
    # V not a multiple of the block; one chunk per row, and rows split in chunks
    # (the last one partial); chunk None: the size the kernel picks.
    shapes = [(1, 1000, 256, 512), (5, 3001, 1024, None), (3, 2500, 256, 1024)]
    for dtype in DTYPES:
        for num_arms in (0, 1, 2, 3, 4, 6):  # 6: a second launch adds ARMs 5 and 6
            for num_rows, vocab, block, chunk in shapes:
                seed = fresh_seed()
                base, arms, weights = make_inputs(num_rows, vocab, num_arms, dtype, seed, device)
                for exact in exact_masks(num_rows, seed, device):
                    poisoned = torch.full((num_rows, vocab), torch.nan, device=device)
                    out = kernel(
                        base, arms, weights, out=poisoned, exact=exact, block=block, chunk=chunk
                    )
                    assert out.data_ptr() == poisoned.data_ptr()
                    context = f"({dtype}, K={num_arms}, B={num_rows}, V={vocab}, {exact}, "
                    context += f"seed {seed})"
                    assert_close_to_reference(out, base, arms, weights, context, exact)
                    cases += 1
    # In place: the output may be the (float32) base logits themselves.
    seed = fresh_seed()
    base, arms, weights = make_inputs(4, 3001, 2, torch.float32, seed, device)
    for exact in exact_masks(4, seed, device):
        inplace = base.clone()
        out = kernel(inplace, arms, weights, out=inplace, exact=exact, block=256, chunk=1024)
        assert_close_to_reference(out, base, arms, weights, f"in place {exact} {seed}", exact)
        cases += 1
    # The default block size on a vocabulary of a real size, V % 2048 != 0.
    seed = fresh_seed()
    base, arms, weights = make_inputs(4, 32001, 2, torch.bfloat16, seed, device)
    assert_close_to_reference(fuse_triton(base, arms, weights), base, arms, weights, seed)
    # Strided (non-contiguous) rows, as vLLM's logits slices can be.
    wide = torch.randn(4, 2000, device=device) * 4
    base, arm = wide[:, :999], wide[:, 1000:1999]
    arm[2, 5] = -torch.inf
    weights = torch.tensor([[1.0], [0.0], [-2.0], [0.5]], device=device)
    assert_close_to_reference(fuse_triton(base, [arm], weights), base, [arm], weights)
    return cases + 2


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize(
    ("num_rows", "vocab", "num_arms", "fp32_base"),
    [(1, 128256, 2, False), (64, 128256, 2, True), (256, 152064, 4, True)],
)
def test_triton_kernel_matches_reference_on_cuda(num_rows, vocab, num_arms, fp32_base):
    """The interpreter's cases compiled for the GPU, then real sizes with the
    default launch (the chunk count the kernel picks from the SM count), fp32 base
    logits beside bf16 ARMs as vLLM hands them, exact, shifted and mixed rows."""
    if num_rows == 1:
        assert run_triton_cases("cuda") == 167
    seed = fresh_seed()
    base, arms, weights = make_inputs(num_rows, vocab, num_arms, torch.bfloat16, seed, "cuda")
    if fp32_base:
        base = base.float()
    for exact in exact_masks(num_rows, seed, "cuda"):
        context = f"(B={num_rows}, V={vocab}, K={num_arms}, {exact}, seed {seed})"
        out = fuse(base, arms, weights, exact=exact)
        assert_close_to_reference(out, base, arms, weights, context, exact)


def test_triton_kernel_matches_reference_in_interpreter():
    pytest.importorskip("triton")
    tests_dir = os.path.dirname(os.path.abspath(__file__))
    script = (
        f"import sys; sys.path.insert(0, {tests_dir!r}); import test_arm_kernels as t; "
        "print('cases', t.run_triton_cases())"
    )
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    result = subprocess.run(
        [sys.executable, "-W", "ignore::RuntimeWarning", "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "cases 167" in result.stdout, result.stdout[-2000:]
