"""The fusion's fast paths against the float64 reference, on fresh random inputs.

The Triton kernel runs here through Triton's interpreter (TRITON_INTERPRET=1),
which must be set before triton is imported: those cases run in a subprocess
so that the rest of the suite (vLLM imports triton) is unaffected.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from genarm.arm_kernels import fuse, fuse_reference, fuse_torch

DTYPES = [torch.float32, torch.bfloat16, torch.float16]


def make_inputs(num_rows: int, vocab: int, num_arms: int, dtype: torch.dtype, seed: int):
    """Random logits with the awkward cases: ±1e4, -inf, zero and negative weights."""
    gen = torch.Generator().manual_seed(seed)
    base = torch.randn(num_rows, vocab, generator=gen) * 4
    arms = [torch.randn(num_rows, vocab, generator=gen) * 4 for _ in range(num_arms)]
    weights = torch.randn(num_rows, num_arms, generator=gen) * 2
    big = 1e4 if dtype != torch.float16 else 6e4 / 8  # fp16 tops out at 65504
    base[0, 1] = big
    base[-1, 2] = -big
    base[0, 3] = -torch.inf
    for k, arm in enumerate(arms):
        arm[0, 10 + k] = -torch.inf  # with a nonzero weight in row 0
        arm[-1, 20 + k] = big
    if num_rows > 1:
        weights[1] = 0.0  # an unguided row
        arms[0][1, 30] = -torch.inf  # -inf under a zero weight adds nothing
    weights[0, 0] = -abs(float(weights[0, 0])) - 0.5  # a negative weight on a -inf entry
    return base.to(dtype), [a.to(dtype) for a in arms], weights


def assert_close_to_reference(out: torch.Tensor, base, arms, weights) -> None:
    expected = fuse_reference(base, arms, weights)
    assert out.dtype == torch.float32 and out.shape == base.shape
    assert not torch.isnan(out).any()
    assert torch.equal(torch.isneginf(out), torch.isneginf(expected))
    assert not torch.isposinf(out).any()
    finite = torch.isfinite(expected)
    # float32 compute: the error grows with the logits' magnitude (x - lse cancels).
    scale = base.double().abs().nan_to_num(posinf=0, neginf=0).amax(dim=1, keepdim=True)
    for arm, w in zip(arms, weights.T, strict=True):
        arm_scale = arm.double().abs().nan_to_num(posinf=0, neginf=0).amax(dim=1, keepdim=True)
        scale = scale + w.double().abs()[:, None] * arm_scale
    tol = (1e-4 + 4 * 2.0**-23 * scale).expand_as(expected)
    err = (out.double() - expected).abs()
    assert (err[finite] <= tol[finite]).all(), float((err - tol)[finite].max())


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("num_arms", [1, 2, 3, 4])
@pytest.mark.parametrize(("num_rows", "vocab"), [(1, 1000), (37, 32001)])
def test_torch_path_matches_reference(dtype, num_arms, num_rows, vocab):
    seed = int(torch.randint(0, 2**31 - 1, ()))  # fresh inputs every run
    base, arms, weights = make_inputs(num_rows, vocab, num_arms, dtype, seed)
    assert_close_to_reference(fuse_torch(base, arms, weights), base, arms, weights)


def test_torch_path_chunking_covers_every_row():
    base, arms, weights = make_inputs(19, 777, 2, torch.float32, seed=5)
    for rows in (1, 4, 19, 64):
        assert_close_to_reference(fuse_torch(base, arms, weights, rows), base, arms, weights)


def test_no_arms_is_log_softmax_of_base():
    base = torch.randn(3, 100)
    out = fuse(base, [], torch.zeros(3, 0))
    torch.testing.assert_close(out, torch.log_softmax(base, dim=-1))


def test_fuse_uses_torch_path_on_cpu():
    base, arms, weights = make_inputs(5, 300, 2, torch.float32, seed=1)
    assert torch.equal(fuse(base, arms, weights), fuse_torch(base, arms, weights))


TRITON_SCRIPT = r"""
import sys, torch
sys.path.insert(0, {tests_dir!r})
from test_arm_kernels import make_inputs, assert_close_to_reference
from genarm.arm_kernels import fuse_triton
from genarm.arm_kernels.triton_fuse import fuse_triton as kernel
cases = 0
for dtype in (torch.float32, torch.bfloat16, torch.float16):
    for num_arms in (1, 2, 3, 4):
        for num_rows, vocab, block in ((1, 1000, 256), (5, 3001, 1024)):
            seed = int(torch.randint(0, 2**31 - 1, ()))
            base, arms, weights = make_inputs(num_rows, vocab, num_arms, dtype, seed)
            out = kernel(base, arms, weights, block=block)
            assert_close_to_reference(out, base, arms, weights)
            cases += 1
# Strided (non-contiguous rows) inputs, as vLLM's logits slices can be.
wide = torch.randn(4, 2000)
base, arm = wide[:, :999], wide[:, 1000:1999]
weights = torch.tensor([[1.0], [0.0], [-2.0], [0.5]])
assert_close_to_reference(fuse_triton(base, [arm], weights), base, [arm], weights)
print("cases", cases + 1)
"""


def test_triton_kernel_matches_reference_in_interpreter():
    pytest.importorskip("triton")
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    script = TRITON_SCRIPT.format(tests_dir=os.path.dirname(__file__))
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "cases 25" in result.stdout
