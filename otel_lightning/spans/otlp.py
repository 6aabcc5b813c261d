"""OTLP/HTTP bodies <-> records: pure functions, no HTTP.

A receiver calls, in order::

    fmt = otlp_format(request.headers.get("content-type"))              # 415 on anything else
    body = decompress(raw, request.headers.get("content-encoding"), cap)   # 413 over the cap, 415, 400
    batch = decode_traces(body, fmt)                                     # 400 on a malformed body
    reply = encode_export_response("traces", fmt, batch.rejected, batch.error_message)

Both encodings map alike: ids become lowercase hex (an empty or all-zero parent becomes None); AnyValues
become str, bool, int, float (non-finite ones the strings "NaN", "Infinity", "-Infinity", so records stay
valid JSON), list, dict, base64 str for bytes, None when empty; attribute lists become dicts (the last
duplicate wins); enum numbers this version does not know become UNSPECIFIED / UNSET; rollout identity is
copied out of the attributes when it is a string. Records of one resource share its ``resource`` dict.

Spans with malformed ids are skipped and counted in :attr:`DecodedBatch.rejected` (OTLP partial success);
a body that is not a request at all raises :class:`~otel_lightning.exceptions.DecodeError`. Protobuf is
walked field by field on the upb backend, never through ``json_format`` (``MessageToDict`` is ~10x slower and
``ParseDict`` reads ids as base64); the JSON codec lives in :mod:`otel_lightning.spans.otlp_json`.
"""

from __future__ import annotations

import base64
import functools
import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Generic, TypeVar

from google.protobuf.message import DecodeError as ProtobufDecodeError
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as metrics_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from otel_lightning import semconv
from otel_lightning.exceptions import DecodeError, UnsupportedMediaError
from otel_lightning.resources import JSON
from otel_lightning.spans.compression import decompress
from otel_lightning.spans.records import LogRecord, SpanEvent, SpanKind, SpanLink, SpanRecord, StatusCode

