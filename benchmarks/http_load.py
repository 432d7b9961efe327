"""HTTP load against any OpenAI-compatible endpoint (chat or completions): the
run's configuration, its requests, one streamed request timed chunk by chunk,
and the open-loop run (Poisson arrivals, optionally closed by a concurrency cap).

Arrivals are a Poisson process at ``request_rate`` (``inf``: all at once;
``burstiness`` != 1 gives gamma intervals, as in vLLM), optionally capped by
``max_concurrency`` (a client-side semaphore; its queueing time is not part
of the latencies, as in vLLM). Fixed output lengths: every request asks for
``max_tokens = output_len`` with ``ignore_eos: true`` and ``min_tokens`` (vLLM's
extensions, which the GenARM server implements); the counts reported are the
server's own (``usage`` of the final stream chunk), never the requested ones.

``await run_benchmark(LoadConfig(...))`` returns the result dict: the metrics of
``benchmarks.latency_stats`` plus the per-request lists.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import dataclasses
import json
import math
import random
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from benchmarks.latency_stats import PERCENTILES, RequestRecord, compute_metrics
from benchmarks.prompts import load_prompts_file, load_tokenizer, synthetic_prompts


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


def build_requests(cfg: LoadConfig, tokenizer: Any = None) -> list[SampleRequest]:
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


# ---------------------------------------------------------------- one request


def sse_events(buffer: str) -> tuple[list[str], str]:
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
    """The JSON body of one streamed request (usage included in the last chunk)."""
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
    session: Any, url: str, payload: dict[str, Any], headers: dict[str, str]
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
                events, buffer = sse_events(buffer)
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
    """The ``/v1`` root of a server given as its root or its ``/v1``."""
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


async def fetch_model_id(session: Any, root: str, headers: dict[str, str]) -> str:
    """The first model id of ``/v1/models``."""
    async with session.get(f"{root}/models", headers=headers) as response:
        response.raise_for_status()
        return (await response.json())["data"][0]["id"]


async def run_benchmark(cfg: LoadConfig, tokenizer: Any = None) -> dict[str, Any]:
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
    tokenizer: Any = None,
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
