"""The OpenAI-compatible server: a real `genarm serve` process, the official SDK."""

from __future__ import annotations

import asyncio
import json
import shutil
import time

import httpx
import openai
import pytest
import torch

from genarm.engine import start_phases
from genarm.live_server import LiveServer
from genarm.reference_decoder import GenARMReference
from genarm.tiny_models import tiny_config_dict

from conftest import TINY_SERVER_API_KEY, TINY_SERVER_AUTH, TINY_SERVER_CONTEXT
from support import chat_prompt_ids, strict_json

API_KEY = TINY_SERVER_API_KEY
AUTH = TINY_SERVER_AUTH
QUESTION = "Tell me a short story about a dragon."
CHAT = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
LONG_PROMPT = "word " * (3 * TINY_SERVER_CONTEXT)  # well past the context


@pytest.fixture(scope="module")
def server(tiny_server):
    return tiny_server


@pytest.fixture(scope="module")
def sdk(server):
    return openai.OpenAI(base_url=server.base_url, api_key=API_KEY, max_retries=0)


@pytest.fixture(scope="module")
def model_id(sdk):
    return sdk.models.list().data[0].id


def chat(sdk, model_id, weights, **kw):
    kw = {"max_tokens": 16, "temperature": 0, **kw}
    return sdk.chat.completions.create(
        model=model_id,
        messages=[{"role": "user", "content": QUESTION}],
        extra_body={"reward_weights": weights},
        **kw,
    )


def test_health_503_while_loading_then_200(server):
    health, chat = server.while_loading
    assert health.status_code == 503 and health.json()["status"] == "loading"
    # Which phase the start is in, once the loader has recorded its first one.
    assert set(health.json()) <= {"status", "phase", "phase_seconds", "detail"}
    assert health.json().get("phase", "tokenizer") in start_phases.PHASES
    assert health.headers["retry-after"]
    assert chat.status_code == 503, chat.text
    assert chat.json()["error"]["type"] == "service_unavailable_error"
    assert chat.headers["retry-after"]
    assert server.health_statuses[-1] == 200
    # Start-up progress is logged, each phase with its time, the worker's included.
    (ready,) = [line for line in server.log(tail=None).splitlines() if "Engine ready in" in line]
    for phase in set(start_phases.PHASES) - {"compiling"}:  # tiny_config_dict is eager
        assert f"{phase} " in ready, ready


def test_health_and_models(server):
    assert httpx.get(f"{server.url}/health").json() == {"status": "ok"}
    models = httpx.get(f"{server.base_url}/models", headers=AUTH).json()
    entry, *reward_cards = models["data"]  # the generating model first
    assert [card["type"] for card in reward_cards] == ["reward_model"] * 2
    assert models["object"] == "list" and entry["object"] == "model"
    assert [a["name"] for a in entry["arms"]] == ["arm_a", "arm_b"]
    for arm in entry["arms"]:
        assert set(arm) == {"name", "description", "default_weight", "min_weight", "max_weight"}
        assert arm["min_weight"] == -5.0 and arm["max_weight"] == 5.0


def test_sdk_sync_weights_change_text_and_zero_is_base(sdk, model_id, tiny_models):
    texts = {}
    for weights in ({"arm_a": 0, "arm_b": 0}, {"arm_a": 2.0}, {"arm_b": -2.0}):
        response = chat(sdk, model_id, weights)
        texts[json.dumps(weights)] = response.choices[0].message.content
        assert response.model_extra["reward_weights"] == {"arm_a": 0.0, "arm_b": 0.0, **weights}
        assert response.usage.completion_tokens == 16
        assert response.choices[0].finish_reason == "length"
    assert len(set(texts.values())) == 3

    ids = chat_prompt_ids(tiny_models["base"], QUESTION)
    base_tokens = GenARMReference(str(tiny_models["base"]), []).greedy(ids, [], 16)
    from transformers import AutoTokenizer

    base_text = AutoTokenizer.from_pretrained(tiny_models["base"]).decode(base_tokens)
    assert texts[json.dumps({"arm_a": 0, "arm_b": 0})] == base_text


def test_sdk_sync_completions(sdk, model_id):
    a = sdk.completions.create(
        model=model_id,
        prompt=["Once upon", "The license"],
        max_tokens=8,
        temperature=0,
        extra_body={"reward_weights": {"arm_a": 1.5}},
    )
    b = sdk.completions.create(
        model=model_id, prompt=["Once upon", "The license"], max_tokens=8, temperature=0
    )
    assert [c.index for c in a.choices] == [0, 1]
    assert [c.text for c in a.choices] != [c.text for c in b.choices]
    assert a.usage.completion_tokens == 16
    assert a.model_extra["reward_weights"]["arm_a"] == 1.5


