"""The JSON writer behind every response and streamed event (server/json_safe.py):
fresh hostile floats and strings each run, from a fixed seed, so a failure repeats."""

from __future__ import annotations

import json
import math
import random

from genarm.server.json_safe import LOGPROB_FLOOR, clean_text, finite_or_floor, json_bytes

from support import strict_json

HOSTILE_FLOATS = [math.nan, math.inf, -math.inf, -0.0, 5e-324, 1.7976931348623157e308, -1e300]
HOSTILE_CHARS = ["\ud800", "\udfff", "\udbff\udc00", "\x00", "\u2028", '"', "\\", "é", "😀", "\n"]


def random_string(rng: random.Random) -> str:
    return "".join(
        rng.choice(HOSTILE_CHARS) if rng.random() < 0.3 else chr(rng.randrange(32, 0x3000))
        for _ in range(rng.randrange(0, 12))
    )


def random_value(rng: random.Random, depth: int = 0):
    kind = rng.randrange(6 if depth < 3 else 4)
    if kind == 0:
        return rng.choice(HOSTILE_FLOATS) if rng.random() < 0.5 else rng.uniform(-1e4, 1e4)
    if kind == 1:
        return random_string(rng)
    if kind == 2:
        return rng.choice([None, True, False, rng.randrange(-(2**70), 2**70)])
    if kind == 3:
        return rng.gauss(0, 1)
    if kind == 4:
        return [random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {random_string(rng): random_value(rng, depth + 1) for _ in range(rng.randrange(4))}


def expected(value):
    """What the writer promises: the value, with non-finite floats and surrogates mapped."""
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else math.copysign(-LOGPROB_FLOOR, value)
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, list):
        return [expected(v) for v in value]
    if isinstance(value, dict):
        return {clean_text(k): expected(v) for k, v in value.items()}
    return value


def test_random_hostile_documents_always_encode_to_strict_json():
    rng = random.Random(20261128)
    for _ in range(3000):
        document = {"payload": random_value(rng)}
        decoded = strict_json(json_bytes(document))
        assert decoded == expected(document)


def test_clean_text_keeps_valid_text_and_replaces_only_lone_surrogates():
    assert clean_text("plain é 😀") == "plain é 😀"
    assert clean_text("a\ud800b") == "a\ufffdb"
    # A Python string holds no valid pair: JSON's "\\udbff\\udc00" decodes to one code point.
    assert clean_text("\udbff\udc00") == "\ufffd\ufffd"
    assert json.loads('"\\udbff\\udc00"') == "\U0010fc00" == clean_text("\U0010fc00")


def test_logprob_floor_matches_openai():
    assert finite_or_floor(-math.inf) == LOGPROB_FLOOR == -9999.0
    assert finite_or_floor(math.nan) == LOGPROB_FLOOR
    assert finite_or_floor(-1e6) == LOGPROB_FLOOR
    assert finite_or_floor(-0.25) == -0.25
