"""Load generator for any OpenAI-compatible endpoint (chat or completions), with
the metrics of vLLM's ``vllm bench serve`` so that numbers are comparable.

    python -m benchmarks.load --base-url http://127.0.0.1:8000 --num-prompts 64 \\
        --input-len 128 --output-len 128 --max-concurrency 8 --reward-weights concise=1.0
    python -m benchmarks.load --base-url URL --sweep-concurrency 1,4,16 \\
        --random-weights concise:-1:2 --result-file out.json --plot out.png

Arrivals are a Poisson process at ``--request-rate`` (``inf``: all at once;
``--burstiness`` != 1 gives gamma intervals, as in vLLM), optionally capped by
``--max-concurrency`` (a client-side semaphore; its queueing time is not part
of the latencies, as in vLLM). Fixed output lengths: every request asks for
``max_tokens = output_len`` with ``ignore_eos: true`` and ``min_tokens`` (vLLM's
extensions, which the GenARM server implements); the counts reported are the
server's own (``usage`` of the final stream chunk), never the requested ones.

Metric definitions (vllm/benchmarks/serve.py, ``calculate_metrics``):
- TTFT: request sent -> first streamed chunk with a choice.
- ITL: time between consecutive chunks with a choice (one chunk may carry
  several tokens when the server bundles them; vLLM counts chunks too).
- TPOT: (E2E - TTFT) / (output_tokens - 1), for requests with > 1 token.
- E2E latency: request sent -> last chunk with a choice.
- Throughputs: totals over successful requests / benchmark duration (first
  arrival to last completion, client clock).

Library use: ``await run_benchmark(LoadConfig(...))`` returns the result dict.
"""

from __future__ import annotations

import argparse
import asyncio
import codecs
import contextlib
import dataclasses
import json
import math
import random
import sys
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

PERCENTILES: tuple[float, ...] = (50.0, 90.0, 99.0)
LATENCY_METRICS = ("ttft", "tpot", "itl", "e2el")

# Fallback text for synthetic prompts when no tokenizer is given (then the
# prompt length is approximate; the server's usage reports the exact count).
_WORDS = (
    "the of and to in is that for it as was with be by on not he this are or his from at "
    "which but have an they you were her she there been one all we their has would when "
    "if so no will more about can said them some could time these two may first then do "
    "any like my now over such our man me even most made after also did many before must"
).split()


@dataclass
class LoadConfig:
    """One benchmark run. ``base_url`` is the server root or its ``/v1``."""

    base_url: str = "http://127.0.0.1:8000"
    endpoint: Literal["completions", "chat"] = "completions"
    model: str | None = None  # None: the first id of /v1/models
    api_key: str | None = None
    # Prompts: explicit list, else a file (.jsonl: "prompt"/"text"/"instruction"; .txt: lines),
    # else synthetic prompts of ``input_len`` tokens (exact with ``tokenizer``).
    prompts: list[str] | None = None
    prompts_file: str | None = None
    tokenizer: str | None = None
    num_prompts: int = 32
    input_len: int = 32
    output_len: int = 32
    ignore_eos: bool = True
    temperature: float | None = None  # None: the server's default
    request_rate: float = math.inf
    burstiness: float = 1.0
    max_concurrency: int | None = None
    reward_weights: dict[str, float] | None = None  # the same for every request
    random_weights: dict[str, tuple[float, float]] | None = None  # uniform per request
    extra_body: dict[str, Any] | None = None
    seed: int = 0
    num_warmups: int = 1
    timeout_s: float = 3600.0
    percentiles: tuple[float, ...] = PERCENTILES
    disable_tqdm: bool = False
    label: str | None = None  # free text carried into the result


@dataclass
class SampleRequest:
    prompt: str
    output_len: int
    reward_weights: dict[str, float] | None = None


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


# ---------------------------------------------------------------- prompts and weights


def parse_weights(text: str | None) -> dict[str, float] | None:
    """``"a=1.0,b=-0.5"`` -> {"a": 1.0, "b": -0.5}."""
    if not text:
        return None
    out = {}
    for item in text.split(","):
        name, _, value = item.partition("=")
        if not _ or not name.strip():
            raise ValueError(f"expected NAME=WEIGHT, got {item!r}")
        out[name.strip()] = float(value)
    return out