def test_sdk_sync_streaming_equals_non_streaming(sdk, model_id):
    weights = {"arm_b": 1.5}
    whole = chat(sdk, model_id, weights, max_tokens=10)
    pieces, echoed, usage, finish = [], [], None, None
    for chunk in chat(
        sdk, model_id, weights, max_tokens=10, stream=True, stream_options={"include_usage": True}
    ):
        echoed.append(chunk.model_extra["reward_weights"])
        if chunk.choices:
            pieces.append(chunk.choices[0].delta.content or "")
            finish = chunk.choices[0].finish_reason or finish
        usage = chunk.usage or usage
    assert "".join(pieces) == whole.choices[0].message.content
    assert finish == "length" and usage.completion_tokens == 10
    assert echoed and all(e == {"arm_a": 0.0, "arm_b": 1.5} for e in echoed)


def test_n_choices_for_several_prompts(sdk, model_id, server):
    ttft_before = server.metric("genarm_time_to_first_token_seconds_count") or 0
    response = sdk.completions.create(
        model=model_id,
        prompt=["Once upon", "The license"],
        n=2,
        max_tokens=5,
        temperature=0.8,
        seed=3,
        extra_body={"reward_weights": {"arm_a": -1.0}},
    )
    assert [c.index for c in response.choices] == [0, 1, 2, 3]
    assert all(c.finish_reason in ("stop", "length") for c in response.choices)
    assert response.usage.completion_tokens <= 4 * 5
    assert response.usage.total_tokens == (
        response.usage.prompt_tokens + response.usage.completion_tokens
    )
    # A non-streamed request is timed too: one time-to-first-token observation.
    assert server.metric("genarm_time_to_first_token_seconds_count") == ttft_before + 1


def test_sdk_async_streaming_equals_non_streaming(server, model_id):
    async def run():
        client = openai.AsyncOpenAI(base_url=server.base_url, api_key=API_KEY, max_retries=0)
        weights = {"arm_a": 1.0, "arm_b": 0.5}
        whole = await client.chat.completions.create(
            model=model_id,
            messages=[{"role": "user", "content": QUESTION}],
            max_tokens=12,
            temperature=0,
            extra_body={"reward_weights": weights},
        )
        stream = await client.chat.completions.create(
            model=model_id,
            messages=[{"role": "user", "content": QUESTION}],
            max_tokens=12,
            temperature=0,
            extra_body={"reward_weights": weights},
            stream=True,
            stream_options={"include_usage": True},
        )
        pieces, usage, echoed = [], None, []
        async for chunk in stream:
            echoed.append(chunk.model_extra["reward_weights"])
            if chunk.choices:
                pieces.append(chunk.choices[0].delta.content or "")
            if chunk.usage:
                usage = chunk.usage
        text_stream = await client.completions.create(
            model=model_id, prompt="Once upon", max_tokens=6, temperature=0, stream=True
        )
        text = "".join([c.choices[0].text async for c in text_stream if c.choices])
        return whole, "".join(pieces), usage, echoed, text

    whole, streamed, usage, echoed, text = asyncio.run(run())
    assert streamed == whole.choices[0].message.content
    assert usage.completion_tokens == 12 and usage.prompt_tokens == whole.usage.prompt_tokens
    assert all(e == {"arm_a": 1.0, "arm_b": 0.5} for e in echoed)
    assert len(text) > 0


@pytest.fixture(scope="module")
def reference(tiny_models):
    return GenARMReference(
        str(tiny_models["base"]), [str(tiny_models["arm_a"]), str(tiny_models["arm_b"])]
    )


@pytest.fixture(scope="module")
def tokenizer(tiny_models):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_models["base"])


def test_logprobs_equal_reference(sdk, model_id, tiny_models, reference):
    weights = {"arm_a": 1.5, "arm_b": -0.5}
    response = chat(sdk, model_id, weights, max_tokens=4, logprobs=True, top_logprobs=5)
    content = response.choices[0].logprobs.content
    ids = chat_prompt_ids(tiny_models["base"], QUESTION)
    tokens = reference.greedy(ids, [1.5, -0.5], 4)
    for pos in range(4):
        expected = reference.next_token_logprobs(ids + tokens[:pos], [1.5, -0.5])
        assert content[pos].logprob == pytest.approx(float(expected[tokens[pos]]), abs=1e-4)
        top = sorted((t.logprob for t in content[pos].top_logprobs), reverse=True)
        assert top == pytest.approx(expected.topk(5).values.tolist(), abs=1e-4)


