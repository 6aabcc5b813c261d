"""OTLP/HTTP receiver: ``POST /v1/traces``, ``/v1/logs`` (stored) and ``/v1/metrics`` (accepted, dropped).

Protobuf and JSON, gzip and deflate; the body is capped after decompression (413). A 200 is sent only after
the records are committed; a full ingest queue answers 503 with Retry-After, which OTLP exporters retry.
Error bodies are ``google.rpc.Status`` messages in the request's encoding, as the OTLP specification asks.
"""

from __future__ import annotations

import json
import logging
import random
from typing import Any

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from otel_lightning.collector.request_io import read_body
from otel_lightning.exceptions import (
    OtelLightningError,
    OverloadedError,
    UnsupportedMediaError,
)
from otel_lightning.spans.encoded import decode_encoded_spans, encode_span
from otel_lightning.spans.otlp import (
    DecodedBatch,
    OtlpFormat,
    decode_logs,
    decode_traces,
    decompress,
    encode_export_response,
    otlp_format,
)

logger = logging.getLogger(__name__)

_MEDIA_TYPES = {OtlpFormat.PROTOBUF: "application/x-protobuf", OtlpFormat.JSON: "application/json"}
_OFFLOAD_BYTES = 1024 * 1024
"""Bodies larger than this are decoded in a worker thread so the event loop keeps serving."""


def _status_body(fmt: OtlpFormat, code: int, message: str) -> bytes:
    """A google.rpc.Status message (fields 1: int32 code, 2: string message), encoded without its stubs."""
    if fmt is OtlpFormat.JSON:
        return json.dumps({"code": code, "message": message}).encode()
    raw = message.encode()
    return b"\x08" + _varint(code) + b"\x12" + _varint(len(raw)) + raw


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


# google.rpc.Code values for the HTTP statuses we answer with.
_RPC_CODES = {400: 3, 413: 8, 415: 3, 503: 14, 500: 13}


async def _receive(request: Request, signal: str) -> Response:
    settings = request.app.state.settings
    try:
        fmt = otlp_format(request.headers.get("content-type"))
    except UnsupportedMediaError as exc:
        return Response(str(exc), status_code=415, media_type="text/plain")
    try:
        raw = await read_body(request, settings.max_body_bytes)
        encoding = request.headers.get("content-encoding")
        args = (raw, encoding, fmt, signal, settings.max_body_bytes)
        batch = (
            await anyio.to_thread.run_sync(_decode, *args) if len(raw) > _OFFLOAD_BYTES else _decode(*args)
        )
        if signal == "traces":
            await request.app.state.ingest.put(spans=batch.records)
        elif signal == "logs":
            await request.app.state.ingest.put(logs=batch.records)
    except OtelLightningError as exc:
        status = exc.http_status if exc.http_status in _RPC_CODES else 400
        # Jittered, so that refused exporters do not all come back at the same moment.
        headers = {"Retry-After": str(random.randint(1, 3))} if isinstance(exc, OverloadedError) else None
        if status >= 500:
            logger.warning("OTLP %s request refused: %s", signal, exc)
        return Response(
            _status_body(fmt, _RPC_CODES[status], str(exc)),
            status_code=status,
            headers=headers,
            media_type=_MEDIA_TYPES[fmt],
        )
    if batch.rejected:
        logger.info("OTLP %s request: %d records rejected: %s", signal, batch.rejected, batch.error_message)
    body = encode_export_response(signal, fmt, batch.rejected, batch.error_message)
    return Response(body, media_type=_MEDIA_TYPES[fmt])


def _decode(
    raw: bytes, encoding: str | None, fmt: OtlpFormat, signal: str, max_bytes: int
) -> DecodedBatch[Any]:
    body = decompress(raw, encoding, max_bytes)
    if signal == "traces":
        if fmt is OtlpFormat.PROTOBUF:  # the common case: straight to the stored form, attributes undecoded
            return decode_encoded_spans(body)
        decoded = decode_traces(body, fmt)
        encoded = [encode_span(r) for r in decoded.records]
        return DecodedBatch(encoded, decoded.rejected, decoded.error_message)
    if signal == "logs":
        return decode_logs(body, fmt)
    return DecodedBatch(records=[])  # metrics: accepted and dropped


async def traces(request: Request) -> Response:
    return await _receive(request, "traces")


async def logs(request: Request) -> Response:
    return await _receive(request, "logs")


async def metrics(request: Request) -> Response:
    return await _receive(request, "metrics")


ROUTES = [
    Route("/v1/traces", traces, methods=["POST"]),
    Route("/v1/logs", logs, methods=["POST"]),
    Route("/v1/metrics", metrics, methods=["POST"]),
]
