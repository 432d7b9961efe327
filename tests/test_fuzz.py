"""Schema fuzzing: schemathesis generates requests for every operation of the live
server's /openapi.json (valid and invalid ones), as vLLM's own tests do, and
every answer must be ours to stand behind: no 5xx, every 4xx in OpenAI's error
shape, every JSON body and every streamed event strict JSON (no NaN/Infinity),
every stream ending with [DONE].

Deterministic: a fixed seed, no example database, no shrinking. Generated
token counts are capped so the tiny engine answers fast. The suite runs a
short pass; the long one is the same test with more examples:

    GENARM_FUZZ_EXAMPLES=700 .venv/bin/python -m pytest tests/test_fuzz.py -m slow -s
"""

from __future__ import annotations

import os
import time
from collections import Counter

import hypothesis
import pytest
import schemathesis
import schemathesis.specs.openapi.schemas  # noqa: F401 - see below
from hypothesis import HealthCheck, Phase
from schemathesis import GenerationMode

from conftest import TINY_SERVER_AUTH
from support import strict_json

pytestmark = [pytest.mark.slow, pytest.mark.engine]
# schemathesis imports its OpenAPI loader lazily, and pytest rewrites a plugin's modules
# as they load: loaded inside the test, after an earlier test's torch.compile raised the
# recursion limit in this process, CPython 3.11.7's parser failed on one of them
# ("AST constructor recursion depth mismatch"). Imported above, it loads at collection.

EXAMPLES = int(os.environ.get("GENARM_FUZZ_EXAMPLES", "40"))  # per operation and mode
SEED = int(os.environ.get("GENARM_FUZZ_SEED", "20261128"))
MAX_GENERATED_TOKENS = 8
TOKEN_FIELDS = ("max_tokens", "max_completion_tokens", "min_tokens")
ERROR_KEYS = {"message", "type", "param", "code"}
# Every request carries the key, so that it reaches the routes' own validation.
AUTH = TINY_SERVER_AUTH
# The shared server has two reward models, so /v1/rewards needs a "model": valid
# requests without one (the schema's example among them) are given this one.
REWARD_MODEL = "aspects"


def name_the_reward_model(case) -> None:
    """A valid /v1/rewards body without "model" names one, so that it is scored."""
    if case.path.endswith("/rewards") and isinstance(case.body, dict):
        case.body.setdefault("model", REWARD_MODEL)


def cap_generation(case, index: int) -> None:
    """Bound the work a generated body asks for; stream every other one."""
    body = case.body
    if not isinstance(body, dict) or not case.path.endswith("completions"):
        return
    for field in TOKEN_FIELDS:
        value = body.get(field)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            body[field] = min(value, MAX_GENERATED_TOKENS)
    if body.get("max_tokens") is None and body.get("max_completion_tokens") is None:
        body["max_tokens"] = MAX_GENERATED_TOKENS  # null is unset: the whole context
    if index % 2 == 0 and "stream" not in body:
        body["stream"] = True


def check_response(case, response) -> str:
    """Assert the answer is one this server stands behind; its kind, for the tally."""
    status = response.status_code
    described = (
        f"{case.method} {case.path} {str(case.body)[:400]} -> {status}: {response.text[-300:]!r}"
    )
    assert status < 500, described
    content_type = response.headers.get("content-type", "")
    content_type = content_type[0] if isinstance(content_type, list) else content_type
    if 400 <= status < 500:
        error = strict_json(response.text)["error"]
        assert set(error) == ERROR_KEYS and error["message"], described
        return f"{status}"
    if case.method == "HEAD" or status != 200:
        return f"{status}"
    if content_type.startswith("text/event-stream"):
        events = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]
        # schemathesis stops reading a stream after max_stream_events (n choices x
        # tokens can pass it): then the events read so far are checked.
        cut_short = getattr(response, "stream_cut_short", False)
        assert events and (cut_short or events[-1] == "[DONE]"), described
        for event in events[:-1] if events[-1] == "[DONE]" else events:
            parsed = strict_json(event)
            if "error" in parsed:
                assert set(parsed["error"]) == ERROR_KEYS, described
        return "200 stream"
    if content_type.startswith("application/json"):
        strict_json(response.text)
    return "200"


def fuzz_operation(operation, mode: GenerationMode, base_url: str, tally: Counter) -> None:
    strategy = operation.as_strategy(generation_mode=mode)
    calls = [0]
    if mode == GenerationMode.POSITIVE:
        # The schema's own examples first (as schemathesis's runner does): valid
        # requests of every form, so that real answers are always among the checked.
        for case in schema_examples(operation):
            calls[0] += 1
            name_the_reward_model(case)
            response = case.call(base_url=base_url, headers=AUTH, timeout=120)
            tally[f"{case.method} {case.path} {check_response(case, response)}"] += 1

    @hypothesis.given(case=strategy)
    @hypothesis.settings(
        max_examples=EXAMPLES,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
        derandomize=False,
    )
    @hypothesis.seed(SEED)
    def run(case) -> None:
        calls[0] += 1
        cap_generation(case, calls[0])
        if mode == GenerationMode.POSITIVE:
            name_the_reward_model(case)
        response = case.call(base_url=base_url, headers=AUTH, timeout=120)
        tally[f"{case.method} {case.path} {check_response(case, response)}"] += 1

    try:
        run()
    except hypothesis.errors.Unsatisfiable:
        # No invalid request exists for an operation without parameters or body.
        assert mode == GenerationMode.NEGATIVE and not operation.body, operation.path


def schema_examples(operation) -> list:
    """The cases of an operation's examples in /openapi.json, in order."""
    only = hypothesis.settings(database=None, phases=[Phase.generate])
    return [
        hypothesis.find(example, lambda _: True, settings=only)
        for example in operation.get_strategies_from_examples()
    ]


@pytest.fixture(scope="module")
def server(tiny_server):
    return tiny_server


def test_schema_fuzzing_finds_no_server_error(server):
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    tally: Counter = Counter()
    started = time.monotonic()
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {f"{op.method.upper()} {op.path}" for op in operations} >= {
        "POST /v1/chat/completions",
        "POST /v1/completions",
        "GET /v1/models",
        "GET /health",
        "GET /metrics",
        "POST /v1/rewards",
    }
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            fuzz_operation(operation, mode, server.url, tally)
    total = sum(tally.values())
    print(f"\n{total} requests in {time.monotonic() - started:.0f} s (seed {SEED}):")
    for kind, count in sorted(tally.items()):
        print(f"  {count:6d}  {kind}")
    # Both forms of the completion routes were exercised (the schema's examples hold
    # a plain and a streamed request of each), and real answers came back.
    for path in ("/v1/chat/completions", "/v1/completions"):
        assert tally[f"POST {path} 200 stream"] > 0, path
        assert tally[f"POST {path} 200"] > 0, path
        assert tally[f"POST {path} 400"] > 0, path
    assert tally["POST /v1/rewards 200"] > 0 and tally["POST /v1/rewards 400"] > 0
    # The engine is still serving.
    assert server.metric("genarm_requests_running") == 0