def parse_weight_ranges(text: str | None) -> dict[str, tuple[float, float]] | None:
    """``"a:0:2,b:-1:1"`` -> {"a": (0, 2), "b": (-1, 1)}."""
    if not text:
        return None
    out = {}
    for item in text.split(","):
        parts = item.split(":")
        if len(parts) != 3:
            raise ValueError(f"expected NAME:LO:HI, got {item!r}")
        lo, hi = float(parts[1]), float(parts[2])
        if lo > hi:
            raise ValueError(f"empty range in {item!r}")
        out[parts[0].strip()] = (lo, hi)
    return out


def load_prompts_file(path: str | Path) -> list[str]:
    path = Path(path)
    if path.suffix == ".jsonl":
        prompts = []
        for line in path.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                if isinstance(row, str):
                    prompts.append(row)
                    continue
                for key in ("prompt", "text", "instruction", "question"):
                    if isinstance(row.get(key), str):
                        prompts.append(row[key])
                        break
                else:
                    raise ValueError(f"{path}: a row without prompt/text/instruction: {line[:80]}")
        return prompts
    return [line for line in path.read_text().splitlines() if line.strip()]


def synthetic_prompts(n: int, input_len: int, tokenizer=None, seed: int = 0) -> list[str]:
    """``n`` random prompts of ``input_len`` tokens (as vLLM's random dataset:
    random non-special ids, decoded, re-encoded and trimmed); without a tokenizer,
    ``input_len`` random common words."""
    rng = random.Random(seed)
    if tokenizer is None:
        return [" ".join(rng.choice(_WORDS) for _ in range(input_len)) for _ in range(n)]
    special = set(tokenizer.all_special_ids)
    ids = [i for i in range(len(tokenizer)) if i not in special]
    prompts = []
    for _ in range(n):
        # Decoding then encoding can merge or split tokens: trim or refill until the
        # text re-encodes to exactly input_len tokens, with fresh ids if that fails.
        exact = False
        for _attempt in range(50):
            tokens = [rng.choice(ids) for _ in range(input_len)]
            for _ in range(5):
                text = tokenizer.decode(tokens)
                tokens = tokenizer.encode(text, add_special_tokens=False)
                if exact := len(tokens) == input_len:
                    break
                tokens = tokens[:input_len] + [
                    rng.choice(ids) for _ in range(input_len - len(tokens))
                ]
            if exact:
                break
        prompts.append(text)
    return prompts


def load_tokenizer(path: str | None):
    if not path:
        return None
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


def build_requests(cfg: LoadConfig, tokenizer=None) -> list[SampleRequest]:
    """The run's requests: prompts (cycled to ``num_prompts``) and seeded weights."""
    if cfg.prompts is not None:
        prompts = list(cfg.prompts)
    elif cfg.prompts_file:
        prompts = load_prompts_file(cfg.prompts_file)
    else:
        if tokenizer is None and cfg.tokenizer:
            tokenizer = load_tokenizer(cfg.tokenizer)
        prompts = synthetic_prompts(cfg.num_prompts, cfg.input_len, tokenizer, cfg.seed)
    if not prompts:
        raise ValueError("no prompts")
    rng = random.Random(cfg.seed + 1)
    requests = []
    for i in range(cfg.num_prompts):
        weights = dict(cfg.reward_weights) if cfg.reward_weights else None
        if cfg.random_weights:
            weights = weights or {}
            for name, (lo, hi) in cfg.random_weights.items():
                weights[name] = round(rng.uniform(lo, hi), 4)
        requests.append(SampleRequest(prompts[i % len(prompts)], cfg.output_len, weights))
    return requests


# ---------------------------------------------------------------- metrics


def _stats(name: str, values: Sequence[float], percentiles: Sequence[float]) -> dict[str, float]:
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
        metrics.update(_stats(name, values, percentiles))
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


# ---------------------------------------------------------------- one request


