"""Request helpers shared by the API endpoints: store calls off the event loop, capped JSON bodies."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

import anyio.to_thread
from starlette.requests import ClientDisconnect, Request

from otel_lightning.exceptions import PayloadTooLargeError, ValidationError
from otel_lightning.store.base import Store

T = TypeVar("T")


async def call_store(request: Request, fn: Callable[..., T], *args: Any) -> T:
    """Run a store method in a worker thread."""
    return await anyio.to_thread.run_sync(fn, *args)


def store_of(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The raw request body; PayloadTooLargeError as soon as it passes ``max_bytes``, ValidationError if the
    client goes away before sending all of it."""
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_bytes:
                raise PayloadTooLargeError(f"request body exceeds {max_bytes} bytes")
            chunks.append(chunk)
    except ClientDisconnect:
        # A client killed mid-request: nobody reads the answer, and it is no server error to log.
        raise ValidationError("the client disconnected before sending the whole body") from None
    return b"".join(chunks)


async def read_json(request: Request) -> Any:
    """The request's JSON body, capped at the server's body limit; ValidationError if it is not JSON."""
    body = await read_body(request, request.app.state.settings.max_body_bytes)
    try:
        return json.loads(body or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:  # too deeply nested: recursion
        raise ValidationError(f"request body is not valid JSON: {exc}") from None


async def read_object(request: Request) -> dict[str, Any]:
    body = await read_json(request)
    if not isinstance(body, dict):
        raise ValidationError("request body must be a JSON object")
    return body