__all__ = [
    "DecodedBatch",
    "OtlpFormat",
    "decode_logs",
    "decode_traces",
    "decompress",
    "encode_export_response",
    "encode_traces",
    "otlp_format",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")


class OtlpFormat(StrEnum):
    """The two OTLP/HTTP body encodings."""

    PROTOBUF = "protobuf"
    JSON = "json"

    @property
    def content_type(self) -> str:
        """The media type to answer with."""
        return "application/x-protobuf" if self is OtlpFormat.PROTOBUF else "application/json"


_MEDIA_TYPES = {
    "application/x-protobuf": OtlpFormat.PROTOBUF,
    "application/protobuf": OtlpFormat.PROTOBUF,
    "application/json": OtlpFormat.JSON,
}


def otlp_format(content_type: str | None) -> OtlpFormat:
    """The body encoding named by a ``Content-Type`` header (parameters such as ``charset`` are ignored).

    Raises:
        UnsupportedMediaError: the header is missing or names another media type.
    """
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    try:
        return _MEDIA_TYPES[media_type]
    except KeyError:
        raise UnsupportedMediaError(
            f"unsupported content type {content_type!r}: use application/x-protobuf or application/json"
        ) from None


# --- Decoding ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DecodedBatch(Generic[T]):
    """The records of one export request, and how many items in it were refused."""

    records: list[T]
    """Decoded records, in request order."""
    rejected: int = 0
    """Spans or log records skipped because they were malformed (reported as OTLP partial success)."""
    error_message: str = ""
    """Why the first of them was rejected; empty when none was."""


# records.py lists both enums in OTLP number order (pinned by tests/spans/test_otlp.py).
SPAN_KINDS: tuple[SpanKind, ...] = tuple(SpanKind)
"""SpanKind by its OTLP enum number."""
STATUS_CODES: tuple[StatusCode, ...] = tuple(StatusCode)
"""StatusCode by its OTLP enum number."""
"""Log attribute that carried the event name before LogRecord.event_name existed (belongs in semconv)."""
ZERO_TRACE_ID = bytes(16)
ZERO_SPAN_ID = bytes(8)


def span_kind(number: int) -> SpanKind:
    """The SpanKind of an OTLP enum number; UNSPECIFIED for numbers this version does not know."""
    return SPAN_KINDS[number] if 0 <= number < 6 else SpanKind.UNSPECIFIED


def status_code(number: int) -> StatusCode:
    """The StatusCode of an OTLP enum number; UNSET for numbers this version does not know."""
    return STATUS_CODES[number] if 0 <= number < 3 else StatusCode.UNSET


def identity(attributes: Mapping[str, JSON]) -> tuple[str | None, str | None, str | None]:
    """Rollout id, attempt id and experiment stamped in a span's or log's attributes (strings only)."""
    get = attributes.get
    rollout, attempt, experiment = get(semconv.ROLLOUT_ID), get(semconv.ATTEMPT_ID), get(semconv.EXPERIMENT)
    return (
        rollout if type(rollout) is str else None,
        attempt if type(attempt) is str else None,
        experiment if type(experiment) is str else None,
    )


def finite(value: float) -> float | str:
    """A double as stored: non-finite values become the strings "NaN", "Infinity" and "-Infinity"."""
    if math.isfinite(value):
        return value
    return "NaN" if value != value else ("Infinity" if value > 0 else "-Infinity")


def rejection(kind: str, count: int, first_reason: str) -> str:
    """The partial-success message for ``count`` rejected items."""
    return f"rejected {count} {kind}{'' if count == 1 else 's'}; first: {first_reason}" if count else ""


def log_record(
    time_ns: int,
    observed_ns: int,
    trace_id: bytes,
    span_id: bytes,
    severity_number: int,
    severity_text: str,
    body: JSON,
    attributes: dict[str, JSON],
    event_name: str,
    resource: dict[str, JSON],
    scope_name: str,
) -> LogRecord:
    """A LogRecord from decoded OTLP fields, by the rules both encodings share.

    The two times fall back to each other, ``event_name`` to the ``event.name`` attribute; all-zero ids
    read as absent.
    """
    if not event_name:
        named = attributes.get(semconv.EVENT_NAME)
        event_name = named if type(named) is str else ""
    return LogRecord(
        time_ns or observed_ns,
        observed_ns or time_ns,
        trace_id.hex() if any(trace_id) else None,
        span_id.hex() if any(span_id) else None,
        severity_number,
        severity_text,
        body,
        attributes,
        event_name,
        resource,
        scope_name,
        *identity(attributes),
    )


@functools.cache
def _check_backend() -> None:
    from google.protobuf.internal import api_implementation

    if api_implementation.Type() != "upb":
        logger.warning(
            "protobuf uses the %r backend: OTLP decoding will be ~40x slower; install protobuf>=4.21 wheels "
            "and unset PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION to get the upb backend",
            api_implementation.Type(),
        )


def _value(v: Any) -> JSON:
    which = v.WhichOneof("value")
    if which == "string_value":
        return v.string_value
    if which == "int_value":
        return v.int_value
    if which == "double_value":
        return finite(v.double_value)
    if which == "bool_value":
        return v.bool_value
    if which == "array_value":
        return [_value(x) for x in v.array_value.values]
    if which == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in v.kvlist_value.values}
    if which == "bytes_value":
        return base64.b64encode(v.bytes_value).decode("ascii")
    return None  # empty, or a field of a newer schema (string_value_strindex)


def decode_attributes(kvs: Any) -> dict[str, JSON]:
    """A repeated ``KeyValue`` field as a dict of JSON values (the last duplicate wins)."""
    # The hot loop. Fields outside the oneof's set member read as defaults, so a non-empty string or a
    # non-zero int is that value: most attributes skip WhichOneof and the call into _value.
    out = {}
    for kv in kvs:
        v = kv.value
        out[kv.key] = v.string_value or v.int_value or _value(v)
    return out


def parse_message(message: Any, body: bytes) -> Any:
    """``message`` parsed from ``body``; DecodeError if it is not one."""
    _check_backend()
    try:
        message.ParseFromString(body)
    # upb raises DecodeError, also past its nesting limit (~50 AnyValue levels); the pure-Python backend
    # raises UnicodeDecodeError (a ValueError) for invalid UTF-8 strings.
    except (ProtobufDecodeError, ValueError) as exc:
        raise DecodeError(f"body is not a protobuf {type(message).__name__}: {exc}") from None
    return message