def _sse_events(buffer: str) -> tuple[list[str], str]:
    """Complete SSE ``data:`` payloads in ``buffer`` and the unfinished rest."""
    events = []
    buffer = buffer.replace("\r\n", "\n")
    while "\n\n" in buffer:
        block, buffer = buffer.split("\n\n", 1)
        data = [line[5:].lstrip() for line in block.split("\n") if line.startswith("data:")]
        if data:  # comments (":") and other fields are skipped
            events.append("\n".join(data))
    return events, buffer


def request_payload(cfg: LoadConfig, model: str, req: SampleRequest) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "model": model,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if cfg.endpoint == "chat":
        payload["messages"] = [{"role": "user", "content": req.prompt}]
        payload["max_completion_tokens"] = req.output_len
    else:
        payload["prompt"] = req.prompt
        payload["max_tokens"] = req.output_len
    if cfg.ignore_eos:
        payload["ignore_eos"] = True
        payload["min_tokens"] = req.output_len
    if cfg.temperature is not None:
        payload["temperature"] = cfg.temperature
    if req.reward_weights is not None:
        payload["reward_weights"] = req.reward_weights
    if cfg.extra_body:
        payload.update(cfg.extra_body)
    return payload


async def send_request(
    session, url: str, payload: dict[str, Any], headers: dict[str, str]
) -> RequestRecord:
    """POST one streamed request and time its chunks (vLLM's request function)."""
    record = RequestRecord(reward_weights=payload.get("reward_weights"))
    chunks: list[str] = []
    start = time.perf_counter()
    record.start_time = start
    last = start
    first = True
    try:
        async with session.post(url, json=payload, headers=headers) as response:
            if response.status != 200:
                body = await response.text()
                record.error = f"HTTP {response.status}: {body[:500]}"
                return record
            buffer = ""
            decoder = codecs.getincrementaldecoder("utf-8")()
            done = False
            async for raw in response.content.iter_any():
                buffer += decoder.decode(raw)
                events, buffer = _sse_events(buffer)
                for event in events:
                    if event == "[DONE]":
                        done = True
                        continue
                    data = json.loads(event)
                    if "error" in data:
                        record.error = f"in-stream error: {json.dumps(data['error'])[:500]}"
                        return record
                    if choices := data.get("choices"):
                        now = time.perf_counter()
                        if first:
                            record.ttft = now - start
                            first = False
                        else:
                            record.itl.append(now - last)
                        last = now
                        choice = choices[0]
                        text = choice.get("text")
                        if text is None:
                            text = (choice.get("delta") or {}).get("content")
                        chunks.append(text or "")
                    if usage := data.get("usage"):
                        record.output_tokens = int(usage.get("completion_tokens") or 0)
                        record.prompt_len = int(usage.get("prompt_tokens") or 0)
            record.generated_text = "".join(chunks)
            record.latency = last - start
            if first:
                record.error = "no chunk with a choice (no TTFT)"
            elif not done:
                record.error = "stream ended without [DONE]"
            else:
                if not record.output_tokens:
                    # No usage from the server: count chunks (a lower bound if bundled).
                    record.output_tokens = 1 + len(record.itl)
                record.success = True
    except Exception as err:  # any transport failure is a failed request, as in vLLM
        record.error = f"{type(err).__name__}: {err}"
    return record


# ---------------------------------------------------------------- the run


def api_root(base_url: str) -> str:
    url = base_url.rstrip("/")
    return url if url.endswith("/v1") else url + "/v1"


async def _arrivals(
    requests: list[SampleRequest], rate: float, burstiness: float, seed: int
) -> AsyncIterator[SampleRequest]:
    """Yield requests at gamma-distributed intervals (Poisson for burstiness 1)."""
    rng = np.random.default_rng(seed)
    for i, req in enumerate(requests):
        yield req
        if math.isinf(rate) or i == len(requests) - 1:
            continue
        await asyncio.sleep(float(rng.gamma(shape=burstiness, scale=1.0 / (rate * burstiness))))


async def fetch_model_id(session, root: str, headers: dict[str, str]) -> str:
    async with session.get(f"{root}/models", headers=headers) as response:
        response.raise_for_status()
        return (await response.json())["data"][0]["id"]


