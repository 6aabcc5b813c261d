"""Errors as JSON problem documents (RFC 9457); never a traceback."""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from otel_lightning.exceptions import OtelLightningError, OverloadedError

logger = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"


def problem_body(status: int, code: str, detail: str) -> dict[str, str | int]:
    """A problem document: ``type`` (the error code), ``title``, ``status`` and ``detail``."""
    return {"type": code, "title": code.replace("-", " "), "status": status, "detail": detail}


def problem(status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """A problem document response."""
    body = problem_body(status, code, detail)
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_MEDIA_TYPE)


async def domain_error(request: Request, exc: Exception) -> Response:
    """Map an otel-lightning error to its HTTP status and problem document."""
    assert isinstance(exc, OtelLightningError)
    headers = {"Retry-After": "1"} if isinstance(exc, OverloadedError) else None
    return problem(exc.http_status, exc.code, str(exc), headers)


async def http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own errors (unknown route, wrong method) as problem documents."""
    assert isinstance(exc, HTTPException)
    return problem(exc.status_code, "http", str(exc.detail), dict(exc.headers or {}))


async def unexpected_error(request: Request, exc: Exception) -> Response:
    """Anything else: logged with its traceback here, a bare 500 for the client."""
    logger.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem(500, "internal", "internal server error; see the server log")


EXCEPTION_HANDLERS = {
    OtelLightningError: domain_error,
    HTTPException: http_error,
    Exception: unexpected_error,
}
