"""OTLP JSON -> records by walking ``json.loads`` output (records -> OTLP is in spans/otlp_encode.py).

Never ``json_format``: it reads ids as base64 and is ~10x slower. OTLP JSON is proto3 JSON except that trace
and span ids are hex, enums are integers and unknown fields are ignored. As a tolerant reader the decoder also
takes what proto3 JSON writers produce: snake_case names, enum names (``"SPAN_KIND_SERVER"``), int64 as
numbers or strings, doubles as strings (``"NaN"``), base64 ids (their lengths never collide with hex ones).

Structural errors (an array where an object belongs, a string where a number belongs) raise
:class:`~otel_lightning.exceptions.DecodeError`; a span with a malformed id is skipped and counted as
rejected. Callers use :func:`otel_lightning.spans.otlp.decode_traces` and friends rather than this module.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from opentelemetry.proto.logs.v1 import logs_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from otel_lightning.exceptions import DecodeError
from otel_lightning.resources import JSON
from otel_lightning.spans.otlp import (
    DecodedBatch,
    finite,
    identity,
    log_record,
    rejection,
    span_kind,
    status_code,
    time_problem,
)
from otel_lightning.spans.records import LogRecord, SpanEvent, SpanLink, SpanRecord

__all__ = ["decode_logs_json", "decode_traces_json"]

_KIND_NAMES = dict(trace_pb2.Span.SpanKind.items())
_STATUS_NAMES = dict(trace_pb2.Status.StatusCode.items())
_SEVERITY_NAMES = dict(logs_pb2.SeverityNumber.items())
_NON_FINITE = frozenset({"NaN", "Infinity", "-Infinity"})
_INT64 = (-(1 << 63), 1 << 63)
_UINT64 = (0, 1 << 64)
_INT32 = (-(1 << 31), 1 << 31)


def _field(obj: dict[str, Any], camel: str, snake: str) -> Any:
    value = obj.get(camel)
    return obj.get(snake) if value is None else value


def _list(value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if type(value) is not list:
        raise DecodeError(f"{where} must be a JSON array, not {type(value).__name__}")
    return value


def _object(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if type(value) is not dict:
        raise DecodeError(f"{where} must be a JSON object, not {type(value).__name__}")
    return value


def _string(value: Any, where: str) -> str:
    if value is None:
        return ""
    if type(value) is not str:
        raise DecodeError(f"{where} must be a string, not {type(value).__name__}")
    return value


def _integer(value: Any, where: str, bounds: tuple[int, int] = _UINT64) -> int:
    """An int64/fixed64 field: a decimal string or a JSON number with no fraction."""
    if value is None:
        return 0
    if type(value) is str:
        try:
            number = int(value, 10)
        except ValueError:
            raise DecodeError(f"{where} must be an integer, not {value[:40]!r}") from None
    elif type(value) is int:
        number = value
    elif type(value) is float and value.is_integer():
        number = int(value)
    else:
        raise DecodeError(f"{where} must be an integer, not {type(value).__name__}")
    if not bounds[0] <= number < bounds[1]:
        raise DecodeError(f"{where} is out of range: {number}")
    return number


def _enum(value: Any, names: dict[str, int], where: str) -> int:
    # Enums are integers in OTLP JSON; proto3 JSON writers use names. Unknown names read as 0.
    if type(value) is str and not value.lstrip("-").isdigit():
        return names.get(value, 0)
    return _integer(value, where, _INT32)


def _double(value: Any, where: str) -> float | str:
    if type(value) is float:
        return finite(value)
    if type(value) is int:
        return float(value) if abs(value) < 1 << 1023 else ("Infinity" if value > 0 else "-Infinity")
    if type(value) is str:
        if value in _NON_FINITE:
            return value
        try:
            return finite(float(value))
        except ValueError:
            pass
    raise DecodeError(f"{where} must be a number")


def _value(value: Any) -> JSON:
    """An AnyValue object as a Python value (see :mod:`otel_lightning.spans.otlp` for the mapping)."""
    if type(value) is not dict:
        if value is None:
            return None
        raise DecodeError(f"an AnyValue must be a JSON object, not {type(value).__name__}")
    s = value.get("stringValue")
    if type(s) is str:
        return s
    if not value:
        return None
    return _other_value(value)


def _other_value(value: dict[str, Any]) -> JSON:
    if (s := _field(value, "stringValue", "string_value")) is not None:
        return _string(s, "stringValue")
    if (b := _field(value, "boolValue", "bool_value")) is not None:
        if type(b) is not bool:
            raise DecodeError("boolValue must be true or false")
        return b
    if (i := _field(value, "intValue", "int_value")) is not None:
        return _integer(i, "intValue", _INT64)
    if (d := _field(value, "doubleValue", "double_value")) is not None:
        return _double(d, "doubleValue")
    if (a := _field(value, "arrayValue", "array_value")) is not None:
        return [_value(item) for item in _list(_object(a, "arrayValue").get("values"), "arrayValue.values")]
    if (kv := _field(value, "kvlistValue", "kvlist_value")) is not None:
        return _attributes(_object(kv, "kvlistValue").get("values"))
    if (raw := _field(value, "bytesValue", "bytes_value")) is not None:
        return base64.b64encode(_bytes(raw, "bytesValue")).decode("ascii")
    return None  # empty, or a field of a newer schema: ignored


def _attributes(kvs: Any) -> dict[str, JSON]:
    out: dict[str, JSON] = {}
    for kv in _list(kvs, "attributes"):
        if type(kv) is not dict:
            raise DecodeError(f"an attribute must be a JSON object, not {type(kv).__name__}")
        key, value = kv.get("key"), kv.get("value")
        if type(key) is not str:
            key = _string(key, "attribute key")
        # Inlined fast path of _value for string values, most of them.
        s = value.get("stringValue") if type(value) is dict else None
        out[key] = s if type(s) is str else _value(value)
    return out


def _bytes(value: Any, where: str) -> bytes:
    text = _string(value, where)
    try:  # proto3 JSON accepts standard and URL-safe base64, padded or not
        return base64.b64decode(
            text.replace("-", "+").replace("_", "/") + "=" * (-len(text) % 4), validate=True
        )
    except (binascii.Error, ValueError):
        raise DecodeError(f"{where} is not base64") from None


def _id(value: Any, size: int) -> bytes | None:
    """An id as bytes: b"" when absent, None when malformed. Hex as OTLP says; base64 as proto3 JSON says."""
    if value is None or value == "":
        return b""
    if type(value) is not str:
        return None
    if len(value) == 2 * size:
        try:
            raw = bytes.fromhex(value)
        except ValueError:
            return None
    else:
        try:
            raw = _bytes(value, "id")
        except DecodeError:
            return None
    return raw if len(raw) == size else None


def decode_traces_json(body: bytes) -> DecodedBatch[SpanRecord]:
    """Decode an OTLP JSON ``ExportTraceServiceRequest`` (see :func:`~.otlp.decode_traces`)."""
    request = _load(body)
    records: list[SpanRecord] = []
    rejected, reason = 0, ""
    for resource_spans in _list(_field(request, "resourceSpans", "resource_spans"), "resourceSpans"):
        resource_spans = _object(resource_spans, "resourceSpans[]")
        resource = _attributes(_object(resource_spans.get("resource"), "resource").get("attributes"))
        for scope_spans in _list(_field(resource_spans, "scopeSpans", "scope_spans"), "scopeSpans"):
            scope_spans = _object(scope_spans, "scopeSpans[]")
            scope = _object(scope_spans.get("scope"), "scope")
            scope_name, scope_version = (
                _string(scope.get("name"), "name"),
                _string(scope.get("version"), "version"),
            )
            for span in _list(scope_spans.get("spans"), "spans"):
                span = _object(span, "spans[]")
                trace_id = _id(_field(span, "traceId", "trace_id"), 16)
                span_id = _id(_field(span, "spanId", "span_id"), 8)
                parent = _id(_field(span, "parentSpanId", "parent_span_id"), 8)
                if not trace_id or not span_id or parent is None or not any(trace_id) or not any(span_id):
                    rejected += 1
                    reason = reason or (
                        f"traceId must be 16 bytes and spanId 8 bytes, in hex, not all zero; parentSpanId "
                        f"empty or 8 bytes (got {span.get('traceId')!r}, {span.get('spanId')!r}, "
                        f"{span.get('parentSpanId')!r})"
                    )
                    continue
                start_ns = _integer(_field(span, "startTimeUnixNano", "start_time_unix_nano"), "start")
                end_ns = _integer(_field(span, "endTimeUnixNano", "end_time_unix_nano"), "end")
                problem = time_problem(start_ns, end_ns)
                if problem:
                    rejected += 1
                    reason = reason or problem
                    continue
                attributes = _attributes(span.get("attributes"))
                status = _object(span.get("status"), "status")
                rollout_id, attempt_id, experiment = identity(attributes)
                records.append(
                    SpanRecord(
                        trace_id=trace_id.hex(),
                        span_id=span_id.hex(),
                        parent_span_id=parent.hex() if any(parent) else None,
                        name=_string(span.get("name"), "name"),
                        kind=span_kind(_enum(span.get("kind"), _KIND_NAMES, "kind")),
                        start_ns=start_ns,
                        end_ns=end_ns,
                        attributes=attributes,
                        events=tuple(_event(event) for event in _list(span.get("events"), "events")),
                        links=tuple(_links(span.get("links"))),
                        status_code=status_code(_enum(status.get("code"), _STATUS_NAMES, "status.code")),
                        status_message=_string(status.get("message"), "status.message"),
                        resource=resource,
                        scope_name=scope_name,
                        scope_version=scope_version,
                        rollout_id=rollout_id,
                        attempt_id=attempt_id,
                        experiment=experiment,
                    )
                )
    return DecodedBatch(records, rejected, rejection("span", rejected, reason))


def _event(event: Any) -> SpanEvent:
    event = _object(event, "events[]")
    return SpanEvent(
        _string(event.get("name"), "event name"),
        _integer(_field(event, "timeUnixNano", "time_unix_nano"), "event time"),
        _attributes(event.get("attributes")),
    )


def _links(links: Any) -> list[SpanLink]:
    out = []
    for link in _list(links, "links"):
        link = _object(link, "links[]")
        trace_id = _id(_field(link, "traceId", "trace_id"), 16)
        span_id = _id(_field(link, "spanId", "span_id"), 8)
        if trace_id and span_id:  # a malformed link is dropped; its span is kept
            out.append(SpanLink(trace_id.hex(), span_id.hex(), _attributes(link.get("attributes"))))
    return out


def decode_logs_json(body: bytes) -> DecodedBatch[LogRecord]:
    """Decode an OTLP JSON ``ExportLogsServiceRequest`` (see :func:`~.otlp.decode_logs`)."""
    request = _load(body)
    records: list[LogRecord] = []
    rejected, reason = 0, ""
    for resource_logs in _list(_field(request, "resourceLogs", "resource_logs"), "resourceLogs"):
        resource_logs = _object(resource_logs, "resourceLogs[]")
        resource = _attributes(_object(resource_logs.get("resource"), "resource").get("attributes"))
        for scope_logs in _list(_field(resource_logs, "scopeLogs", "scope_logs"), "scopeLogs"):
            scope_logs = _object(scope_logs, "scopeLogs[]")
            scope_name = _string(_object(scope_logs.get("scope"), "scope").get("name"), "scope name")
            for log in _list(_field(scope_logs, "logRecords", "log_records"), "logRecords"):
                log = _object(log, "logRecords[]")
                trace_id = _id(_field(log, "traceId", "trace_id"), 16)
                span_id = _id(_field(log, "spanId", "span_id"), 8)
                if trace_id is None or span_id is None:
                    rejected += 1
                    reason = reason or (
                        f"traceId must be empty or 16 bytes and spanId empty or 8 bytes, in hex "
                        f"(got {log.get('traceId')!r}, {log.get('spanId')!r})"
                    )
                    continue
                time_ns = _integer(_field(log, "timeUnixNano", "time_unix_nano"), "timeUnixNano")
                observed_ns = _integer(
                    _field(log, "observedTimeUnixNano", "observed_time_unix_nano"), "observedTime"
                )
                problem = time_problem(time_ns, observed_ns)
                if problem:
                    rejected += 1
                    reason = reason or problem
                    continue
                records.append(
                    log_record(
                        time_ns,
                        observed_ns,
                        trace_id,
                        span_id,
                        _enum(_field(log, "severityNumber", "severity_number"), _SEVERITY_NAMES, "severity"),
                        _string(_field(log, "severityText", "severity_text"), "severityText"),
                        _value(log.get("body")),
                        _attributes(log.get("attributes")),
                        _string(_field(log, "eventName", "event_name"), "eventName"),
                        resource,
                        scope_name,
                    )
                )
    return DecodedBatch(records, rejected, rejection("log record", rejected, reason))


def _load(body: bytes) -> dict[str, Any]:
    try:
        request = json.loads(body)
    except (ValueError, RecursionError) as exc:  # ValueError covers JSONDecodeError and UnicodeDecodeError
        raise DecodeError(f"body is not JSON: {exc}") from None
    if type(request) is not dict:
        raise DecodeError(f"body must be a JSON object, not {type(request).__name__}")
    return request