def test_sampled_logprobs_are_the_guided_distribution(
    sdk, model_id, tiny_models, reference, tokenizer
):
    """At temperature 1 and top_p 1 the reported logprobs are the distribution the
    tokens were drawn from: log_softmax(log p_base + sum_i a_i log p_arm_i)."""
    weights = [2.0, 1.0]
    response = chat(
        sdk,
        model_id,
        {"arm_a": 2.0, "arm_b": 1.0},
        max_tokens=4,
        temperature=1.0,
        top_p=1.0,
        seed=7,
        logprobs=True,
        top_logprobs=5,
    )
    content = response.choices[0].logprobs.content
    prefix = chat_prompt_ids(tiny_models["base"], QUESTION)
    checked = 0
    for entry in content:
        expected = reference.next_token_logprobs(prefix, weights)
        top = sorted((t.logprob for t in entry.top_logprobs), reverse=True)
        assert top == pytest.approx(expected.topk(5).values.tolist(), abs=1e-4)
        # The sampled token: an id whose reference logprob is the reported one (and,
        # among those, whose text is the reported text). Follow it while unambiguous.
        near = [i for i in range(len(expected)) if abs(float(expected[i]) - entry.logprob) < 1e-4]
        assert near, f"{entry.token!r}: logprob {entry.logprob} is not in the reference"
        named = [i for i in near if tokenizer.decode([i]) == entry.token] or near
        checked += 1
        if len(named) != 1:
            break
        prefix = prefix + named
    assert checked >= 1


def test_logprob_bytes_are_the_tokens_raw_bytes(sdk, model_id, tokenizer):
    """A quarter of the tiny vocabulary is single bytes, so a hot sample's top-20 lists
    are full of partial characters. Each entry carries its token's raw bytes (not []
    or the encoding of U+FFFD) and a non-empty name: vLLM's decoded text, or for a
    token that is part of a character, the tokenizer's decoding of the id (U+FFFD),
    as vLLM names top alternatives. The chosen tokens' bytes joined are the text."""
    from genarm.server.token_bytes import TokenBytes

    table = TokenBytes(tokenizer)
    vocabulary = {table.raw(token_id) for token_id in range(len(tokenizer))}
    response = chat(
        sdk, model_id, {"arm_a": 1.0}, max_tokens=24, temperature=1.5, seed=3, logprobs=True,
        top_logprobs=20,
    )  # fmt: skip
    content = response.choices[0].logprobs.content
    partial = 0
    for entry in [e for c in content for e in (c, *c.top_logprobs)]:
        raw = bytes(entry.bytes)
        assert entry.token and raw in vocabulary, entry
        try:
            raw.decode()
        except UnicodeDecodeError:
            partial += 1
        if entry.token == "\ufffd":
            with pytest.raises(UnicodeDecodeError):
                raw.decode()
    assert partial > 0
    joined = b"".join(bytes(c.bytes) for c in content).decode("utf-8", errors="replace")
    assert joined == response.choices[0].message.content


def test_logprobs_of_excluded_tokens_are_valid_json(server):
    """top_k / a tiny top_p leave most tokens at -inf: reported as OpenAI and vLLM do
    (-9999.0), in a response and in a stream, never as a bare -Infinity or a 500."""
    url = f"{server.base_url}/chat/completions"
    for extra in ({"top_k": 3}, {"top_p": 0.01}, {"top_k": 2, "repetition_penalty": 2.0}):
        body = {**CHAT, "max_tokens": 3, "logprobs": True, "top_logprobs": 10, **extra}
        reply = httpx.post(url, json=body, headers=AUTH, timeout=60)
        assert reply.status_code == 200, reply.text
        entries = strict_json(reply.text)["choices"][0]["logprobs"]["content"]
        tops = [t["logprob"] for e in entries for t in e["top_logprobs"]]
        assert -9999.0 in tops and all(t >= -9999.0 for t in tops), extra
        with httpx.stream(
            "POST", url, json={**body, "stream": True}, headers=AUTH, timeout=60
        ) as streamed:
            assert streamed.status_code == 200
            lines = [line[6:] for line in streamed.iter_lines() if line.startswith("data: ")]
        assert lines[-1] == "[DONE]"
        events = [strict_json(line) for line in lines[:-1]]
        assert all("error" not in e for e in events)
    completion = httpx.post(
        f"{server.base_url}/completions",
        json={"prompt": "hi", "max_tokens": 3, "top_k": 2, "logprobs": 5},
        headers=AUTH,
        timeout=60,
    )
    assert completion.status_code == 200, completion.text
    tops = strict_json(completion.text)["choices"][0]["logprobs"]["top_logprobs"]
    assert -9999.0 in [v for position in tops for v in position.values()]


