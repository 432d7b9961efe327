"""POST /v1/rewards: the deployment's reward models, through a real `genarm serve`
(vLLM pooling engines beside the generating one), against the HF forward."""

from __future__ import annotations

import json

import httpx
import pytest
import torch

from genarm.server.reward_models import conversation_ids

from conftest import TINY_SERVER_API_KEY, TINY_SERVER_AUTH

API_KEY = TINY_SERVER_API_KEY
AUTH = TINY_SERVER_AUTH
ASPECTS = ["helpful", "harmless", "concise"]
ITEMS = [
    {"messages": [{"role": "user", "content": "Name a fruit."}], "response": "An apple."},
    {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Why is the sky blue?"},
        ],
        "response": "Because air scatters blue light more than red light.",
    },
    {"messages": [{"role": "user", "content": "Say hi."}], "response": "Hi! " * 20},
]


@pytest.fixture(scope="module")
def server(tiny_server):
    return tiny_server


def hf_scores(model_dir: str, item: dict) -> list[float]:
    """The HF model's forward on the input the server documents (the RM's chat template)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, dtype=torch.float32)
    ids = conversation_ids(tokenizer, item["messages"], item["response"])
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].tolist()


def post(server, body: dict, headers: dict | None = None) -> httpx.Response:
    return httpx.post(
        f"{server.base_url}/rewards", json=body, headers=AUTH if headers is None else headers
    )


def reward_work(server) -> tuple[float, float]:
    """(items scored, tokens read) by the reward models so far, from /metrics."""
    return (
        server.metric("genarm_reward_items_total") or 0.0,
        server.metric("genarm_reward_tokens_total") or 0.0,
    )


def test_scores_equal_the_hf_forward_batch_and_single(server, tiny_reward_models):
    reward_models = tiny_reward_models
    items_before, tokens_before = reward_work(server)
    batch = post(server, {"model": "aspects", "items": ITEMS})
    assert batch.status_code == 200, batch.text
    body = batch.json()
    # The metrics count the batch's items and the tokens its usage reports.
    items_after, tokens_after = reward_work(server)
    assert items_after - items_before == len(ITEMS)
    assert tokens_after - tokens_before == body["usage"]["prompt_tokens"]
    assert body["object"] == "list" and body["model"] == "aspects"
    weights = {"helpful": 1.0, "harmless": 0.5, "concise": 0.0}  # left out of the config: 0
    assert body["objective_weights"] == weights
    assert [d["index"] for d in body["data"]] == [0, 1, 2]
    for item, scored in zip(ITEMS, body["data"], strict=True):
        expected = hf_scores(reward_models["three"], item)
        assert list(scored["scores"]) == ASPECTS
        torch.testing.assert_close(
            list(scored["scores"].values()), expected, atol=1e-4, rtol=0, check_dtype=False
        )
        combined = sum(weights[name] * value for name, value in scored["scores"].items())
        assert scored["score"] == pytest.approx(combined, abs=1e-6)
        single = post(server, {"model": "aspects", "items": [item]})
        assert single.status_code == 200, single.text
        torch.testing.assert_close(
            single.json()["data"][0]["scores"], scored["scores"], atol=1e-4, rtol=0
        )
    assert body["usage"]["prompt_tokens"] > 0
    # One objective, unnamed: "score", weight 1 by default (the mean of one).
    one = post(server, {"model": "judge", "items": ITEMS[:2]}).json()
    assert one["objective_weights"] == {"score": 1.0}
    for item, scored in zip(ITEMS[:2], one["data"], strict=True):
        (expected,) = hf_scores(reward_models["one"], item)
        assert scored["scores"]["score"] == pytest.approx(expected, abs=1e-4)
        assert scored["score"] == scored["scores"]["score"]


def test_request_weights_override_the_defaults(server):
    first = post(server, {"model": "aspects", "items": ITEMS[:1]}).json()["data"][0]
    asked = {"concise": 2.0, "helpful": -1}
    response = post(server, {"model": "aspects", "items": ITEMS[:1], "objective_weights": asked})
    assert response.status_code == 200, response.text
    body = response.json()
    weights = {"helpful": -1.0, "harmless": 0.5, "concise": 2.0}
    assert body["objective_weights"] == weights
    scores = first["scores"]
    expected = sum(weights[name] * scores[name] for name in ASPECTS)
    assert body["data"][0]["score"] == pytest.approx(expected, abs=1e-4)
    assert body["data"][0]["score"] != pytest.approx(first["score"], abs=1e-3)


def test_models_lists_the_reward_models(server):
    cards = httpx.get(f"{server.base_url}/models", headers=AUTH).json()["data"]
    assert cards[0]["arms"][0]["name"] == "arm_a"  # the generating model stays first
    by_id = {card["id"]: card for card in cards[1:]}
    assert by_id["aspects"]["type"] == "reward_model"
    assert by_id["aspects"]["objectives"] == ASPECTS
    assert by_id["aspects"]["objective_weights"] == {
        "helpful": 1.0,
        "harmless": 0.5,
        "concise": 0.0,
    }
    assert by_id["judge"]["objectives"] == ["score"] and by_id["judge"]["max_batch"] == 4


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "nope", "items": ITEMS[:1]}, "model"),
        ({"items": ITEMS[:1]}, "model"),  # two reward models: say which
        ({"model": "aspects", "items": ITEMS[:1], "objective_weights": {"nope": 1}}, None),
        ({"model": "aspects", "items": [{**ITEMS[0], "response": ""}]}, "items.0.response"),
        ({"model": "aspects", "items": [{**ITEMS[0], "response": " \n"}]}, "items.0.response"),
        ({"model": "aspects", "items": [{**ITEMS[0], "messages": []}]}, "items.0.messages"),
        ({"model": "aspects", "items": []}, "items"),
        ({"model": "judge", "items": ITEMS[:1] * 5}, "items"),  # max_batch 4
        ({"model": "judge", "items": [{**ITEMS[0], "response": "word " * 200}]}, "items.0"),
        ({"model": "aspects", "items": ITEMS[:1], "objective_weights": {"helpful": "1"}}, None),
        ({"model": "aspects", "items": ITEMS[:1], "extra": 1}, "extra"),
    ],
)
def test_bad_requests_are_400s_naming_the_field(server, body, param):
    response = post(server, body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    if param is None:  # an objective's weight: the field path ends in its name
        param = f"objective_weights.{next(iter(body['objective_weights']))}"
    assert error["param"] == param, error
    assert error["type"] == "invalid_request_error"


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_weights_are_400s(server, constant):
    raw = json.dumps({"model": "aspects", "items": ITEMS[:1], "objective_weights": {}})
    raw = raw.replace('"objective_weights": {}', f'"objective_weights": {{"helpful": {constant}}}')
    response = httpx.post(
        f"{server.base_url}/rewards",
        content=raw,
        headers={**AUTH, "Content-Type": "application/json"},
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == "objective_weights.helpful"


def test_rewards_need_the_api_key(server):
    response = post(server, {"model": "judge", "items": ITEMS[:1]}, headers={})
    assert response.status_code == 401


def test_openapi_documents_the_route(server):
    spec = httpx.get(f"{server.url}/openapi.json").json()
    operation = spec["paths"]["/v1/rewards"]["post"]
    assert {"200", "400", "401", "503"} <= set(operation["responses"])
    schema = spec["components"]["schemas"]["RewardRequest"]
    assert {"model", "items", "objective_weights"} <= set(schema["properties"])


# --- best-of-N: `rerank` on chat and completions -------------------------------------

QUESTION = [{"role": "user", "content": "Tell me about the sea."}]


def chat(server, **fields) -> httpx.Response:
    body = {"messages": QUESTION, "max_tokens": 12, "temperature": 1.0, **fields}
    return httpx.post(f"{server.base_url}/chat/completions", json=body, headers=AUTH, timeout=120)


def check_argmax(body: dict, keep: int, texts: list[str], candidates: int) -> None:
    """The choices are the best ``keep`` candidates by the scores the response reports."""
    listed = body["rerank"]["candidates"]
    assert len(listed) == candidates
    scores = [c["score"] for c in listed]
    assert scores == sorted(scores, reverse=True)  # best first
    assert [c["choice_index"] for c in listed] == [*range(keep), *[None] * (candidates - keep)]
    assert texts == [c["text"] for c in listed[:keep]]
    assert body["usage"]["completion_tokens"] == sum(c["completion_tokens"] for c in listed)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_best_of_n_returns_the_argmax_of_the_reported_scores(server, seed):
    before = server.metric("genarm_completion_tokens_total")
    scored_before, _ = reward_work(server)
    rerank = {"reward_model": "aspects", "n": 4, "objective_weights": {"concise": 1.0}}
    response = chat(server, seed=seed, rerank=rerank, reward_weights={"arm_a": 1.0})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["reward_weights"] == {"arm_a": 1.0, "arm_b": 0.0}  # the ARMs guide every candidate
    assert body["rerank"]["reward_model"] == "aspects"
    assert body["rerank"]["objective_weights"] == {"helpful": 1.0, "harmless": 0.5, "concise": 1.0}
    texts = [c["message"]["content"] for c in body["choices"]]
    check_argmax(body, 1, texts, 4)
    # N candidates cost N sequences' tokens, in the response and in the metrics.
    spent = server.metric("genarm_completion_tokens_total") - before
    assert spent == body["usage"]["completion_tokens"] > 0
    assert reward_work(server)[0] - scored_before == 4  # every candidate scored once
    # The scores are the reward model's own (/v1/rewards on the same answers).
    listed = body["rerank"]["candidates"]
    items = [{"messages": QUESTION, "response": c["text"]} for c in listed if c["text"].strip()]
    rescored = post(server, {"model": "aspects", "items": items}).json()["data"]
    by_text = {c["text"]: c for c in listed}
    for item, scored in zip(items, rescored, strict=True):
        torch.testing.assert_close(
            by_text[item["response"]]["scores"], scored["scores"], atol=1e-4, rtol=0
        )


def test_best_of_n_keeps_the_top_n_and_works_for_completions(server):
    response = chat(server, seed=7, n=2, rerank={"reward_model": "judge", "n": 5})
    assert response.status_code == 200, response.text
    body = response.json()
    assert [c["index"] for c in body["choices"]] == [0, 1]
    check_argmax(body, 2, [c["message"]["content"] for c in body["choices"]], 5)
    completion = httpx.post(
        f"{server.base_url}/completions",
        json={
            "prompt": ["The sea", "A fruit"],
            "max_tokens": 8,
            "temperature": 1.0,
            "seed": 3,
            "rerank": {"reward_model": "judge", "n": 3},
        },
        headers=AUTH,
        timeout=120,
    )
    assert completion.status_code == 200, completion.text
    body = completion.json()
    listed = body["rerank"]["candidates"]
    assert [c["prompt_index"] for c in listed] == [0, 0, 0, 1, 1, 1]
    for prompt in (0, 1):
        mine = [c for c in listed if c["prompt_index"] == prompt]
        assert mine[0]["score"] == max(c["score"] for c in mine)
        assert body["choices"][prompt]["text"] == mine[0]["text"]
        assert mine[0]["choice_index"] == prompt


def test_best_of_n_streams_the_chosen_answer(server):
    body = {
        "messages": QUESTION,
        "max_tokens": 12,
        "temperature": 1.0,
        "seed": 5,
        "rerank": {"reward_model": "aspects", "n": 3},
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    with httpx.stream(
        "POST", f"{server.base_url}/chat/completions", json=body, headers=AUTH, timeout=120
    ) as response:
        assert response.status_code == 200
        events = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    text = "".join(c["choices"][0]["delta"]["content"] for c in chunks if c["choices"])
    last = chunks[-1]
    assert last["choices"] == [] and last["usage"]["completion_tokens"] > 0
    check_argmax({"rerank": last["rerank"], "usage": last["usage"]}, 1, [text], 3)


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"rerank": {"reward_model": "nope", "n": 2}}, "rerank.reward_model"),
        ({"rerank": {"n": 2}}, "rerank.reward_model"),  # two reward models: say which
        ({"n": 3, "rerank": {"reward_model": "judge", "n": 2}}, "rerank.n"),
        ({"temperature": 0, "rerank": {"reward_model": "judge", "n": 2}}, "rerank.n"),
        ({"rerank": {"reward_model": "judge", "n": 1}}, "rerank.n"),
        ({"rerank": {"reward_model": "judge", "n": 17}}, "rerank.n"),
        (
            {"rerank": {"reward_model": "judge", "n": 2, "objective_weights": {"x": 1}}},
            "rerank.objective_weights.x",
        ),
    ],
)
def test_bad_rerank_requests_are_400s(server, fields, param):
    response = chat(server, **fields)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param


def test_the_python_client_asks_for_best_of_n(server):
    from genarm.clients import GenARMClient, rerank_of

    with GenARMClient(server.url, api_key=API_KEY) as client:
        assert client.model == "base"  # the generating model, listed first
        reply = client.chat(
            QUESTION,
            {"arm_a": 0.5},
            rerank={"reward_model": "judge", "n": 3},
            max_tokens=8,
            temperature=1.0,
            seed=4,
        )
    rerank = rerank_of(reply)
    assert rerank["reward_model"] == "judge" and len(rerank["candidates"]) == 3
    assert reply.choices[0].message.content == rerank["candidates"][0]["text"]
