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
from pydantic import BaseModel

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


def models_responses() -> dict[int | str, dict[str, Any]]:
    return {**UNAUTHORIZED, **HEADERS_TOO_LARGE}


# Event-stream chunk models: not a route's JSON body, so FastAPI would leave them
# out of the schema; ``install_openapi`` adds them to the components.
_CHUNK_MODELS: list[type[BaseModel]] = []


def completion_responses(
    response: type[BaseModel], chunk: type[BaseModel]
) -> dict[int | str, dict[str, Any]]:
    """A completion route's statuses: the JSON body, or its event stream of ``chunk``s."""
    _CHUNK_MODELS.append(chunk)
    stream_schema = {
        "type": "string",
        "description": f"`data: <{chunk.__name__} JSON>` events, then `data: [DONE]`",
    }
    return {
        200: {
            "model": response,
            "description": (
                f"The completion as JSON; with `stream: true`, a server-sent event stream of "
                f"`data: <chunk JSON>` events (schema `{chunk.__name__}`) ending with "
                '`data: [DONE]` (an error after the stream started arrives as a `data: {"error":'
                " ...}` event before it)"
            ),
            "content": {"text/event-stream": {"schema": stream_schema}},
        },
        400: _error(
            "invalid request: the field is named in `error.param` (including requests that "
            "could never be served: too long for the context, too many sequences, reward "
            "weights for unknown ARMs or outside an ARM's bounds)"
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


def rewards_responses() -> dict[int | str, dict[str, Any]]:
    return {
        400: _error(
            "invalid request, the field named in `error.param`: an unknown reward model or "
            "objective, a blank response, more items than the reward model's `max_batch`, "
            "a non-finite weight, an item longer than the reward model's context"
        ),
        **UNAUTHORIZED,
        413: _error("request body larger than `server.max_body_bytes`"),
        **HEADERS_TOO_LARGE,
        503: _error("a model is loading, the server is shutting down, or an engine has stopped"),
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
            schemas = schema.setdefault("components", {}).setdefault("schemas", {})
            for name in ("HTTPValidationError", "ValidationError"):
                schemas.pop(name, None)
            for model in _CHUNK_MODELS:
                _add_schema(schemas, model)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi


def _add_schema(schemas: dict[str, Any], model: type[BaseModel]) -> None:
    """``model``'s JSON schema (and the models it holds) as components."""
    found = model.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, sub in found.pop("$defs", {}).items():
        schemas.setdefault(name, sub)
    schemas.setdefault(model.__name__, found)
