"""Smoke test of the load generator (benchmarks/load.py and the modules it drives:
http_load, latency_stats, reports) against a live tiny GenARM server: the metrics
exist and the counts add up (no speed assertions)."""

from __future__ import annotations

import asyncio
import json
import math
import sys
from pathlib import Path

import pytest

from genarm.clients.weight_args import WeightArgError, parse_reward_weights, parse_weight_ranges

# benchmarks/ is a folder of the repository, not an installed package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.http_load import LoadConfig, run_benchmark  # noqa: E402
from benchmarks.latency_stats import LATENCY_METRICS  # noqa: E402
from benchmarks.reports import format_result, plot_series  # noqa: E402

from conftest import TINY_SERVER_API_KEY  # noqa: E402

NUM, CONCURRENCY, OUTPUT_LEN = 6, 2, 8


@pytest.fixture(scope="module")
def server(tiny_server):
    return tiny_server


def _check_counts(result: dict, sent: int) -> None:
    assert result["completed"] + result["failed"] == sent == result["num_prompts"]
    assert result["total_output_tokens"] == sum(result["output_lens"])
    assert result["total_input_tokens"] == sum(
        n for n, e in zip(result["input_lens"], result["errors"], strict=True) if not e
    )
    for key in ("request_throughput", "output_throughput", "total_token_throughput"):
        assert math.isfinite(result[key]) and result[key] >= 0
    for metric in LATENCY_METRICS:
        for stat in ("mean", "median", "std", "p50", "p90", "p99"):
            assert math.isfinite(result[f"{stat}_{metric}_ms"])


def test_completions_fixed_lengths_and_random_weights(server, tiny_models, tmp_path):
    cfg = LoadConfig(
        base_url=server.url,
        api_key=TINY_SERVER_API_KEY,
        tokenizer=str(tiny_models["base"]),
        num_prompts=NUM,
        input_len=12,
        output_len=OUTPUT_LEN,
        max_concurrency=CONCURRENCY,
        random_weights={"arm_a": (-1.0, 2.0)},
        temperature=1.0,
        disable_tqdm=True,
    )
    result = asyncio.run(run_benchmark(cfg))
    _check_counts(result, NUM)
    assert result["failed"] == 0, result["errors"]
    # ignore_eos + min_tokens: every request has exactly the asked length (server's usage).
    assert result["output_lens"] == [OUTPUT_LEN] * NUM
    assert result["input_lens"] == [12] * NUM  # exact synthetic prompt lengths
    # TPOT/ITL exist per request: output_len - 1 gaps unless the server bundled chunks.
    assert all(1 <= len(itl) <= OUTPUT_LEN - 1 for itl in result["itls"])
    # vLLM's definition: requests active in the busiest one-second bucket.
    assert 1 <= result["max_concurrent_requests"] <= NUM
    # Seeded per-request weights within range, not all equal.
    weights = [w["arm_a"] for w in result["request_weights"]]
    assert all(-1.0 <= w <= 2.0 for w in weights) and len(set(weights)) > 1
    text = format_result(result)
    assert "Successful requests:" in text and "P99 TPOT (ms):" in text
    # JSON-serializable and plottable.
    json.dumps(result)
    png = plot_series({"tiny": [result]}, tmp_path / "plot.png")
    assert png.stat().st_size > 0


def test_chat_and_failed_requests_are_counted(server):
    # An unknown ARM is refused with a 400: failed requests, counted, not raised.
    bad = LoadConfig(
        base_url=server.url,
        api_key=TINY_SERVER_API_KEY,
        endpoint="chat",
        num_prompts=3,
        output_len=4,
        reward_weights={"no_such_arm": 1.0},
        num_warmups=0,
        disable_tqdm=True,
    )
    result = asyncio.run(run_benchmark(bad))
    _check_counts(result, 3)
    assert result["failed"] == 3 and result["total_output_tokens"] == 0
    assert all("400" in e for e in result["errors"])

    good = LoadConfig(
        base_url=server.url + "/v1",
        api_key=TINY_SERVER_API_KEY,
        endpoint="chat",
        num_prompts=4,
        output_len=OUTPUT_LEN,
        request_rate=50.0,
        reward_weights={"arm_a": 0.5},
        disable_tqdm=True,
    )
    result = asyncio.run(run_benchmark(good))
    _check_counts(result, 4)
    assert result["failed"] == 0 and result["output_lens"] == [OUTPUT_LEN] * 4


def test_weight_parsing():
    assert parse_reward_weights("a=1,b=-0.5") == {"a": 1.0, "b": -0.5}
    assert parse_weight_ranges("a:0:2") == {"a": (0.0, 2.0)}
    with pytest.raises(ValueError):
        parse_weight_ranges("a:2:0")
    # No weights given: no reward_weights field is sent.
    assert parse_reward_weights("") is None and parse_weight_ranges(None) is None
    for bad in ("a", "=1", "a=x", "a=nan", "a=inf"):
        with pytest.raises(WeightArgError):
            parse_reward_weights(bad)
