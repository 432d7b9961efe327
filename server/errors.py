"""Errors in OpenAI's shape: {"error": {"message", "type", "param", "code"}}.

Every failure a client can cause ends here as a 4xx with the offending
parameter named; nothing a client sends produces a 500.
"""

from __future__ import annotations

import logging
from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from genarm.server.json_safe import SafeJSONResponse, UnpairedSurrogateError

logger = logging.getLogger(__name__)

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    431: "invalid_request_error",
    503: "service_unavailable_error",
}


class APIError(Exception):
    """An error to return to the client as-is."""

    def __init__(
        self,
        status: int,
        message: str,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.headers = headers


def error_body(status: int, message: str, param: str | None, code: str | None) -> dict:
    return {
        "error": {
            "message": message,
            "type": ERROR_TYPES.get(status, "server_error" if status >= 500 else "api_error"),
            "param": param,
            "code": code,
        }
    }


def error_response(err: APIError) -> JSONResponse:
    # Safe rendering: an error about a value must not fail on that value.
    return SafeJSONResponse(
        error_body(err.status, err.message, err.param, err.code),
        status_code=err.status,
        headers=err.headers,
    )


def _is_union_tag(part: str) -> bool:
    # pydantic names the branch of a union in the error path: 'str', 'list[str]',
    # 'function-after[...]', 'constrained-int'... Field names never look like these.
    prefixes = ("function-", "constrained-", "lax-", "strict-", "json-")
    return (
        part in {"str", "int", "float", "bool", "dict"} or "[" in part or part.startswith(prefixes)
    )


def _param_of(loc: tuple) -> str | None:
    """('body', 'messages', 0, 'role') -> 'messages.0.role'; union tags dropped."""
    parts = [str(p) for p in loc[1:]] if loc[:1] == ("body",) else [str(p) for p in loc]
    return ".".join(p for p in parts if not _is_union_tag(p)) or None


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def _api_error(_: Request, err: APIError) -> JSONResponse:
        return error_response(err)

    @app.exception_handler(UnpairedSurrogateError)
    async def _surrogate(_: Request, err: UnpairedSurrogateError) -> JSONResponse:
        return error_response(APIError(400, str(err), param=err.param))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, err: RequestValidationError) -> JSONResponse:
        first = err.errors()[0] if err.errors() else {"loc": (), "msg": "invalid request"}
        param = _param_of(tuple(first.get("loc", ())))
        if first.get("type") == "json_invalid":
            param = None  # its location is a character offset, not a field
            message = "request body is not valid JSON"
        elif param is None:
            message = f"invalid request body: {first.get('msg')}"
        elif first.get("type") == "missing":
            message = f"missing required parameter '{param}'"
        else:
            detail = str(first.get("msg", "")).removeprefix("Value error, ")
            message = f"invalid value for '{param}': {detail}"
        return error_response(APIError(400, message, param=param))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, err: StarletteHTTPException) -> JSONResponse:
        message = err.detail if isinstance(err.detail, str) else HTTPStatus(err.status_code).phrase
        return error_response(APIError(err.status_code, message, headers=err.headers))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, err: Exception) -> JSONResponse:
        logger.exception("unexpected server error")
        return error_response(APIError(500, f"internal server error: {type(err).__name__}"))
