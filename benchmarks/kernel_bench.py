"""Benchmark of the GenARM logits fusion: the unfused torch ops vs genarm.arm_kernels.

    python benchmarks/kernel_bench.py            # B {1,4,16,64,256} x V {32000,128256,152064}
                                                 # x K {1,2,4}, bf16 and fp32 base + bf16 ARMs
    python benchmarks/kernel_bench.py --quick    # a tiny grid, seconds
    python benchmarks/kernel_bench.py -B 256 -V 128256 -K 2 --inputs fp32   # one case

Runs from a bare checkout with only torch (and Triton, on CUDA) installed: no
vLLM, no ``pip install`` (the package folders are mapped as pyproject does).

Methods: ``unfused`` (the plain torch expression), ``fuse_shifted`` (rows whose
later processing is shift-invariant: one read of the inputs, one write) and
``fuse_exact`` (every row exactly log_softmax(base) + Σ w·log_softmax(arm),
as rows under a repetition penalty get it); on CUDA the Triton kernels, timed
twice: eagerly with ``triton.testing.do_bench`` (median; what a decode step
pays, the launches included, as vLLM runs logits processors outside its CUDA
graphs) and replayed from a CUDA graph (``do_bench_cudagraph``: the kernels'
own time); on CPU the torch path, median of repeated calls. ``--compile`` adds
``torch.compile`` of the unfused ops.

Bytes moved = the inputs read once + B·V·4 written (intermediate traffic not
counted); GB/s = bytes / device time, and the share of the copy bandwidth measured on
the same device (a large tensor copy, read + write), the practical ceiling of a
memory-bound kernel. Writes benchmarks/results/kernel_<device-name>.json and
prints a table last.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import itertools
import json
import os
import platform
import re
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "benchmarks" / "results"
# Input kinds: (base dtype, ARM dtype). vLLM's sampler hands the processor
# float32 base logits; the ARMs' come in the model's dtype.
INPUTS = {
    "bf16": (torch.bfloat16, torch.bfloat16),
    "fp32-base-bf16-arms": (torch.float32, torch.bfloat16),
    "fp32": (torch.float32, torch.float32),
}
GRID = {"B": [1, 4, 16, 64, 256], "V": [32000, 128256, 152064], "K": [1, 2, 4]}
QUICK_GRID = {"B": [1, 16], "V": [32000], "K": [1, 2]}


def load_kernels():
    """genarm.arm_kernels, installed or straight from this checkout."""
    try:
        import genarm.arm_kernels as kernels
    except ImportError:
        # A bare checkout (a GPU box with torch and Triton only): map the
        # folders into the genarm namespace as pyproject's package-dir does.
        sys.path.insert(0, str(ROOT))
        import genarm

        spec = importlib.util.spec_from_file_location(
            "genarm.arm_kernels",
            ROOT / "arm_kernels" / "__init__.py",
            submodule_search_locations=[str(ROOT / "arm_kernels")],
        )
        kernels = importlib.util.module_from_spec(spec)
        sys.modules["genarm.arm_kernels"] = kernels
        genarm.arm_kernels = kernels
        spec.loader.exec_module(kernels)
    return kernels


def unfused(base: torch.Tensor, arms: list[torch.Tensor], weights: torch.Tensor) -> torch.Tensor:
    """The plain torch expression the kernels replace (no -inf handling)."""
    out = torch.log_softmax(base.float(), -1)
    return out + sum(
        weights[:, k : k + 1] * torch.log_softmax(arm.float(), -1) for k, arm in enumerate(arms)
    )


def time_cpu(fn: Callable[[], object], min_reps: int, min_seconds: float) -> float:
    """Median seconds of repeated calls, after one warm-up call."""
    fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_reps or (time.perf_counter() - start < min_seconds and len(times) < 50):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def time_cuda(fn: Callable[[], object]) -> float:
    """Seconds per eager call, launches included: what a decode step pays, since
    vLLM runs logits processors outside its CUDA graphs."""
    import triton.testing

    return triton.testing.do_bench(fn, return_mode="median") / 1e3


def time_cuda_graph(fn: Callable[[], object]) -> float:
    """Seconds per call replayed from a CUDA graph: the kernels' own time, without
    the host's launch cost (the figure the bandwidth shares are computed from)."""
    import triton.testing

    with torch.cuda.stream(torch.cuda.Stream()):
        return triton.testing.do_bench_cudagraph(fn, return_mode="median") / 1e3