def _decode_traces_protobuf(body: bytes) -> DecodedBatch[SpanRecord]:
    request = parse_message(trace_service_pb2.ExportTraceServiceRequest(), body)
    records: list[SpanRecord] = []
    append = records.append
    rejected, reason = 0, ""
    for resource_spans in request.resource_spans:
        resource = decode_attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            scope = scope_spans.scope
            scope_name, scope_version = scope.name, scope.version
            for span in scope_spans.spans:
                problem = span_problem(span)
                if problem:
                    rejected += 1
                    reason = reason or problem
                    continue
                attributes = decode_attributes(span.attributes)
                append(
                    span_from_message(
                        span, attributes, resource, scope_name, scope_version, identity(attributes)
                    )
                )
    return DecodedBatch(records, rejected, rejection("span", rejected, reason))


MAX_TIME_NS = 1 << 63
"""Times at or past this (the year 2262) are refused: the stores keep times as signed 64-bit integers."""


def span_problem(span: Any) -> str:
    """Why a parsed ``Span`` message cannot be stored (malformed ids, times past int64); empty if it can."""
    trace_id, span_id, parent = span.trace_id, span.span_id, span.parent_span_id
    if (
        len(trace_id) != 16
        or len(span_id) != 8
        or trace_id == ZERO_TRACE_ID
        or span_id == ZERO_SPAN_ID
        or (parent and len(parent) != 8)
    ):
        return (
            f"trace_id must be 16 bytes and span_id 8 bytes, not all zero, parent_span_id empty "
            f"or 8 bytes (got {trace_id.hex()!r}, {span_id.hex()!r}, {parent.hex()!r})"
        )
    return time_problem(span.start_time_unix_nano, span.end_time_unix_nano)


def time_problem(*times_ns: int) -> str:
    """Why these times cannot be stored (past int64); empty if they can."""
    if any(t >= MAX_TIME_NS for t in times_ns):
        return f"times must be below 2**63 ns (got {', '.join(map(str, times_ns))})"
    return ""


def span_from_message(
    span: Any,
    attributes: dict[str, JSON],
    resource: dict[str, JSON],
    scope_name: str,
    scope_version: str,
    rollout_identity: tuple[str | None, str | None, str | None],
) -> SpanRecord:
    """The record of a parsed OTLP ``Span`` message whose ids are valid, its attributes already decoded.

    Shared by the request decoder and by the stores, which keep each span's message (spans/encoded.py).
    """
    trace_id, span_id, parent = span.trace_id, span.span_id, span.parent_span_id
    events, links, status, kind = span.events, span.links, span.status, span.kind
    # Positional arguments: ~30% cheaper than keywords for this 18-field frozen dataclass (the order is
    # pinned by tests/spans/test_otlp.py::test_record_fields_are_in_the_order_...).
    return SpanRecord(
        trace_id.hex(),
        span_id.hex(),
        parent.hex() if parent and parent != ZERO_SPAN_ID else None,
        span.name,
        SPAN_KINDS[kind] if 0 <= kind < 6 else SpanKind.UNSPECIFIED,
        span.start_time_unix_nano,
        span.end_time_unix_nano,
        attributes,
        tuple(SpanEvent(e.name, e.time_unix_nano, decode_attributes(e.attributes)) for e in events)
        if events
        else (),
        _links(links) if links else (),
        status_code(status.code),
        status.message,
        resource,
        scope_name,
        scope_version,
        *rollout_identity,
    )


def _links(links: Any) -> tuple[SpanLink, ...]:
    # A malformed link does not make its span unusable: drop the link, keep the span.
    return tuple(
        SpanLink(link.trace_id.hex(), link.span_id.hex(), decode_attributes(link.attributes))
        for link in links
        if len(link.trace_id) == 16 and len(link.span_id) == 8
    )


