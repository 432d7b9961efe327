#!/usr/bin/env bash
# The fusion's GPU checks in one command, from a bare checkout on a machine with
# only torch and Triton (no vLLM, no pip install): the CUDA kernel against the
# float64 reference (tests/test_arm_kernels.py, its CUDA cases and the CPU ones),
# then the kernel benchmark's full grid (benchmarks/results/kernel_<gpu>.json).
#
#     bash benchmarks/gpu_check.sh            # tests, then the benchmark
#     bash benchmarks/gpu_check.sh --quick    # tests, then the benchmark's tiny grid
set -euo pipefail
cd "$(dirname "$0")/.."
# The genarm.arm_kernels package as pyproject maps it (the folder arm_kernels/),
# without installing the project; tests/ for the tests' own helpers (no
# conftest: it builds vLLM configs).
shim=$(mktemp -d)
mkdir -p "$shim/genarm"
: >"$shim/genarm/__init__.py"
ln -s "$PWD/arm_kernels" "$shim/genarm/arm_kernels"
export PYTHONPATH="$shim:$PWD/tests${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
python3 -c 'import torch; assert torch.cuda.is_available(), "no CUDA GPU"; print(torch.cuda.get_device_name())'
# -P: the checkout's own genarm/ (no arm_kernels in it) must not shadow the shim.
python3 -P -m pytest tests/test_arm_kernels.py --noconftest -p no:cacheprovider -q \
    -k "not interpreter" -o addopts=""
python3 benchmarks/kernel_bench.py "$@"