def copy_bandwidth(device: torch.device, args: argparse.Namespace) -> float:
    """GB/s of a large tensor copy (read + write): the ceiling a memory-bound kernel meets."""
    num_bytes = 1 << 30 if device.type == "cuda" else 1 << 28
    src = torch.ones(num_bytes // 4, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    if device.type == "cuda":
        seconds = time_cuda(lambda: dst.copy_(src))
    else:
        seconds = time_cpu(lambda: dst.copy_(src), args.min_reps, args.min_seconds)
    return 2 * num_bytes / seconds / 1e9


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = f"cpu-{platform.processor() or platform.machine()}-{os.cpu_count()}c"
        try:
            with open("/proc/cpuinfo") as f:
                model = next(line.split(":", 1)[1] for line in f if line.startswith("model name"))
            name = f"cpu-{model.strip()}-{os.cpu_count()}c"
        except (OSError, StopIteration):
            pass
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def machine_description(device: torch.device, note: str) -> dict:
    info = {
        "device": device_name(device),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_at_start": os.getloadavg(),
        "note": note,
    }
    if device.type == "cuda":
        import triton

        info["gpu"] = torch.cuda.get_device_name(device)
        info["triton"] = triton.__version__
        info["cuda"] = torch.version.cuda
    return info


def methods(kernels, compile_unfused: bool) -> dict[str, tuple[Callable, bool]]:
    """name -> (fn(base, arms, weights), whether its rows are exact).

    The fused methods write into one reused output, as the logits processor does.
    """
    outputs: dict[tuple, torch.Tensor] = {}

    def fused(exact: bool) -> Callable:
        def fn(base: torch.Tensor, arms: list[torch.Tensor], weights: torch.Tensor):
            key = (*base.shape, base.device)
            if key not in outputs:
                outputs.clear()
                outputs[key] = torch.empty(base.shape, dtype=torch.float32, device=base.device)
            return kernels.fuse(base, arms, weights, out=outputs[key], exact=exact)

        return fn

    fns: dict[str, tuple[Callable, bool]] = {
        "unfused": (unfused, True),
        "fuse_shifted": (fused(exact=False), False),
        "fuse_exact": (fused(exact=True), True),
    }
    if compile_unfused:
        fns["compiled_unfused"] = (None, True)  # compiled per shape in run_case
    return fns


def check_output(out: torch.Tensor, expected: torch.Tensor, exact: bool) -> None:
    """A benchmark of wrong output is worthless: each method is checked once per case."""
    if not exact:  # equal up to a per-row constant
        out, expected = torch.log_softmax(out, -1), torch.log_softmax(expected, -1)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=2e-3)