def test_research_temperature_maps_to_t_times_one_plus_sum_alpha(
    sdk, model_id, tiny_models, reference
):
    """The GenARM authors' model_arithmetic divides the combined logits by 1 + sum(a),
    then by its temperature T: that is this server at temperature T * (1 + sum(a))."""
    alphas = {"arm_a": 1.0, "arm_b": 0.5}
    research_t = 0.8
    response = chat(
        sdk,
        model_id,
        alphas,
        max_tokens=1,
        temperature=research_t * (1 + sum(alphas.values())),  # 2.0, the cap
        seed=5,
        logprobs=True,
        top_logprobs=5,
    )
    served = sorted(t.logprob for t in response.choices[0].logprobs.content[0].top_logprobs)
    ids = chat_prompt_ids(tiny_models["base"], QUESTION)
    # The research formula, from each HF model's own log-probabilities.
    base_logprobs, *arm_logprobs = reference.model_logprobs(ids)
    combined = base_logprobs.clone()
    for alpha, arm in zip(alphas.values(), arm_logprobs, strict=True):
        combined += alpha * arm
    research = torch.log_softmax(combined / (1 + sum(alphas.values())) / research_t, dim=-1)
    assert served == pytest.approx(sorted(research.topk(5).values.tolist()), abs=1e-4)
    # A research setting that maps above the cap is refused with the mapping.
    with pytest.raises(openai.BadRequestError) as err:
        chat(sdk, model_id, {"arm_a": 2.0}, temperature=3.0)
    message = err.value.body["message"]
    assert "T x (1 + sum(a))" in message and "up to 0.6667" in message