async def run_benchmark(cfg: LoadConfig, tokenizer=None) -> dict[str, Any]:
    """Run one load test; the result dict has vLLM's metric names plus the
    per-request lists (``input_lens``, ``output_lens``, ``ttfts``, ``itls``, ...)."""
    import aiohttp
    from tqdm.asyncio import tqdm

    requests = build_requests(cfg, tokenizer)
    root = api_root(cfg.base_url)
    url = f"{root}/chat/completions" if cfg.endpoint == "chat" else f"{root}/completions"
    headers = {"Content-Type": "application/json"}
    if cfg.api_key:
        headers["Authorization"] = f"Bearer {cfg.api_key}"
    connector = aiohttp.TCPConnector(
        limit=cfg.max_concurrency or 0, limit_per_host=cfg.max_concurrency or 0
    )
    timeout = aiohttp.ClientTimeout(total=cfg.timeout_s)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        model = cfg.model or await fetch_model_id(session, root, headers)
        semaphore = (
            asyncio.Semaphore(cfg.max_concurrency)
            if cfg.max_concurrency
            else contextlib.nullcontext()
        )

        async def warm_up(req: SampleRequest) -> None:
            async with semaphore:
                warm = await send_request(session, url, request_payload(cfg, model, req), headers)
            if not warm.success:
                raise RuntimeError(f"warm-up request failed: {warm.error}")

        # Not counted: first-call costs and connection set-up; concurrent as in
        # vLLM's bench, so the batch sizes of the run are warmed up too.
        await asyncio.gather(*(warm_up(requests[0]) for _ in range(cfg.num_warmups)))

        pbar = None if cfg.disable_tqdm else tqdm(total=len(requests), desc=cfg.label or "load")

        async def one(req: SampleRequest) -> RequestRecord:
            async with semaphore:
                record = await send_request(session, url, request_payload(cfg, model, req), headers)
            if pbar is not None:
                pbar.update(1)
            return record

        start = time.perf_counter()
        tasks = [
            asyncio.create_task(one(req))
            async for req in _arrivals(requests, cfg.request_rate, cfg.burstiness, cfg.seed)
        ]
        records = await asyncio.gather(*tasks)
        duration = time.perf_counter() - start
        if pbar is not None:
            pbar.close()

    result: dict[str, Any] = {
        "label": cfg.label,
        "endpoint": url,
        "endpoint_type": cfg.endpoint,
        "model_id": model,
        "num_prompts": len(requests),
        "request_rate": cfg.request_rate if math.isfinite(cfg.request_rate) else "inf",
        "burstiness": cfg.burstiness,
        "max_concurrency": cfg.max_concurrency,
        "input_len": cfg.input_len if cfg.prompts is None and not cfg.prompts_file else None,
        "output_len": cfg.output_len,
        "ignore_eos": cfg.ignore_eos,
        "temperature": cfg.temperature,
        "reward_weights": cfg.reward_weights,
        "random_weights": {k: list(v) for k, v in (cfg.random_weights or {}).items()} or None,
        **compute_metrics(records, duration, cfg.percentiles),
        "input_lens": [r.prompt_len for r in records],
        "output_lens": [r.output_tokens if r.success else 0 for r in records],
        "ttfts": [r.ttft for r in records],
        "itls": [r.itl for r in records],
        "e2els": [r.latency for r in records],
        # Streamed chunks per request: fewer than output_lens when the server bundles
        # tokens (then ITL/TPOT understate per-token latency, as in vLLM's bench).
        "chunks": [1 + len(r.itl) if r.success else 0 for r in records],
        "request_weights": [r.reward_weights for r in records],
        "errors": [r.error for r in records],
    }
    chunks = sum(result["chunks"])
    result["tokens_per_chunk"] = result["total_output_tokens"] / chunks if chunks else 0.0
    return result


async def run_sweep(
    cfg: LoadConfig,
    rates: Sequence[float] | None = None,
    concurrencies: Sequence[int] | None = None,
    tokenizer=None,
) -> list[dict[str, Any]]:
    """One run per request rate or per concurrency, same requests each time."""
    if tokenizer is None and cfg.tokenizer:
        tokenizer = load_tokenizer(cfg.tokenizer)
    if rates:
        runs = [dataclasses.replace(cfg, request_rate=r) for r in rates]
    elif concurrencies:
        runs = [dataclasses.replace(cfg, max_concurrency=c) for c in concurrencies]
    else:
        runs = [cfg]
    return [await run_benchmark(run, tokenizer) for run in runs]