def run_case(
    device: torch.device,
    inputs: str,
    num_rows: int,
    vocab: int,
    num_arms: int,
    fns: dict[str, tuple[Callable, bool]],
    args: argparse.Namespace,
) -> list[dict]:
    base_dtype, arm_dtype = INPUTS[inputs]
    gen = torch.Generator(device=device).manual_seed(0)
    shape = (num_rows, vocab)
    base = (torch.randn(shape, generator=gen, device=device) * 4).to(base_dtype)
    arms = [
        (torch.randn(shape, generator=gen, device=device) * 4).to(arm_dtype)
        for _ in range(num_arms)
    ]
    weights = torch.randn(num_rows, num_arms, generator=gen, device=device)
    read = num_rows * vocab * (base.element_size() + num_arms * torch.finfo(arm_dtype).bits // 8)
    moved = read + num_rows * vocab * 4
    expected = unfused(base, arms, weights)
    rows = []
    for name, (fn, exact) in fns.items():
        compile_s = None
        if name == "compiled_unfused":
            torch._dynamo.reset()  # one graph per shape; keeps the recompile limit out of it
            fn = torch.compile(unfused, dynamic=False)
            t0 = time.perf_counter()
            fn(base, arms, weights)
            compile_s = time.perf_counter() - t0
        check_output(fn(base, arms, weights), expected, exact)

        def call(fn=fn):
            return fn(base, arms, weights)

        if device.type == "cuda":
            seconds, device_seconds = time_cuda(call), time_cuda_graph(call)
        else:
            seconds = device_seconds = time_cpu(call, args.min_reps, args.min_seconds)
        row = {
            "method": name,
            "inputs": inputs,
            "B": num_rows,
            "V": vocab,
            "K": num_arms,
            "us": seconds * 1e6,
            "device_us": device_seconds * 1e6,
            "bytes": moved,
            "GB_per_s": moved / device_seconds / 1e9,
        }
        if compile_s is not None:
            row["compile_s"] = compile_s
        rows.append(row)
        print(
            f"  {name:17s} {inputs:20s} B={num_rows:<4d} V={vocab:<7d} K={num_arms} "
            f"{seconds * 1e6:11.1f} us, {device_seconds * 1e6:9.1f} us on the device",
            flush=True,
        )
    base_us = next(r["us"] for r in rows if r["method"] == "unfused")
    base_device_us = next(r["device_us"] for r in rows if r["method"] == "unfused")
    for row in rows:
        row["speedup_vs_unfused"] = base_us / row["us"]
        row["device_speedup_vs_unfused"] = base_device_us / row["device_us"]
    return rows


def print_table(rows: list[dict], copy_gbps: float) -> None:
    header = f"{'method':17s} {'inputs':20s} {'B':>4s} {'V':>7s} {'K':>2s} {'us':>9s} "
    header += f"{'speed-up':>9s} {'device us':>10s} {'GB/s':>8s} {'of copy':>8s}"
    print(header)
    print("-" * len(header))
    for r in rows:
        line = f"{r['method']:17s} {r['inputs']:20s} {r['B']:4d} {r['V']:7d} {r['K']:2d} "
        line += f"{r['us']:9.1f} {r['speedup_vs_unfused']:8.2f}x {r['device_us']:10.1f} "
        line += f"{r['GB_per_s']:8.1f} {r['fraction_of_copy']:8.1%}"
        print(line)
    print(f"copy bandwidth (read + write): {copy_gbps:.1f} GB/s")
    print("us: one eager call, launches included; device us: replayed from a CUDA graph")
    print("(the kernels alone; on a CPU the same number); GB/s and share from device us")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny grid (B 1,16; V 32000; K 1,2)")
    parser.add_argument("-B", "--batch-sizes", type=int, nargs="+", help="rows (default: grid)")
    parser.add_argument("-V", "--vocab-sizes", type=int, nargs="+", help="vocabulary sizes")
    parser.add_argument("-K", "--arms", type=int, nargs="+", help="ARM counts")
    parser.add_argument(
        "--inputs", nargs="+", default=["bf16", "fp32-base-bf16-arms"], choices=list(INPUTS)
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--compile", action="store_true", help="also torch.compile the unfused")
    parser.add_argument("--min-reps", type=int, default=5, help="CPU: timed calls at least")
    parser.add_argument("--min-seconds", type=float, default=1.0, help="CPU: time per case")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--note", default="", help="saved with the results (e.g. machine load)")
    parser.add_argument("--output", type=Path, help="JSON path (default: results/kernel_<dev>)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    kernels = load_kernels()
    device = torch.device(args.device)
    grid = QUICK_GRID if args.quick else GRID
    grid_b = args.batch_sizes or grid["B"]
    grid_v = args.vocab_sizes or grid["V"]
    grid_k = args.arms or grid["K"]
    fns = methods(kernels, args.compile)
    machine = machine_description(device, args.note)
    copy_gbps = copy_bandwidth(device, args)
    print(f"{machine['device']}: {len(fns)} methods, torch threads {torch.get_num_threads()}")
    print(f"copy bandwidth: {copy_gbps:.1f} GB/s", flush=True)

    rows: list[dict] = []
    for inputs, num_rows, vocab, num_arms in itertools.product(args.inputs, grid_b, grid_v, grid_k):
        rows += run_case(device, inputs, num_rows, vocab, num_arms, fns, args)
    for row in rows:
        row["fraction_of_copy"] = row["GB_per_s"] / copy_gbps

    machine["load_average_at_end"] = os.getloadavg()
    output = args.output or RESULTS_DIR / f"kernel_{machine['device']}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": shlex.join(["python", *sys.argv]),
        "machine": machine,
        "copy_GB_per_s": copy_gbps,
        "timing": (
            "CUDA: us = triton.testing.do_bench median (eager, launches included), "
            "device_us = do_bench_cudagraph median; CPU: median of repeated calls (both)"
        ),
        "bytes_moved": "B*V*(base bytes + K*ARM bytes) read + B*V*4 written",
        "results": rows,
    }
    output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nsaved {output}\n")
    print_table(rows, copy_gbps)


if __name__ == "__main__":
    main()