BAD = "invalid_request_error"
ERROR_CASES = [
    # (name, path, body, headers, status, type, param)
    (
        "unknown arm",
        "chat",
        {**CHAT, "reward_weights": {"nope": 1}},
        AUTH,
        400,
        "invalid_request_error",
        "reward_weights.nope",
    ),
    (
        "nan weight",
        "chat",
        {**CHAT, "reward_weights": {"arm_a": float("nan")}},
        AUTH,
        400,
        "invalid_request_error",
        "reward_weights.arm_a",
    ),
    (
        "inf weight",
        "chat",
        {**CHAT, "reward_weights": {"arm_b": float("inf")}},
        AUTH,
        400,
        "invalid_request_error",
        "reward_weights.arm_b",
    ),
    (
        "weight out of range",
        "chat",
        {**CHAT, "reward_weights": {"arm_a": 9}},
        AUTH,
        400,
        "invalid_request_error",
        "reward_weights.arm_a",
    ),
    (
        "weight wrong type",
        "chat",
        {**CHAT, "reward_weights": {"arm_a": "high"}},
        AUTH,
        400,
        "invalid_request_error",
        "reward_weights.arm_a",
    ),
    (
        "weights not an object",
        "chat",
        {**CHAT, "reward_weights": [1, 2]},
        AUTH,
        400,
        "invalid_request_error",
        "reward_weights",
    ),
    (
        "max_tokens zero",
        "chat",
        {**CHAT, "max_tokens": 0},
        AUTH,
        400,
        "invalid_request_error",
        "max_tokens",
    ),
    (
        "max_tokens wrong type",
        "completions",
        {"prompt": "hi", "max_tokens": "ten"},
        AUTH,
        400,
        "invalid_request_error",
        "max_tokens",
    ),
    (
        "temperature wrong type",
        "chat",
        {**CHAT, "temperature": "hot"},
        AUTH,
        400,
        "invalid_request_error",
        "temperature",
    ),
    (
        "prompt too long",
        "completions",
        {"prompt": LONG_PROMPT},
        AUTH,
        400,
        "invalid_request_error",
        "prompt",
    ),
    (
        "chat too long",
        "chat",
        {"messages": [{"role": "user", "content": LONG_PROMPT}]},
        AUTH,
        400,
        "invalid_request_error",
        "messages",
    ),
    ("n zero", "chat", {**CHAT, "n": 0}, AUTH, 400, "invalid_request_error", "n"),
    ("n too large", "chat", {**CHAT, "n": 99}, AUTH, 400, "invalid_request_error", "n"),
    (
        "tools",
        "chat",
        {**CHAT, "tools": [{"type": "function", "function": {"name": "f"}}]},
        AUTH,
        400,
        "invalid_request_error",
        "tools",
    ),
    (
        "response_format",
        "chat",
        {**CHAT, "response_format": {"type": "json_object"}},
        AUTH,
        400,
        "invalid_request_error",
        "response_format",
    ),
    ("missing messages", "chat", {"max_tokens": 2}, AUTH, 400, "invalid_request_error", "messages"),
    (
        "bad role",
        "chat",
        {"messages": [{"role": "robot", "content": "x"}]},
        AUTH,
        400,
        "invalid_request_error",
        "messages.0.role",
    ),
    ("unknown model", "chat", {**CHAT, "model": "gpt-9"}, AUTH, 404, "not_found_error", "model"),
    ("n > 1 greedy", "chat", {**CHAT, "n": 2, "temperature": 0}, AUTH, 400, BAD, "n"),
    ("empty stop", "chat", {**CHAT, "stop": ["ok", ""]}, AUTH, 400, BAD, "stop"),
    ("seed overflow", "chat", {**CHAT, "seed": 2**70}, AUTH, 400, BAD, "seed"),
    ("temperature bool", "chat", {**CHAT, "temperature": True}, AUTH, 400, BAD, "temperature"),
    ("temperature range", "chat", {**CHAT, "temperature": 7}, AUTH, 400, BAD, "temperature"),
    ("stream wrong type", "chat", {**CHAT, "stream": "yes"}, AUTH, 400, BAD, "stream"),
    (
        "include_usage wrong type",
        "chat",
        {**CHAT, "stream": True, "stream_options": {"include_usage": 1}},
        AUTH,
        400,
        BAD,
        "stream_options.include_usage",
    ),
    (
        "top_logprobs range",
        "chat",
        {**CHAT, "logprobs": True, "top_logprobs": 21},
        AUTH,
        400,
        BAD,
        "top_logprobs",
    ),
    ("logprobs range", "completions", {"prompt": "hi", "logprobs": 99}, AUTH, 400, BAD, "logprobs"),
    (
        "max_completion_tokens zero",
        "chat",
        {**CHAT, "max_tokens": None, "max_completion_tokens": 0},
        AUTH,
        400,
        BAD,
        "max_completion_tokens",
    ),
    (
        "context overflow",
        "chat",
        {**CHAT, "max_tokens": TINY_SERVER_CONTEXT + 88},
        AUTH,
        400,
        BAD,
        "max_tokens",
    ),
    ("token id out of vocab", "completions", {"prompt": [1, 2, 10**6]}, AUTH, 400, BAD, "prompt"),
    ("tool_choice", "chat", {**CHAT, "tool_choice": "auto"}, AUTH, 400, BAD, "tool_choice"),
    ("functions", "chat", {**CHAT, "functions": [{"name": "f"}]}, AUTH, 400, BAD, "functions"),
    ("logit_bias", "chat", {**CHAT, "logit_bias": {"5": 10}}, AUTH, 400, BAD, "logit_bias"),
    (
        "image content",
        "chat",
        {
            "messages": [
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}
            ]
        },
        AUTH,
        400,
        BAD,
        "messages.0.content",
    ),
    ("body not an object", "chat", [1, 2], AUTH, 400, BAD, None),
    # Strings no tokenizer or UTF-8 writer takes: refused, naming the field.
    (
        "unpaired surrogate in content",
        "chat",
        {"messages": [{"role": "user", "content": "a\ud800b"}]},
        AUTH,
        400,
        BAD,
        "messages.0.content",
    ),
    (
        "unpaired surrogate in prompt",
        "completions",
        {"prompt": ["ok", "b\udfff"]},
        AUTH,
        400,
        BAD,
        "prompt.1",
    ),
    (
        "unpaired surrogate in an ARM name",
        "chat",
        {**CHAT, "reward_weights": {"\ud800": 1}},
        AUTH,
        400,
        BAD,
        "reward_weights.<key>",
    ),
    ("surrogate in stop", "chat", {**CHAT, "stop": ["\udc00"]}, AUTH, 400, BAD, "stop.0"),
    # Numbers beyond what the engine takes.
    (
        "weight beyond a float",
        "chat",
        {**CHAT, "reward_weights": {"arm_a": 10**400}},
        AUTH,
        400,
        BAD,
        "reward_weights.arm_a",
    ),
    (
        "weight beyond 64 bits",
        "chat",
        {**CHAT, "reward_weights": {"arm_b": -(2**70)}},
        AUTH,
        400,
        BAD,
        "reward_weights.arm_b",
    ),
    ("top_k beyond 64 bits", "chat", {**CHAT, "top_k": 2**70}, AUTH, 400, BAD, "top_k"),
    ("top_k beyond int32", "chat", {**CHAT, "top_k": 2**40}, AUTH, 400, BAD, "top_k"),
    (
        "max_tokens beyond int32",
        "completions",
        {"prompt": "hi", "max_tokens": 2**40},
        AUTH,
        400,
        BAD,
        "max_tokens",
    ),
    (
        "min_tokens beyond 64 bits",
        "chat",
        {**CHAT, "min_tokens": 2**64},
        AUTH,
        400,
        BAD,
        "min_tokens",
    ),
    (
        "temperature beyond a float",
        "chat",
        {**CHAT, "temperature": 10**400},
        AUTH,
        400,
        BAD,
        "temperature",
    ),
    ("top_p beyond a float", "chat", {**CHAT, "top_p": -(10**400)}, AUTH, 400, BAD, "top_p"),
    (
        "research temperature above the cap",
        "chat",
        {**CHAT, "temperature": 3, "reward_weights": {"arm_a": 2}},
        AUTH,
        400,
        BAD,
        "temperature",
    ),
    # More sequences than the server can ever hold (32 running + 256 waiting): not a 503.
    (
        "can never fit",
        "completions",
        {"prompt": ["hi"] * 20, "n": 16, "temperature": 1, "max_tokens": 2},
        AUTH,
        400,
        BAD,
        "n",
    ),
    ("missing key", "chat", CHAT, {}, 401, "authentication_error", None),
    (
        "wrong key",
        "chat",
        CHAT,
        {"Authorization": "Bearer nope"},
        401,
        "authentication_error",
        None,
    ),
    (
        "oversized body",
        "chat",
        {**CHAT, "user": "x" * 70000},
        AUTH,
        413,
        "invalid_request_error",
        None,
    ),
]


