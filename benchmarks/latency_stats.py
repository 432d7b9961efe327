"""Per-request timings and the summary metrics of a run, with the names and
definitions of vLLM's ``vllm bench serve`` (vllm/benchmarks/serve.py,
``calculate_metrics``), so that numbers are comparable:

- TTFT: request sent -> first streamed chunk with a choice.
- ITL: time between consecutive chunks with a choice (one chunk may carry
  several tokens when the server bundles them; vLLM counts chunks too).
- TPOT: (E2E - TTFT) / (output_tokens - 1), for requests with > 1 token.
- E2E latency: request sent -> last chunk with a choice.
- Throughputs: totals over successful requests / benchmark duration (first
  arrival to last completion, client clock).

The HTTP load generator and the research baseline both produce ``RequestRecord``s.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

PERCENTILES: tuple[float, ...] = (50.0, 90.0, 99.0)
LATENCY_METRICS = ("ttft", "tpot", "itl", "e2el")


@dataclass
class RequestRecord:
    """What one request did, as seen by the client (times in seconds)."""

    success: bool = False
    prompt_len: int = 0
    output_tokens: int = 0
    ttft: float = 0.0
    itl: list[float] = field(default_factory=list)
    latency: float = 0.0
    start_time: float = 0.0
    generated_text: str = ""
    error: str = ""
    reward_weights: dict[str, float] | None = None


def latency_stats(
    name: str, values: Sequence[float], percentiles: Sequence[float]
) -> dict[str, float]:
    """mean/median/std/pXX of ``values`` (seconds) in ms, keyed as vLLM's result JSON."""
    arr = np.asarray(values if len(values) else [0.0], dtype=float) * 1000.0
    out = {
        f"mean_{name}_ms": float(np.mean(arr)),
        f"median_{name}_ms": float(np.median(arr)),
        f"std_{name}_ms": float(np.std(arr)),
    }
    for p in percentiles:
        word = str(int(p)) if int(p) == p else str(p)
        out[f"p{word}_{name}_ms"] = float(np.percentile(arr, p))
    return out


def compute_metrics(
    records: Sequence[RequestRecord],
    duration_s: float,
    percentiles: Sequence[float] = PERCENTILES,
) -> dict[str, Any]:
    """vLLM's ``calculate_metrics`` over the records (same names and definitions)."""
    ok = [r for r in records if r.success]
    ttfts = [r.ttft for r in ok]
    e2els = [r.latency for r in ok]
    tpots = [(r.latency - r.ttft) / (r.output_tokens - 1) for r in ok if r.output_tokens > 1]
    itls = [x for r in ok for x in r.itl]
    total_input = sum(r.prompt_len for r in ok)
    total_output = sum(r.output_tokens for r in ok)
    metrics: dict[str, Any] = {
        "completed": len(ok),
        "failed": len(records) - len(ok),
        "duration": duration_s,
        "total_input_tokens": total_input,
        "total_output_tokens": total_output,
        "request_throughput": len(ok) / duration_s if duration_s > 0 else 0.0,
        "output_throughput": total_output / duration_s if duration_s > 0 else 0.0,
        "total_token_throughput": (total_input + total_output) / duration_s
        if duration_s > 0
        else 0.0,
    }
    for name, values in (("ttft", ttfts), ("tpot", tpots), ("itl", itls), ("e2el", e2els)):
        metrics.update(latency_stats(name, values, percentiles))
    # Peak per-second output rate and concurrency, from the token timestamps (as vLLM).
    peak_tps, peak_conc = 0.0, 0
    if ok:
        t0 = min(r.start_time for r in ok)
        seconds = int(np.ceil(max(r.start_time + r.latency for r in ok) - t0)) + 1
        tps = np.zeros(seconds)
        conc = np.zeros(seconds)
        for r in ok:
            t = r.start_time + r.ttft
            times = [t]
            for gap in r.itl:
                t += gap
                times.append(t)
            for t in times:
                tps[min(int(t - t0), seconds - 1)] += 1
            first, last = int(r.start_time - t0), int(r.start_time + r.latency - t0)
            conc[first : last + 1] += 1
        peak_tps, peak_conc = float(tps.max()), int(conc.max())
    metrics["max_output_tokens_per_s"] = peak_tps
    metrics["max_concurrent_requests"] = peak_conc
    return metrics
