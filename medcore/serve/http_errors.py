"""Every error the embedded server returns, in OpenAI's shape {"error": {"message", "type", "param", "code"}}, never
quoting what a request contained."""

from __future__ import annotations

import logging
import traceback

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from medcore.serve.protocol import ApiError, error_body, field_path

logger = logging.getLogger("medcore.serve")


def describe_invalid(exc: RequestValidationError) -> ApiError:
    """pydantic's errors -> one 400 naming the fields; never the values sent (they may be prompt text)."""
    errors = exc.errors()
    if any(err["type"] == "json_invalid" or tuple(err["loc"]) == ("body",) for err in errors):
        return ApiError(400, "The request body is not a valid JSON object: send one (Content-Type: application/json).")
    parts, params = [], []
    for err in errors:
        param = field_path(err["loc"])
        params.append(param)
        if err["type"] == "missing":
            parts.append(f"{param or 'the body'} is required")
        else:
            parts.append(f"{param or 'the body'}: {err['msg']}")
    return ApiError(400, "; ".join(parts) + ".", param=params[0] if params else None)


def install_error_handlers(app: FastAPI) -> None:
    """Every error leaves in OpenAI's shape {"error": {"message", "type", "param", "code"}}."""

    async def api_error(request: Request, exc: ApiError):
        return JSONResponse(exc.body(), status_code=exc.status)

    async def invalid(request: Request, exc: RequestValidationError):
        error = describe_invalid(exc)
        return JSONResponse(error.body(), status_code=error.status)

    async def no_route(request: Request, exc: Exception):
        status = getattr(exc, "status_code", 404)
        message = (
            f"No route {request.method} {request.url.path}: the API is under /v1 (models, chat/completions, ...)."
        )
        return JSONResponse(error_body(message, "invalid_request_error"), status_code=status)

    async def unexpected(request: Request, exc: Exception):
        # The type and the frames, not the message: a library message may quote the prompt.
        frames = "".join(traceback.format_tb(exc.__traceback__))
        logger.error("%s in %s %s\n%s", type(exc).__name__, request.method, request.url.path, frames)
        message = f"Internal error ({type(exc).__name__}); the server log has the details."
        return JSONResponse(error_body(message, "server_error"), status_code=500)

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(404, no_route)
    app.add_exception_handler(405, no_route)
    app.add_exception_handler(Exception, unexpected)