@pytest.mark.parametrize(
    ("path", "body", "headers", "status", "error_type", "param"),
    [case[1:] for case in ERROR_CASES],
    ids=[case[0] for case in ERROR_CASES],
)
def test_error_matrix(server, path, body, headers, status, error_type, param):
    url = f"{server.base_url}/{'chat/completions' if path == 'chat' else 'completions'}"
    headers = {**headers, "Content-Type": "application/json"}  # json.dumps keeps NaN/inf
    response = httpx.post(url, content=json.dumps(body), headers=headers, timeout=60)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["type"] == error_type and error["param"] == param
    assert error["message"]
    # The engine keeps serving.
    ok = httpx.post(f"{server.base_url}/chat/completions", json=CHAT, headers=AUTH, timeout=60)
    assert ok.status_code == 200, ok.text


def test_invalid_json_and_sdk_errors(server, sdk, model_id):
    response = httpx.post(
        f"{server.base_url}/chat/completions",
        content=b"{not json",
        headers={**AUTH, "Content-Type": "application/json"},
    )
    assert response.status_code == 400 and response.json()["error"]["type"]
    with pytest.raises(openai.BadRequestError) as err:
        chat(sdk, model_id, {"arm_a": 99})
    assert err.value.body["param"] == "reward_weights.arm_a"
    with pytest.raises(openai.NotFoundError) as err:
        sdk.chat.completions.create(model="gpt-9", messages=[{"role": "user", "content": "x"}])
    assert err.value.body["param"] == "model"


def test_oversized_chunked_body_is_413(server):
    """No Content-Length to go by: the limit holds as the body streams in."""

    def chunks():
        yield b'{"messages": [{"role": "user", "content": "'
        for _ in range(20):
            yield b"x" * 8192
        yield b'"}]}'

    response = httpx.post(
        f"{server.base_url}/chat/completions",
        content=chunks(),
        headers={**AUTH, "Content-Type": "application/json"},
    )
    assert response.status_code == 413, response.text
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_static_paths_that_cannot_exist_are_404(server):
    for name in ("a%00b", "x" * 5000, "..%2F..%2Fetc%2Fpasswd", "%ED%A0%80", "app.js%00.png"):
        reply = httpx.get(f"{server.url}/static/{name}")
        assert reply.status_code == 404, (name[:20], reply.text)
        assert strict_json(reply.text)["error"]["type"] == "not_found_error"


def test_head_works_where_get_does(server):
    for path in ("/", "/health", "/metrics", "/static/app.js"):
        get, head = httpx.get(f"{server.url}{path}"), httpx.head(f"{server.url}{path}")
        assert head.status_code == get.status_code == 200, path
        assert head.content == b""
    assert httpx.head(f"{server.base_url}/models", headers=AUTH).status_code == 200


def test_request_headers_are_bounded(server):
    reply = httpx.get(f"{server.url}/health", headers={"X-Big": "a" * 100_000})
    assert reply.status_code == 431
    assert strict_json(reply.text)["error"]["code"] == "headers_too_large"
    # Many small headers count the same; a normal request still works after.
    many = {f"X-H{i}": "v" * 100 for i in range(1000)}
    assert httpx.get(f"{server.url}/health", headers=many).status_code == 431
    assert httpx.get(f"{server.url}/health", headers={"X-Ok": "a" * 1000}).status_code == 200


