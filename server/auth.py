"""API keys: `Authorization: Bearer <key>` on /v1/* when the server has keys."""

from __future__ import annotations

import hmac
import os

from fastapi import Request

from genarm.server.errors import APIError

API_KEYS_ENV = "GENARM_API_KEYS"
# RFC 6750: a 401 names the scheme the client should use.
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="genarm-serve"'}


def configured_keys(config_keys: list[str]) -> list[str]:
    """Keys from the config plus GENARM_API_KEYS (comma-separated)."""
    env = [k.strip() for k in os.environ.get(API_KEYS_ENV, "").split(",") if k.strip()]
    return [*config_keys, *env]


def key_matches(given: str, keys: list[str]) -> bool:
    # Compare against every key, in constant time each: no early exit to time.
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(given.encode(), key.encode())
    return matched


async def require_api_key(request: Request) -> None:
    keys: list[str] = request.app.state.api_keys
    if not keys:
        return
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not given:
        raise APIError(
            401,
            "missing API key: send 'Authorization: Bearer <key>'",
            code="invalid_api_key",
            headers=CHALLENGE,
        )
    if not key_matches(given.strip(), keys):
        raise APIError(401, "invalid API key", code="invalid_api_key", headers=CHALLENGE)
