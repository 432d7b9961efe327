"""Load generator for any OpenAI-compatible endpoint (chat or completions), with
the metrics of vLLM's ``vllm bench serve`` so that numbers are comparable.

    python -m benchmarks.load --base-url http://127.0.0.1:8000 --num-prompts 64 \\
        --input-len 128 --output-len 128 --max-concurrency 8 --reward-weights concise=1.0
    python -m benchmarks.load --base-url URL --sweep-concurrency 1,4,16 \\
        --random-weights concise:-1:2 --result-file out.json --plot out.png

This module is the command line; the pieces live in their own modules:
``benchmarks.http_load`` (arrivals, concurrency cap, streamed requests),
``benchmarks.latency_stats`` (metric definitions, as vLLM's), ``benchmarks.prompts``
(synthetic or file prompts), ``benchmarks.reports`` (text, JSON, figure) and
``genarm.clients.weight_args`` (``--reward-weights`` / ``--random-weights``).

Library use: ``await run_benchmark(LoadConfig(...))`` returns the result dict;
the names below are re-exported here for that use and for the other benchmarks.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
from pathlib import Path

from benchmarks.http_load import LoadConfig, run_benchmark, run_sweep
from benchmarks.latency_stats import LATENCY_METRICS, PERCENTILES, RequestRecord, compute_metrics
from benchmarks.prompts import load_prompts_file, synthetic_prompts
from benchmarks.reports import format_result, plot_series, save_json
from genarm.clients.weight_args import parse_reward_weights as parse_weights
from genarm.clients.weight_args import parse_weight_ranges

__all__ = [
    "LATENCY_METRICS",
    "PERCENTILES",
    "LoadConfig",
    "RequestRecord",
    "add_arguments",
    "compute_metrics",
    "config_from_args",
    "format_result",
    "load_prompts_file",
    "main",
    "parse_weight_ranges",
    "parse_weights",
    "plot_series",
    "run_benchmark",
    "run_sweep",
    "synthetic_prompts",
]


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The load generator's options (one run, or a sweep of rates or concurrencies)."""
    p.add_argument("--base-url", default="http://127.0.0.1:8000", help="server root or /v1")
    p.add_argument("--endpoint", choices=["completions", "chat"], default="completions")
    p.add_argument("--model", help="model id (default: the first of /v1/models)")
    p.add_argument("--api-key")
    p.add_argument("--prompts-file", help=".jsonl (prompt/text/instruction) or .txt (lines)")
    p.add_argument("--tokenizer", help="tokenizer folder: exact synthetic prompt lengths")
    p.add_argument("--num-prompts", type=int, default=32)
    p.add_argument("--input-len", type=int, default=32, help="synthetic prompt tokens")
    p.add_argument("--output-len", type=int, default=32)
    p.add_argument(
        "--no-ignore-eos", action="store_true", help="let requests stop at EOS (variable lengths)"
    )
    p.add_argument("--temperature", type=float)
    p.add_argument("--request-rate", type=float, default=math.inf, help="req/s; inf: all at once")
    p.add_argument("--burstiness", type=float, default=1.0)
    p.add_argument("--max-concurrency", type=int)
    p.add_argument("--sweep-rates", help="comma-separated request rates, one run each")
    p.add_argument("--sweep-concurrency", help="comma-separated concurrencies, one run each")
    p.add_argument("--reward-weights", help="fixed weights: ARM=W,ARM=W")
    p.add_argument("--random-weights", help="uniform per request: ARM:LO:HI,...")
    p.add_argument("--extra-body", help="JSON object merged into every request")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-warmups", type=int, default=1)
    p.add_argument("--percentiles", default="50,90,99")
    p.add_argument("--result-file", help="JSON file for the results")
    p.add_argument("--plot", help="PNG of latency vs throughput (default: next to --result-file)")
    p.add_argument("--label")
    p.add_argument("--disable-tqdm", action="store_true")


def config_from_args(args: argparse.Namespace) -> LoadConfig:
    """The run that ``add_arguments``' options describe."""
    return LoadConfig(
        base_url=args.base_url,
        endpoint=args.endpoint,
        model=args.model,
        api_key=args.api_key,
        prompts_file=args.prompts_file,
        tokenizer=args.tokenizer,
        num_prompts=args.num_prompts,
        input_len=args.input_len,
        output_len=args.output_len,
        ignore_eos=not args.no_ignore_eos,
        temperature=args.temperature,
        request_rate=args.request_rate,
        burstiness=args.burstiness,
        max_concurrency=args.max_concurrency,
        reward_weights=parse_weights(args.reward_weights),
        random_weights=parse_weight_ranges(args.random_weights),
        extra_body=json.loads(args.extra_body) if args.extra_body else None,
        seed=args.seed,
        num_warmups=args.num_warmups,
        percentiles=tuple(float(p) for p in args.percentiles.split(",")),
        disable_tqdm=args.disable_tqdm,
        label=args.label,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    cfg = config_from_args(args)
    rates = [float(x) for x in args.sweep_rates.split(",")] if args.sweep_rates else None
    concs = [int(x) for x in args.sweep_concurrency.split(",")] if args.sweep_concurrency else None
    results = asyncio.run(run_sweep(cfg, rates, concs))
    for result in results:
        print(format_result(result))
    if args.result_file:
        path = save_json(args.result_file, results if len(results) > 1 else results[0])
        print(f"results: {path}")
    plot = args.plot or (
        str(Path(args.result_file).with_suffix(".png"))
        if args.result_file and len(results) > 1
        else None
    )
    if plot:
        print(f"plot: {plot_series({args.label or 'server': results}, plot)}")
    return 0 if all(r["completed"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