def test_openapi_documents_what_the_server_sends(server):
    spec = httpx.get(f"{server.url}/openapi.json").json()
    for path in ("/v1/chat/completions", "/v1/completions"):
        responses = spec["paths"][path]["post"]["responses"]
        assert set(responses) == {"200", "400", "401", "404", "413", "431", "503"}, path
        assert "text/event-stream" in responses["200"]["content"]
        assert "Retry-After" in responses["503"]["headers"]
        assert "WWW-Authenticate" in responses["401"]["headers"]
        error_schema = responses["400"]["content"]["application/json"]["schema"]["$ref"]
        assert error_schema.endswith("/ErrorResponse")
    metrics = spec["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert list(metrics) == ["text/plain"]
    assert "503" in spec["paths"]["/health"]["get"]["responses"]
    assert "head" in spec["paths"]["/health"]
    assert "422" not in json.dumps(spec["paths"])


def test_openapi_describes_reward_weights_and_arms(server):
    """The GenARM fields have a schema: on both completion requests and responses,
    on the stream chunks, and the ARMs on /v1/models."""
    spec = httpx.get(f"{server.url}/openapi.json").json()
    schemas = spec["components"]["schemas"]

    def schema_of(ref: str) -> dict:
        return schemas[ref.rsplit("/", 1)[-1]]

    routes = {
        "/v1/chat/completions": ("ChatCompletionRequest", "ChatCompletionChunk"),
        "/v1/completions": ("CompletionRequest", "CompletionChunk"),
    }
    for path, (request_name, chunk_name) in routes.items():
        operation = spec["paths"][path]["post"]
        request = schema_of(
            operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        )
        assert request["title"] == request_name
        assert "reward_weights" in request["properties"], path
        ok = operation["responses"]["200"]["content"]
        response = schema_of(ok["application/json"]["schema"]["$ref"])
        weights = response["properties"]["reward_weights"]
        assert weights["type"] == "object" and weights["additionalProperties"]["type"] == "number"
        assert "reward_weights" in response["required"], path
        assert "reward_weights" in schemas[chunk_name]["properties"], path
        assert chunk_name in ok["text/event-stream"]["schema"]["description"]
    models = spec["paths"]["/v1/models"]["get"]["responses"]["200"]["content"]
    items = schema_of(models["application/json"]["schema"]["$ref"])["properties"]["data"]["items"]
    model_card, reward_card = (schema_of(option["$ref"]) for option in items["anyOf"])
    assert reward_card["title"] == "RewardModelCard"  # then the reward models (/v1/rewards)
    card = model_card
    arm = schema_of(card["properties"]["arms"]["items"]["$ref"])
    assert set(arm["properties"]) == {
        "name",
        "default_weight",
        "min_weight",
        "max_weight",
        "description",
    }


def test_api_keys(server, model_id):
    url = f"{server.base_url}/models"
    assert httpx.get(url).status_code == 401
    assert httpx.get(url).headers["www-authenticate"].startswith("Bearer")
    assert httpx.get(url, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert httpx.get(url, headers={"Authorization": API_KEY}).status_code == 401  # no scheme
    assert httpx.get(url, headers=AUTH).status_code == 200
    # Open without a key: health checks, scraping, and the web page.
    for path in ("/health", "/metrics", "/"):
        assert httpx.get(f"{server.url}{path}").status_code == 200, path
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=server.base_url, api_key="wrong", max_retries=0).models.list()


def test_sixteen_concurrent_requests_echo_their_weights(server, model_id):
    async def one(client, i):
        weights = {"arm_a": round(-2 + i * 0.25, 2), "arm_b": round(i * 0.1, 2)}
        response = await client.chat.completions.create(
            model=model_id,
            messages=[{"role": "user", "content": f"Question {i}?"}],
            max_tokens=8,
            temperature=0.7,
            seed=i,
            extra_body={"reward_weights": weights},
        )
        return weights, response

    async def run():
        client = openai.AsyncOpenAI(base_url=server.base_url, api_key=API_KEY, max_retries=0)
        return await asyncio.gather(*(one(client, i) for i in range(16)))

    for weights, response in asyncio.run(run()):
        assert response.model_extra["reward_weights"] == weights
        assert response.usage.completion_tokens == 8


def test_metrics_exposition(server):
    text = httpx.get(f"{server.url}/metrics").text
    for name in (
        "genarm_http_requests_total",
        "genarm_prompt_tokens_total",
        "genarm_completion_tokens_total",
        "genarm_time_to_first_token_seconds_bucket",
        "genarm_time_per_output_token_seconds_bucket",
        "genarm_requests_running",
        "genarm_requests_waiting",
        'genarm_reward_weight_count{arm="arm_a"}',
    ):
        assert name in text, name
    assert 'route="/v1/chat/completions",status="400"' in text


@pytest.mark.engine
def test_full_queue_answers_503_with_retry_after(tiny_models, tmp_path):
    """Also: a server without ARMs, and API keys from GENARM_API_KEYS.

    The order is fixed by states, not by timing: two 8,000-token requests (minutes of
    engine steps) fill the one engine slot and the one waiting place (the server's own
    gauges say so, read without blocking the loop that carries the requests), then the
    third is refused; the two are dropped after (their clients hang up).
    """
    config = tiny_config_dict(tiny_models, arms=(), max_num_seqs=1, max_model_len=8192)
    config["server"] = {"max_waiting_requests": 1}
    env = {"GENARM_API_KEYS": "env-key-1, env-key-2"}
    auth = {"Authorization": "Bearer env-key-2"}
    long = {**CHAT, "max_tokens": 8000, "ignore_eos": True}

    def state(task: asyncio.Task) -> str:
        """Where a long request stands, for a failure message (the server log's tail
        holds only the gauge polls)."""
        if not task.done():
            return "in flight"
        if task.cancelled() or task.exception() is not None:
            return "cancelled" if task.cancelled() else repr(task.exception())
        return f"{task.result().status_code} {task.result().text[:300]}"

    async def wait_for_gauge(live, client, name: str, tasks: dict) -> None:
        deadline = time.monotonic() + 120
        while await live.ametric(client, name) != 1:
            states = {k: state(t) for k, t in tasks.items()}
            assert time.monotonic() < deadline, f"{name} never reached 1 ({states}):\n{live.log()}"
            await asyncio.sleep(0.02)

    async def run(live):
        async with httpx.AsyncClient(timeout=120, headers=auth) as client:
            url = f"{live.url}/v1/chat/completions"
            holder = asyncio.create_task(client.post(url, json=long))
            await wait_for_gauge(live, client, "genarm_requests_running", {"holder": holder})
            waiter = asyncio.create_task(client.post(url, json=long))
            tasks = {"holder": holder, "waiter": waiter}
            await wait_for_gauge(live, client, "genarm_requests_waiting", tasks)
            third = await client.post(url, json=CHAT)
            for task in (holder, waiter):
                assert not task.done()  # both still in flight when the third came
                task.cancel()
            # Their clients hung up: the server frees both (the state the next call needs).
            deadline = time.monotonic() + 120
            while await live.ametric(client, "genarm_requests_running") != 0:
                assert time.monotonic() < deadline, f"not freed:\n{live.log()}"
                await asyncio.sleep(0.02)
        return third

    with LiveServer(config, env=env, workdir=tmp_path) as live:
        third = asyncio.run(run(live))
        assert third.status_code == 503, third.text
        assert third.headers["retry-after"] == "1"
        assert third.json()["error"]["type"] == "service_unavailable_error"
        url = f"{live.url}/v1/chat/completions"
        assert httpx.post(url, json=CHAT, timeout=60).status_code == 401
        ok = httpx.post(url, json=CHAT, headers=auth, timeout=60)  # the slot is free again
        assert ok.status_code == 200, ok.text
        assert ok.json()["reward_weights"] == {}
        unknown = httpx.post(url, json={**CHAT, "reward_weights": {"arm_a": 1}}, headers=auth)
        assert (
            unknown.status_code == 400
            and unknown.json()["error"]["param"] == "reward_weights.arm_a"
        )
        models = httpx.get(f"{live.url}/v1/models", headers=auth).json()
        assert models["data"][0]["arms"] == []


@pytest.mark.engine
def test_base_without_chat_template_is_a_clear_startup_error(tiny_models, tmp_path):
    base = tmp_path / "base"
    shutil.copytree(tiny_models["base"], base)
    (base / "chat_template.jinja").unlink(missing_ok=True)
    tok_config = json.loads((base / "tokenizer_config.json").read_text())
    tok_config.pop("chat_template", None)
    (base / "tokenizer_config.json").write_text(json.dumps(tok_config))
    config = tiny_config_dict({**tiny_models, "base": base}, arms=())
    live = LiveServer(config, workdir=tmp_path / "server")
    try:
        live.start(wait=False)
        assert live.wait_exit(timeout=120) != 0
        assert "no chat template" in live.log()
    finally:
        live.stop()


@pytest.mark.engine
def test_dead_engine_answers_503_and_the_server_exits(tiny_models, tmp_path):
    """An engine that dies (here: its processes killed) is never a silent 500: /health
    says failed, requests get a 503 naming it, and the server exits non-zero so that a
    supervisor restarts it."""
    config = tiny_config_dict(tiny_models, arms=("arm_a",))
    # The watchdog off: the request below is what stops the server, not a race with it.
    config["server"] = {"engine_watchdog_seconds": 0}
    live = LiveServer(config, workdir=tmp_path)
    try:
        live.start()
        url = f"{live.base_url}/chat/completions"
        assert httpx.post(url, json=CHAT, timeout=60).status_code == 200
        kill_engine_processes(live)
        health = None
        for _ in range(240):  # vLLM's monitor notices the dead engine process
            health = httpx.get(f"{live.url}/health", timeout=10)
            if health.status_code == 503:
                break
            time.sleep(0.25)
        assert health.status_code == 503 and health.json()["status"] == "failed"
        reply = httpx.post(url, json=CHAT, timeout=60)
        assert reply.status_code == 503, reply.text
        error = reply.json()["error"]
        assert error["code"] == "engine_dead" and "engine has stopped" in error["message"]
        assert live.wait_exit(timeout=60) == 1
    finally:
        live.stop()


@pytest.mark.engine
def test_engine_that_dies_while_idle_stops_the_server(tiny_models, tmp_path):
    """No request after the engine dies: the watchdog alone stops the server (exit
    1), so a replica that only gets health probes is restarted too."""
    config = tiny_config_dict(tiny_models, arms=("arm_a",))
    config["server"] = {"engine_watchdog_seconds": 0.2}
    live = LiveServer(config, workdir=tmp_path)
    try:
        live.start()
        kill_engine_processes(live)
        assert live.wait_exit(timeout=120) == 1
        assert "engine has stopped" in live.log()
    finally:
        live.stop()


def kill_engine_processes(live: LiveServer) -> None:
    """SIGKILL every process the server started (vLLM's engine core and workers)."""
    import signal

    import psutil

    for child in psutil.Process(live.process.pid).children(recursive=True):
        child.send_signal(signal.SIGKILL)