# ---------------------------------------------------------------- reporting


def format_result(result: dict[str, Any]) -> str:
    """A text block laid out as ``vllm bench serve`` prints it."""
    lines = ["{s:{c}^{n}}".format(s=" Serving Benchmark Result ", n=50, c="=")]

    def row(name: str, value, fmt: str = "") -> None:
        lines.append(f"{name:<40} {value:{fmt}}")

    row("Successful requests:", result["completed"])
    row("Failed requests:", result["failed"])
    if result.get("max_concurrency") is not None:
        row("Maximum request concurrency:", result["max_concurrency"])
    if result.get("request_rate") not in (None, "inf"):
        row("Request rate configured (RPS):", result["request_rate"], ".2f")
    row("Benchmark duration (s):", result["duration"], ".2f")
    row("Total input tokens:", result["total_input_tokens"])
    row("Total generated tokens:", result["total_output_tokens"])
    row("Request throughput (req/s):", result["request_throughput"], ".2f")
    row("Output token throughput (tok/s):", result["output_throughput"], ".2f")
    row("Peak output token throughput (tok/s):", result["max_output_tokens_per_s"], ".2f")
    row("Peak concurrent requests:", result["max_concurrent_requests"], ".2f")
    row("Total token throughput (tok/s):", result["total_token_throughput"], ".2f")
    if "tokens_per_chunk" in result:
        row("Tokens per streamed chunk:", result["tokens_per_chunk"], ".2f")
    titles = {
        "ttft": ("Time to First Token", "TTFT"),
        "tpot": ("Time per Output Token (excl. 1st token)", "TPOT"),
        "itl": ("Inter-token Latency", "ITL"),
        "e2el": ("End-to-end Latency", "E2EL"),
    }
    for key, (title, short) in titles.items():
        lines.append("{s:{c}^{n}}".format(s=title, n=50, c="-"))
        row(f"Mean {short} (ms):", result[f"mean_{key}_ms"], ".2f")
        row(f"Median {short} (ms):", result[f"median_{key}_ms"], ".2f")
        for k in result:
            if k.startswith("p") and k.endswith(f"_{key}_ms"):
                row(f"P{k[1:].split('_')[0]} {short} (ms):", result[k], ".2f")
    lines.append("=" * 50)
    failed = [e for e in result.get("errors", []) if e]
    for i, err in enumerate(failed[:5]):
        lines.append(f"error {i}: {err}")
    return "\n".join(lines)


def plot_series(series: dict[str, list[dict[str, Any]]], path: str | Path, title: str = "") -> Path:
    """Latency vs output throughput, one line per series, one point per run;
    points are labelled by their concurrency or request rate."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    panels = [("ttft", "TTFT"), ("tpot", "TPOT"), ("itl", "ITL"), ("e2el", "E2E latency")]
    for ax, (key, name) in zip(axes.flat, panels, strict=True):
        for label, runs in series.items():
            xs = [r["output_throughput"] for r in runs]
            line = ax.plot(xs, [r[f"median_{key}_ms"] for r in runs], "o-", label=f"{label}")
            ax.plot(
                xs,
                [r.get(f"p99_{key}_ms", math.nan) for r in runs],
                "x--",
                color=line[0].get_color(),
                alpha=0.6,
            )
            for r, x in zip(runs, xs, strict=True):
                tag = r.get("max_concurrency")
                tag = f"c{tag}" if tag else f"r{r.get('request_rate')}"
                ax.annotate(tag, (x, r[f"median_{key}_ms"]), fontsize=7)
        ax.set_xlabel("output throughput (tok/s)")
        ax.set_ylabel(f"{name} (ms): median o-, p99 x--")
        ax.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=8)
    fig.suptitle(title or "latency vs throughput")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ---------------------------------------------------------------- CLI


def add_arguments(p: argparse.ArgumentParser) -> None:
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
        path = Path(args.result_file)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results if len(results) > 1 else results[0], indent=1))
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
