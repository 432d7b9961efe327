"""`genarm chat` and the Python client against a real server (one per module)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import openai
import pytest

from genarm.clients import Arm, AsyncGenARMClient, GenARMClient, reward_weights_of

from conftest import TINY_SERVER_API_KEY

API_KEY = TINY_SERVER_API_KEY
QUESTION = "Tell me about dragons."
GREEDY = {"temperature": 0.0, "max_tokens": 12}


@pytest.fixture(scope="module")
def server(tiny_server):
    return tiny_server


@pytest.fixture(scope="module")
def client(server):
    with GenARMClient(server.url, API_KEY, max_retries=0) as c:
        yield c


def answer(client: GenARMClient, messages: list[dict], weights: dict, **kw) -> str:
    """The reference answer: one non-streamed request through the client."""
    response = client.chat(messages, weights, **{**GREEDY, **kw})
    assert reward_weights_of(response) == {"arm_a": 0.0, "arm_b": 0.0, **weights}
    return response.choices[0].message.content


def genarm_chat(server, *args: str, stdin: str = "", key: str | None = API_KEY):
    env = {**os.environ, "GENARM_API_KEY": key} if key else dict(os.environ)
    if not key:
        env.pop("GENARM_API_KEY", None)
    return subprocess.run(
        [sys.executable, "-m", "genarm.cli", "chat", "--url", server.url, *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


# --- Python client ------------------------------------------------------------


def test_sync_client_arms_weights_and_streaming(client):
    assert client.arms() == [
        Arm("arm_a", default_weight=0.0, description="tiny random ARM arm_a"),
        Arm("arm_b", default_weight=0.0, description="tiny random ARM arm_b"),
    ]
    messages = [{"role": "user", "content": QUESTION}]
    unguided = answer(client, messages, {})
    guided = answer(client, messages, {"arm_a": 2.5})
    assert guided != unguided  # the weight reached the engine

    # Streaming: the pieces add up to the non-streamed answer.
    pieces = list(client.chat_stream(messages, {"arm_a": 2.5}, **GREEDY))
    assert "".join(pieces) == guided
    # Every raw chunk echoes the weights used.
    with client.chat(messages, {"arm_b": -1.0}, stream=True, **GREEDY) as stream:
        echoed = [reward_weights_of(chunk) for chunk in stream]
    assert echoed and all(w == {"arm_a": 0.0, "arm_b": -1.0} for w in echoed)

    # Completions too, and extra_body set by the caller is kept alongside the weights.
    text = client.complete(
        "Once upon a time", {"arm_a": 1.0}, extra_body={"ignore_eos": True}, **GREEDY
    )
    assert reward_weights_of(text) == {"arm_a": 1.0, "arm_b": 0.0}
    assert text.usage.completion_tokens == GREEDY["max_tokens"]


def test_sync_client_errors_are_sdk_exceptions(server, client, monkeypatch):
    messages = [{"role": "user", "content": QUESTION}]
    with pytest.raises(openai.BadRequestError) as err:
        client.chat(messages, {"arm_a": 9.0}, **GREEDY)
    assert err.value.status_code == 400 and "within [-5.0, 5.0]" in err.value.message
    with pytest.raises(openai.BadRequestError, match="unknown ARM 'nope'"):
        client.chat(messages, {"nope": 1.0}, **GREEDY)
    with pytest.raises(openai.NotFoundError):
        client.chat(messages, model="no-such-model", **GREEDY)
    with pytest.raises(openai.AuthenticationError, match="invalid API key"):
        GenARMClient(server.url, "wrong-key", max_retries=0).arms()
    # The env variable is the default key; none at all is a 401 too.
    monkeypatch.setenv("GENARM_API_KEY", API_KEY)
    assert GenARMClient(server.url, max_retries=0).arms()[0].name == "arm_a"
    monkeypatch.delenv("GENARM_API_KEY")
    with pytest.raises(openai.AuthenticationError, match="missing API key|invalid API key"):
        GenARMClient(server.url, max_retries=0).models()


def test_async_client(server, client):
    messages = [{"role": "user", "content": QUESTION}]
    expected = {w: answer(client, messages, {"arm_b": w}) for w in (1.5, -1.5)}

    async def main() -> None:
        async with AsyncGenARMClient(server.url + "/v1", API_KEY, max_retries=0) as ac:
            assert [arm.name for arm in await ac.arms()] == ["arm_a", "arm_b"]
            # Two weight settings at once, one streamed, one not.
            streamed, whole = await asyncio.gather(
                _collect(ac.chat_stream(messages, {"arm_b": 1.5}, **GREEDY)),
                ac.chat(messages, {"arm_b": -1.5}, **GREEDY),
            )
            assert streamed == expected[1.5]
            assert whole.choices[0].message.content == expected[-1.5]
            assert reward_weights_of(whole) == {"arm_a": 0.0, "arm_b": -1.5}
            with pytest.raises(openai.BadRequestError, match="must be a number"):
                await ac.chat(messages, extra_body={"reward_weights": {"arm_a": "x"}})
        async with AsyncGenARMClient(server.url, "bad", max_retries=0) as ac:
            with pytest.raises(openai.AuthenticationError):
                await ac.complete("hi", max_tokens=2)

    asyncio.run(main())
    assert expected[1.5] != expected[-1.5]


async def _collect(pieces) -> str:
    return "".join([piece async for piece in pieces])


# --- genarm chat ------------------------------------------------------------


def test_chat_one_shot_prints_just_the_answer(server, client):
    messages = [{"role": "user", "content": QUESTION}]
    expected = answer(client, messages, {"arm_a": 1.5, "arm_b": -0.5})
    done = genarm_chat(
        server,
        QUESTION,
        "--weight",
        "arm_a=1.5",
        "-w",
        "arm_b=-0.5",
        "--temperature",
        "0",
        "--max-tokens",
        str(GREEDY["max_tokens"]),
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == expected + "\n"

    # The prompt from stdin ("-"), and the key from --api-key rather than the env.
    piped = genarm_chat(
        server,
        "-",
        "--api-key",
        API_KEY,
        "-t",
        "0",
        "-n",
        str(GREEDY["max_tokens"]),
        stdin=QUESTION,
        key=None,
    )
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout == answer(client, messages, {}) + "\n"


def test_chat_one_shot_errors_in_words(server):
    unknown = genarm_chat(server, "hi", "--weight", "arm_z=1")
    assert unknown.returncode == 2 and "unknown ARM 'arm_z'" in unknown.stderr
    assert unknown.stdout == ""
    malformed = genarm_chat(server, "hi", "--weight", "arm_a")
    assert malformed.returncode == 2 and "NAME=VALUE" in malformed.stderr
    no_key = genarm_chat(server, "hi", key=None)
    assert no_key.returncode == 1 and "401" in no_key.stderr and "invalid API key" in no_key.stderr
    too_long = genarm_chat(server, "hi", "--max-tokens", "100000")
    assert too_long.returncode == 1 and "exceeds the context" in too_long.stderr


def test_chat_interactive_session(server, client):
    script = "\n".join(
        [
            "/weights",
            "/weight arm_a 2",
            QUESTION,
            "/weight arm_b -1.5",
            "And then?",
            "/weight arm_a 7",
            "/weight nope 1",
            "/frobnicate",
            "/weights",
            "/reset",
            "/clear",
            QUESTION,
            "/help",
            "/quit",
            "never sent",
        ]
    )
    done = genarm_chat(
        server, "-t", "0", "-n", str(GREEDY["max_tokens"]), "-w", "arm_b=0.5", stdin=script
    )
    assert done.returncode == 0, done.stderr
    out, err = done.stdout, done.stderr

    # The same conversation, request by request, through the client.
    turn1 = [{"role": "user", "content": QUESTION}]
    first = answer(client, turn1, {"arm_a": 2.0, "arm_b": 0.5})
    turn2 = [
        *turn1,
        {"role": "assistant", "content": first},
        {"role": "user", "content": "And then?"},
    ]
    second = answer(client, turn2, {"arm_a": 2.0, "arm_b": -1.5})
    # After /reset (back to the --weight values) and /clear (a new conversation).
    third = answer(client, turn1, {"arm_b": 0.5})
    assert out.index(first) < out.index(second) < out.rindex(third)
    assert len({first, second, third}) == 3

    # /weights lists every ARM with its weight, range and description.
    start_table = out.split("type /help")[0]
    assert "arm_a  +0.00   [-5, 5], default 0  - tiny random ARM arm_a" in start_table
    assert "arm_b  +0.50" in start_table
    assert "arm_a = 2" in out and "arm_b = -1.5" in out
    assert "arm_a  +2.00" in out and "arm_b  -1.50" in out  # the second /weights
    # Refused locally by the server's own rules, in its words, and the session goes on.
    assert "weight of ARM 'arm_a' must be within [-5.0, 5.0]" in err
    assert "unknown ARM 'nope' in 'reward_weights'; this server's ARMs: arm_a, arm_b" in err
    assert "unknown command /frobnicate" in err
    assert "/weight NAME VALUE" in out  # /help
    assert "never sent" not in out  # /quit ended the session


def test_chat_cli_imports_neither_torch_nor_vllm():
    code = (
        "import sys, genarm.cli, genarm.clients.chat_cli; "
        "print(sorted(m for m in ('torch', 'vllm', 'transformers') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
