"""What /openapi.json says each route answers: every status the server sends,
the event stream, and the error shape.

FastAPI documents a 422 for every route with a body; this server answers
invalid input with 400 (OpenAI's status), so ``install_openapi`` drops 422. It
also gives the HEAD twin of a GET route an operation id of its own.
"""

from __future__ import annotations

import warnings
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from genarm.server.protocol import ErrorResponse, HealthStatus

RETRY_AFTER = {
    "Retry-After": {"description": "seconds to wait before retrying", "schema": {"type": "integer"}}
}


def _error(description: str, headers: dict | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"model": ErrorResponse, "description": description}
    if headers:
        entry["headers"] = headers
    return entry


HEADERS_TOO_LARGE = {431: _error("request headers larger than the server's limit")}
UNAUTHORIZED = {
    401: _error(
        "missing or wrong API key (when the server has keys)",
        {"WWW-Authenticate": {"description": "Bearer", "schema": {"type": "string"}}},
    )
}

MODELS_RESPONSES: dict[int | str, dict[str, Any]] = {**UNAUTHORIZED, **HEADERS_TOO_LARGE}

COMPLETION_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": (
            "The completion as JSON; with `stream: true`, a server-sent event stream of "
            "`data: <chunk JSON>` events ending with `data: [DONE]` (an error after the "
            'stream started arrives as a `data: {"error": ...}` event before it)'
        ),
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    },
    400: _error(
        "invalid request: the field is named in `error.param` (including requests that "
        "could never be served: too long for the context, too many sequences)"
    ),
    **UNAUTHORIZED,
    404: _error("unknown model"),
    413: _error("request body larger than `server.max_body_bytes`"),
    **HEADERS_TOO_LARGE,
    503: _error(
        "the model is loading, the waiting queue is full, the server is shutting down, "
        "or the engine has stopped",
        RETRY_AFTER,
    ),
}

HEALTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": HealthStatus, "description": "ready"},
    503: {
        "model": HealthStatus,
        "description": "loading, draining for a shutdown, or failed",
        "headers": RETRY_AFTER,
    },
    **HEADERS_TOO_LARGE,
}

METRICS_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Prometheus text exposition",
        "content": {"text/plain": {"schema": {"type": "string"}}},
    },
    **HEADERS_TOO_LARGE,
}


def install_openapi(app: FastAPI) -> None:
    """Generate the schema once, without FastAPI's 422 entries."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            with warnings.catch_warnings():  # GET and HEAD of one route share an id: fixed below
                warnings.filterwarnings("ignore", "Duplicate Operation ID")
                schema = get_openapi(
                    title=app.title,
                    version=app.version,
                    routes=app.routes,
                    description=app.description,
                )
            for path in schema.get("paths", {}).values():
                for method, operation in path.items():
                    operation.get("responses", {}).pop("422", None)
                    if method == "head":
                        operation["operationId"] = operation["operationId"].removesuffix("_get")
                        operation["operationId"] += "_head"
            schemas = schema.get("components", {}).get("schemas", {})
            for name in ("HTTPValidationError", "ValidationError"):
                schemas.pop(name, None)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi
