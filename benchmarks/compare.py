"""Side-by-side throughput and latency of GenARM serving, in one run, with the
same prompts and output lengths everywhere:

  (1) the GenARM server, base + 1 ARM          (weights != 0: fusion runs)
  (2) the GenARM server, base + 2 ARMs
  (3) the server with no ARMs (plain vLLM serving the base)
  (4) the research-style baseline (HF transformers, model_arithmetic's loop),
      sequential (one request at a time) and batched (batch = concurrency)

at each concurrency (default 1, 4, 16). Prints a table of output tok/s and
median latencies with the ratios (1)/(3), (2)/(3) and (1)/(4), and saves JSON,
markdown and a PNG under benchmarks/results/ with the machine's description.

    python -m benchmarks.compare --models tiny --quick     # minutes, for a smoke run
    python -m benchmarks.compare --models w2s               # weak-to-strong shapes
    python -m benchmarks.compare --models demo              # SmolLM2 + the demo ARMs
    python -m benchmarks.compare --models equal --eager     # equal sizes, eager engine

Model sets: ``tiny`` (random models of genarm.tiny_models), ``w2s`` (random
models, a base ~8x the ARM's FLOPs per token), ``demo`` (configs/demo.yaml:
SmolLM2-135M and its LoRA ARMs, merged). For each set the report gives the
ceiling of (1)/(3) from the models' sizes: a step of (1) runs base + ARM, so if
time were proportional to FLOPs, (1)/(3) <= F_base / (F_base + F_arm).

This module is the driver (options, runs, wiring); the model sets are in
``benchmarks.model_sets``, the HTTP load in ``benchmarks.http_load``, the table
and summary in ``benchmarks.compare_report``, files and figures in ``benchmarks.reports``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
import tempfile
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.compare_report import build_table, format_table, summary_markdown  # noqa: E402
from benchmarks.http_load import LoadConfig, run_benchmark  # noqa: E402
from benchmarks.model_sets import (  # noqa: E402
    MODEL_SET_NAMES,
    ModelSet,
    flop_ceilings,
    model_set,
)
from benchmarks.prompts import synthetic_prompts  # noqa: E402
from benchmarks.reports import (  # noqa: E402
    RESULTS,
    folder_record,
    machine_description,
    plot_series,
    save_json,
)
from genarm.live_server import LiveServer  # noqa: E402


def _slim(result: dict[str, Any]) -> dict[str, Any]:
    """A result without the per-token lists (kept per request: lengths, TTFT, E2E)."""
    return {k: v for k, v in result.items() if k not in ("itls", "output_token_ids")}


def model_set_files(models: ModelSet) -> dict[str, Any]:
    """The model set as the report records it: each folder as ``{"path", "sha256"}``
    (None where an ARM has no such source), and the dtype."""
    records: dict[str, dict[str, str | None]] = {}

    def record(path: str | None) -> dict[str, str | None] | None:
        if path is not None and path not in records:  # the base is also each LoRA's base
            records[path] = folder_record(path)
        return None if path is None else records[path]

    arms = {name: {k: record(v) for k, v in source.items()} for name, source in models.arms.items()}
    return {"base": record(models.base), "arms": arms, "dtype": models.dtype}


def run_server_system(
    label: str,
    config: dict,
    prompts: list[str],
    counts: dict[int, int],
    weights: dict[str, float] | None,
    args: argparse.Namespace,
    workdir: Path,
) -> list[dict[str, Any]]:
    """Start a server from ``config``, run load.py at each concurrency, stop it."""
    results = []
    print(f"\n== {label}: starting server ({len(config['arms'])} ARMs)", flush=True)
    with LiveServer(config, workdir=workdir / label, startup_timeout=900) as server:
        for conc, n in counts.items():
            cfg = LoadConfig(
                base_url=server.url,
                prompts=prompts[:n],
                num_prompts=n,
                input_len=args.input_len,
                output_len=args.output_len,
                temperature=args.temperature,
                max_concurrency=conc,
                reward_weights=weights,
                seed=args.seed,
                num_warmups=conc,  # one batch of the run's size
                label=f"{label} c={conc}",
            )
            result = asyncio.run(run_benchmark(cfg))
            result["system"] = label
            if result["failed"]:
                errors = [e for e in result["errors"] if e][:3]
                print(f"   {result['failed']} failed requests: {errors}", flush=True)
            results.append(result)
    return results


def run_research(
    models: ModelSet,
    arm_names: list[str],
    weights: dict[str, float],
    prompts: list[str],
    counts: dict[int, int],
    args: argparse.Namespace,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The research baseline: one sequential run, one batched run per concurrency."""
    from benchmarks.research_baseline import ResearchGenARM, run_baseline

    print("\n== research baseline (HF transformers)", flush=True)
    model = ResearchGenARM(
        models.base,
        {a: {k: v for k, v in models.arms[a].items()} for a in arm_names},
        dtype=models.dtype,
    )
    kwargs = dict(output_len=args.output_len, temperature=args.temperature, seed=args.seed)
    # Sequential latency does not depend on the concurrency: one run, as many
    # requests as the smallest concurrency's.
    n_seq = min(counts.values())
    seq = run_baseline(
        model, prompts[:n_seq], weights, batch_size=1, label="research seq", **kwargs
    )
    seq["system"] = "research_sequential"
    batched = []
    for conc, n in counts.items():
        result = run_baseline(
            model, prompts[:n], weights, batch_size=conc, label=f"research bs={conc}", **kwargs
        )
        result["system"] = "research_batched"
        batched.append(result)
    return [seq], batched


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", choices=list(MODEL_SET_NAMES), default="tiny")
    p.add_argument("--quick", action="store_true", help="few short requests: a smoke run")
    p.add_argument("--concurrency", default="1,4,16")
    p.add_argument("--prompts-per-concurrency", type=int, default=4, help="requests = k x conc")
    p.add_argument("--min-prompts", type=int, default=16)
    p.add_argument("--input-len", type=int, default=128)
    p.add_argument("--output-len", type=int, default=128)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--systems", default="1arm,2arm,plain,research", help="subset to run")
    p.add_argument("--eager", action="store_true", help="enforce_eager: true (default compiled)")
    p.add_argument("--model-cache", default=str(Path(tempfile.gettempdir()) / "genarm-bench"))
    p.add_argument("--out", default=str(RESULTS))
    args = p.parse_args(argv)
    if args.quick:
        args.input_len, args.output_len = min(args.input_len, 16), min(args.output_len, 16)
        args.prompts_per_concurrency, args.min_prompts = 1, 2
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    counts = {c: max(args.min_prompts, args.prompts_per_concurrency * c) for c in concurrencies}
    wanted = set(args.systems.split(","))

    models = model_set(args.models, Path(args.model_cache))
    models.engine["enforce_eager"] = args.eager
    arm1, arm2 = list(models.arms)[:2]
    w1 = {arm1: 1.0}
    w2 = {arm1: 1.0, arm2: 0.5}

    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(models.base)
    prompts = synthetic_prompts(max(counts.values()), args.input_len, tokenizer, args.seed)
    sizes, ceilings = flop_ceilings(models, arm1, arm2, args.input_len + args.output_len // 2)

    started = dt.datetime.now()
    work = Path(tempfile.mkdtemp(prefix="genarm-compare-"))
    systems: dict[str, list[dict]] = {}
    if "1arm" in wanted:
        systems["genarm_1arm"] = run_server_system(
            "genarm_1arm", models.server_config([arm1]), prompts, counts, w1, args, work
        )
    if "2arm" in wanted:
        systems["genarm_2arm"] = run_server_system(
            "genarm_2arm", models.server_config([arm1, arm2]), prompts, counts, w2, args, work
        )
    if "plain" in wanted:
        systems["plain_vllm"] = run_server_system(
            "plain_vllm", models.server_config([]), prompts, counts, None, args, work
        )
    if "research" in wanted:  # last: servers are stopped, no CPU contention
        seq, batched = run_research(models, [arm1], w1, prompts, counts, args)
        systems["research_sequential"] = seq
        systems["research_batched"] = batched

    rows = build_table(systems, concurrencies)
    table = format_table(rows, list(systems))
    report = {
        "started": started.isoformat(timespec="seconds"),
        "seconds": (dt.datetime.now() - started).total_seconds(),
        "models": args.models,
        "model_set": model_set_files(models),
        "notes": models.notes,
        "quick": args.quick,
        "enforce_eager": args.eager,
        "input_len": args.input_len,
        "output_len": args.output_len,
        "temperature": args.temperature,
        "prompts_per_concurrency": counts,
        "weights": {"genarm_1arm": w1, "genarm_2arm": w2, "research": w1},
        "flops_per_token": sizes,
        "ceilings_from_flops": ceilings,
        "machine": machine_description(),
        "table": rows,
        "runs": {name: [_slim(r) for r in runs] for name, runs in systems.items()},
    }
    mode = ("_quick" if args.quick else "") + ("_eager" if args.eager else "")
    stem = f"compare_{args.models}{mode}_{started:%Y%m%d-%H%M%S}"
    out = Path(args.out)
    save_json(out / f"{stem}.json", report)
    summary = summary_markdown(report, systems, started, table)
    (out / f"{stem}.md").write_text(summary)
    series = {name: runs for name, runs in systems.items() if name != "research_sequential"}
    if series:
        plot_series(series, out / f"{stem}.png", title=f"GenARM serving: {args.models}")
    print("\n" + summary)
    print(f"saved {out / stem}.{{json,md,png}}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
