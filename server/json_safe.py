"""JSON the server can always write: every response body and every streamed event.

Python's ``json`` writes ``NaN``/``Infinity`` (not JSON: strict clients fail to
parse them) and Starlette's ``JSONResponse`` raises on them instead, which turns
a reply into a 500; both fail on strings with unpaired UTF-16 surrogates once
encoded to UTF-8. Those values reach a response two ways: logprobs of tokens the
sampling settings ruled out (-inf), and text echoed from the request (an ARM
name, a field path in an error). So every body goes through ``json_bytes``:

- a non-finite float becomes ``LOGPROB_FLOOR`` (-9999.0, what OpenAI's and
  vLLM's servers report for a token that cannot be drawn), its positive twin,
  or ``null`` for NaN;
- an unpaired surrogate becomes U+FFFD, the replacement character.

Requests never get this far with surrogates (``protocol`` refuses them with a
400 naming the field); this is the guarantee that rendering cannot fail.
"""

from __future__ import annotations

import json
import math
from typing import Any

from fastapi.responses import JSONResponse

LOGPROB_FLOOR = -9999.0


def finite_or_floor(value: float) -> float:
    """A logprob as OpenAI reports it: -inf (and NaN) as -9999.0."""
    if math.isnan(value) or value < LOGPROB_FLOOR:
        return LOGPROB_FLOOR
    return value


def has_unpaired_surrogate(text: str) -> bool:
    """True if ``text`` cannot be written as UTF-8 (a lone UTF-16 surrogate in it)."""
    try:
        text.encode("utf-8")
        return False
    except UnicodeEncodeError:
        return True


def clean_text(text: str) -> str:
    """``text`` with unpaired surrogates replaced by U+FFFD (unchanged if there are none)."""
    if not has_unpaired_surrogate(text):
        return text
    return "".join("\ufffd" if "\ud800" <= c <= "\udfff" else c for c in text)


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, float) and not math.isfinite(value):
        if math.isnan(value):
            return None
        return LOGPROB_FLOOR if value < 0 else -LOGPROB_FLOOR
    if isinstance(value, dict):
        return {clean_text(str(k)): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def json_bytes(content: Any) -> bytes:
    """UTF-8 JSON of ``content``; never fails on floats or strings (see the module)."""
    try:
        return _dumps(content)
    except (ValueError, UnicodeEncodeError):
        return _dumps(_clean(content))  # the rare body with a bad value: clean a copy


def _dumps(content: Any) -> bytes:
    return json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


class SafeJSONResponse(JSONResponse):
    """``JSONResponse`` that renders through ``json_bytes``."""

    def render(self, content: Any) -> bytes:
        return json_bytes(content)


def first_unpaired_surrogate(value: Any, path: tuple = ()) -> tuple | None:
    """Path of the first string (key or value) holding an unpaired UTF-16 surrogate.

    JSON may escape one (``"\\ud800"``); no tokenizer or UTF-8 writer takes it.
    """
    if isinstance(value, str):
        return path if has_unpaired_surrogate(value) else None
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and has_unpaired_surrogate(key):
                return (*path, "<key>")
            found = first_unpaired_surrogate(item, (*path, key))
            if found is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = first_unpaired_surrogate(item, (*path, index))
            if found is not None:
                return found
    return None


class UnpairedSurrogateError(Exception):
    """A request string with an unpaired surrogate; ``param`` is its field path.

    Not a ValueError on purpose: pydantic passes it through unchanged, so the
    error handler can answer a 400 that names the field.
    """

    def __init__(self, path: tuple) -> None:
        self.param = ".".join(str(p) for p in path) or None
        where = f"'{self.param}'" if self.param else "the request body"
        super().__init__(
            f"{where} contains an unpaired UTF-16 surrogate (an invalid \\uD800-\\uDFFF "
            "escape); send valid Unicode text"
        )
