"""Benchmark of the GenARM logits fusion: the unfused torch ops vs genarm.arm_kernels.

    python benchmarks/kernel_bench.py          # B {1,16,256} x V {32000,128256} x K {1,2,4}
    python benchmarks/kernel_bench.py --quick  # a tiny grid, seconds

CPU: the unfused ops vs ``fuse_torch`` (and ``torch.compile`` of the unfused ops
with --compile). CUDA: also the Triton kernel and ``torch.compile`` of the
unfused ops, timed with ``triton.testing.do_bench`` (median), plus the
device-to-device copy bandwidth, which each kernel's GB/s is a fraction of.
The fusion is memory-bound, so bytes moved = (K + 1)·B·V·in_bytes read +
B·V·4 written; GB/s = bytes / time (intermediate traffic not counted).

Writes benchmarks/results/kernel_<device-name>.json with a machine description
and prints a table last.
"""

from __future__ import annotations

import argparse
import datetime
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

from genarm.arm_kernels import fuse_torch

RESULTS_DIR = Path(__file__).resolve().parent / "results"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


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
    import triton.testing

    return triton.testing.do_bench(fn, return_mode="median") / 1e3


def cuda_copy_bandwidth(num_bytes: int = 1 << 30) -> float:
    """Device-to-device copy GB/s (read + write), the practical bandwidth ceiling."""
    src = torch.empty(num_bytes, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    seconds = time_cuda(lambda: dst.copy_(src))
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


def methods(device: torch.device, compile_unfused: bool) -> dict[str, Callable]:
    fns: dict[str, Callable] = {"unfused": unfused, "fuse_torch": fuse_torch}
    if device.type == "cuda":
        from genarm.arm_kernels import fuse_triton

        fns["fuse_triton"] = fuse_triton
    if compile_unfused:
        fns["compiled_unfused"] = None  # compiled per shape in run_case
    return fns


def run_case(
    device: torch.device,
    dtype: torch.dtype,
    num_rows: int,
    vocab: int,
    num_arms: int,
    fns: dict[str, Callable],
    args: argparse.Namespace,
) -> list[dict]:
    gen = torch.Generator(device=device).manual_seed(0)
    shape = (num_rows, vocab)
    base = (torch.randn(shape, generator=gen, device=device) * 4).to(dtype)
    arms = [
        (torch.randn(shape, generator=gen, device=device) * 4).to(dtype) for _ in range(num_arms)
    ]
    weights = torch.randn(num_rows, num_arms, generator=gen, device=device)
    in_bytes = base.element_size()
    moved = (num_arms + 1) * num_rows * vocab * in_bytes + num_rows * vocab * 4
    expected = unfused(base, arms, weights)
    rows = []
    for name, fn in fns.items():
        compile_s = None
        if name == "compiled_unfused":
            torch._dynamo.reset()  # one graph per shape; keeps the recompile limit out of it
            fn = torch.compile(unfused, dynamic=False)
            t0 = time.perf_counter()
            fn(base, arms, weights)
            compile_s = time.perf_counter() - t0
        # A benchmark of wrong output is worthless: check each method once.
        torch.testing.assert_close(fn(base, arms, weights), expected, rtol=1e-5, atol=1e-3)

        def call(fn=fn):
            return fn(base, arms, weights)

        if device.type == "cuda":
            seconds = time_cuda(call)
        else:
            seconds = time_cpu(call, args.min_reps, args.min_seconds)
        row = {
            "method": name,
            "dtype": str(dtype).removeprefix("torch."),
            "B": num_rows,
            "V": vocab,
            "K": num_arms,
            "ms": seconds * 1e3,
            "bytes": moved,
            "GB_per_s": moved / seconds / 1e9,
        }
        if compile_s is not None:
            row["compile_s"] = compile_s
        rows.append(row)
        print(f"  {name:17s} B={num_rows:<4d} V={vocab:<7d} K={num_arms} {seconds * 1e3:9.2f} ms")
    base_ms = next(r["ms"] for r in rows if r["method"] == "unfused")
    for row in rows:
        row["speedup_vs_unfused"] = base_ms / row["ms"]
    return rows


def print_table(rows: list[dict], copy_gbps: float | None) -> None:
    header = f"{'method':17s} {'dtype':9s} {'B':>4s} {'V':>7s} {'K':>2s} {'ms':>10s} "
    header += f"{'GB/s':>8s} {'speed-up':>9s}"
    if copy_gbps:
        header += f" {'of copy':>8s}"
    print(header)
    print("-" * len(header))
    for r in rows:
        line = f"{r['method']:17s} {r['dtype']:9s} {r['B']:4d} {r['V']:7d} {r['K']:2d} "
        line += f"{r['ms']:10.3f} {r['GB_per_s']:8.2f} {r['speedup_vs_unfused']:8.2f}x"
        if copy_gbps:
            line += f" {r['fraction_of_copy']:8.1%}"
        print(line)
    if copy_gbps:
        print(f"device-to-device copy: {copy_gbps:.1f} GB/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny grid (B 1,16; V 32000; K 1,2)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtypes", nargs="+", default=["float32"], choices=list(DTYPES))
    parser.add_argument("--compile", action="store_true", help="also torch.compile (CPU)")
    parser.add_argument("--min-reps", type=int, default=5, help="CPU: timed calls at least")
    parser.add_argument("--min-seconds", type=float, default=1.0, help="CPU: time per case")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--note", default="", help="saved with the results (e.g. machine load)")
    parser.add_argument("--output", type=Path, help="JSON path (default: results/kernel_<dev>)")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    grid_b, grid_v, grid_k = (
        ([1, 16], [32000], [1, 2])
        if args.quick
        else (
            [1, 16, 256],
            [32000, 128256],
            [1, 2, 4],
        )
    )
    compile_unfused = args.compile or device.type == "cuda"
    fns = methods(device, compile_unfused)
    machine = machine_description(device, args.note)
    copy_gbps = cuda_copy_bandwidth() if device.type == "cuda" else None
    print(f"{machine['device']}: {len(fns)} methods, torch threads {torch.get_num_threads()}")

    rows: list[dict] = []
    for dtype_name, num_rows, vocab, num_arms in itertools.product(
        args.dtypes, grid_b, grid_v, grid_k
    ):
        rows += run_case(device, DTYPES[dtype_name], num_rows, vocab, num_arms, fns, args)
    if copy_gbps:
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
        "timing": "CUDA: triton.testing.do_bench median; CPU: median of repeated calls",
        "bytes_moved": "(K+1)*B*V*in_bytes read + B*V*4 written",
        "results": rows,
    }
    output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nsaved {output}\n")
    print_table(rows, copy_gbps)


if __name__ == "__main__":
    main()