def _decode_logs_protobuf(body: bytes) -> DecodedBatch[LogRecord]:
    request = parse_message(logs_service_pb2.ExportLogsServiceRequest(), body)
    records: list[LogRecord] = []
    rejected, reason = 0, ""
    for resource_logs in request.resource_logs:
        resource = decode_attributes(resource_logs.resource.attributes)
        for scope_logs in resource_logs.scope_logs:
            scope_name = scope_logs.scope.name
            for log in scope_logs.log_records:
                trace_id, span_id = log.trace_id, log.span_id
                if len(trace_id) not in (0, 16) or len(span_id) not in (0, 8):
                    rejected += 1
                    reason = reason or (
                        f"trace_id must be empty or 16 bytes and span_id empty or 8 bytes "
                        f"(got {trace_id.hex()!r}, {span_id.hex()!r})"
                    )
                    continue
                problem = time_problem(log.time_unix_nano, log.observed_time_unix_nano)
                if problem:
                    rejected += 1
                    reason = reason or problem
                    continue
                records.append(
                    log_record(
                        log.time_unix_nano,
                        log.observed_time_unix_nano,
                        trace_id,
                        span_id,
                        log.severity_number,
                        log.severity_text,
                        _value(log.body),
                        decode_attributes(log.attributes),
                        log.event_name,
                        resource,
                        scope_name,
                    )
                )
    return DecodedBatch(records, rejected, rejection("log record", rejected, reason))


def decode_traces(body: bytes, fmt: OtlpFormat) -> DecodedBatch[SpanRecord]:
    """Decode an (already decompressed) ``ExportTraceServiceRequest`` into span records.

    Raises:
        DecodeError: the body is not a trace export request in that format.
    """
    if fmt is OtlpFormat.PROTOBUF:
        return _decode_traces_protobuf(body)
    # Imported here: otlp_json builds on this module's helpers.
    from otel_lightning.spans import otlp_json

    return otlp_json.decode_traces_json(body)


def decode_logs(body: bytes, fmt: OtlpFormat) -> DecodedBatch[LogRecord]:
    """Decode an (already decompressed) ``ExportLogsServiceRequest`` into log records.

    Raises:
        DecodeError: the body is not a logs export request in that format.
    """
    if fmt is OtlpFormat.PROTOBUF:
        return _decode_logs_protobuf(body)
    from otel_lightning.spans import otlp_json

    return otlp_json.decode_logs_json(body)


# --- Encoding ----------------------------------------------------------------------------------------------

_RESPONSES: dict[str, tuple[type[Any], str, str]] = {  # class, partial_success field, its JSON name
    "traces": (trace_service_pb2.ExportTraceServiceResponse, "rejected_spans", "rejectedSpans"),
    "logs": (logs_service_pb2.ExportLogsServiceResponse, "rejected_log_records", "rejectedLogRecords"),
    "metrics": (metrics_pb2.ExportMetricsServiceResponse, "rejected_data_points", "rejectedDataPoints"),
}


def encode_export_response(signal: str, fmt: OtlpFormat, rejected: int = 0, message: str = "") -> bytes:
    """The ``Export{Trace,Logs,Metrics}ServiceResponse`` body for ``signal`` ("traces", "logs", "metrics").

    ``partial_success`` is set only when ``rejected > 0``.

    Raises:
        ValueError: an unknown signal.
    """
    try:
        response_class, field, json_field = _RESPONSES[signal]
    except KeyError:
        raise ValueError(f"unknown OTLP signal {signal!r}") from None
    if fmt is OtlpFormat.JSON:
        if rejected <= 0:
            return b"{}"
        partial = {json_field: str(rejected), "errorMessage": message}  # int64 is a string in OTLP JSON
        return json.dumps({"partialSuccess": partial}).encode()
    response = response_class()
    if rejected > 0:
        setattr(response.partial_success, field, rejected)
        response.partial_success.error_message = message
    return response.SerializeToString()


def encode_traces(spans: Sequence[SpanRecord], fmt: OtlpFormat) -> bytes:
    """Encode span records as an ``ExportTraceServiceRequest``: the inverse of :func:`decode_traces`.

    Spans are grouped by resource and scope, in order of first appearance. Rollout identity fields missing
    from a span's attributes are written into them, so that decoding gives the same records back.
    """
    # Imported here: otlp_encode builds on this module's helpers.
    from otel_lightning.spans import otlp_encode

    if fmt is OtlpFormat.JSON:
        return otlp_encode.encode_traces_json(spans)
    return otlp_encode.encode_traces_protobuf(spans)
