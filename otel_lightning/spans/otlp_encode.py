"""Records -> OTLP, in either encoding: the inverse of the decoders, for tests, benchmarks and forwarding.

:func:`otel_lightning.spans.otlp.encode_traces` is the entry point; the stores use :func:`span_message` and
:func:`key_values` to keep a record as its OTLP ``Span`` message (spans/encoded.py).
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList
from opentelemetry.proto.common.v1.common_pb2 import InstrumentationScope as Scope
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

from otel_lightning import semconv
from otel_lightning.resources import JSON
from otel_lightning.spans.otlp import (
    SPAN_KINDS,
    STATUS_CODES,
    finite,
)
from otel_lightning.spans.records import SpanRecord

__all__ = ["encode_traces_json", "encode_traces_protobuf", "key_values", "span_message"]


def encode_traces_protobuf(spans: Sequence[SpanRecord]) -> bytes:
    """Span records as a protobuf ``ExportTraceServiceRequest`` (see :func:`~.otlp.encode_traces`)."""
    request = ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(
                resource=Resource(attributes=key_values(resource)),
                scope_spans=[
                    ScopeSpans(
                        scope=Scope(name=name, version=version), spans=[span_message(r) for r in group]
                    )
                    for (name, version), group in scopes.items()
                ],
            )
            for resource, scopes in group_spans(spans)
        ]
    )
    return request.SerializeToString()


def group_spans(
    spans: Sequence[SpanRecord],
) -> list[tuple[Mapping[str, JSON], dict[tuple[str, str], list[SpanRecord]]]]:
    """Spans grouped by resource, then by (scope name, scope version), in order of first appearance."""
    groups: dict[str, tuple[Mapping[str, JSON], dict[tuple[str, str], list[SpanRecord]]]] = {}
    for record in spans:
        key = json.dumps(record.resource, sort_keys=True, default=str)
        _, scopes = groups.setdefault(key, (record.resource, {}))
        scopes.setdefault((record.scope_name, record.scope_version), []).append(record)
    return list(groups.values())


def stamped_attributes(record: SpanRecord) -> Mapping[str, JSON]:
    """A span's attributes with its rollout identity fields added where they are missing."""
    identity_fields = zip(
        (semconv.ROLLOUT_ID, semconv.ATTEMPT_ID, semconv.EXPERIMENT),
        (record.rollout_id, record.attempt_id, record.experiment),
        strict=True,
    )
    missing = {k: v for k, v in identity_fields if v is not None and k not in record.attributes}
    return {**record.attributes, **missing} if missing else record.attributes


def span_message(record: SpanRecord, stamp_identity: bool = True) -> Span:
    """The OTLP ``Span`` message of a record; its rollout identity is added to the attributes where missing,
    unless ``stamp_identity`` is False."""
    attributes = stamped_attributes(record) if stamp_identity else record.attributes
    return Span(
        trace_id=bytes.fromhex(record.trace_id),
        span_id=bytes.fromhex(record.span_id),
        parent_span_id=bytes.fromhex(record.parent_span_id or ""),
        name=record.name,
        kind=SPAN_KINDS.index(record.kind),  # type: ignore[arg-type]
        start_time_unix_nano=record.start_ns,
        end_time_unix_nano=record.end_ns,
        attributes=key_values(attributes),
        events=[
            Span.Event(name=e.name, time_unix_nano=e.time_ns, attributes=key_values(e.attributes))
            for e in record.events
        ],
        links=[
            Span.Link(
                trace_id=bytes.fromhex(lk.trace_id),
                span_id=bytes.fromhex(lk.span_id),
                attributes=key_values(lk.attributes),
            )
            for lk in record.links
        ],
        status=Status(
            code=STATUS_CODES.index(record.status_code),  # type: ignore[arg-type]
            message=record.status_message,
        ),
    )


def key_values(attributes: Mapping[str, JSON]) -> list[KeyValue]:
    """Attributes as OTLP ``KeyValue`` messages; a key that is not a string is written as its ``str``."""
    return [KeyValue(key=str(key), value=_any_value(value)) for key, value in attributes.items()]


def _any_value(value: JSON) -> AnyValue:
    if value is None:
        return AnyValue()
    if isinstance(value, str):
        return AnyValue(string_value=value)
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        # OTLP integers are int64; a bigger Python int is kept exactly, as its decimal string.
        return AnyValue(int_value=value) if -(2**63) <= value < 2**63 else AnyValue(string_value=str(value))
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, bytes | bytearray):
        return AnyValue(bytes_value=bytes(value))
    if isinstance(value, Mapping):
        return AnyValue(kvlist_value=KeyValueList(values=key_values(value)))
    if isinstance(value, list | tuple | set | frozenset):
        return AnyValue(array_value=ArrayValue(values=[_any_value(item) for item in value]))
    return AnyValue(string_value=str(value))


def encode_traces_json(spans: Sequence[SpanRecord]) -> bytes:
    """Span records as an OTLP JSON ``ExportTraceServiceRequest`` (hex ids, int64 as strings, int enums)."""
    resource_spans = []
    for resource, scopes in group_spans(spans):
        scope_spans = [
            {"scope": {"name": name, "version": version}, "spans": [_span_json(span) for span in group]}
            for (name, version), group in scopes.items()
        ]
        resource_spans.append(
            {"resource": {"attributes": _attributes_json(resource)}, "scopeSpans": scope_spans}
        )
    return json.dumps({"resourceSpans": resource_spans}, separators=(",", ":")).encode()


def _span_json(span: SpanRecord) -> dict[str, Any]:
    out: dict[str, Any] = {
        "traceId": span.trace_id,
        "spanId": span.span_id,
        "name": span.name,
        "kind": SPAN_KINDS.index(span.kind),
        "startTimeUnixNano": str(span.start_ns),
        "endTimeUnixNano": str(span.end_ns),
        "attributes": _attributes_json(stamped_attributes(span)),
        "status": {"code": STATUS_CODES.index(span.status_code), "message": span.status_message},
    }
    if span.parent_span_id:
        out["parentSpanId"] = span.parent_span_id
    if span.events:
        out["events"] = [
            {"name": e.name, "timeUnixNano": str(e.time_ns), "attributes": _attributes_json(e.attributes)}
            for e in span.events
        ]
    if span.links:
        out["links"] = [
            {"traceId": lk.trace_id, "spanId": lk.span_id, "attributes": _attributes_json(lk.attributes)}
            for lk in span.links
        ]
    return out


def _attributes_json(attributes: Mapping[str, JSON]) -> list[dict[str, Any]]:
    return [{"key": key, "value": _value_json(value)} for key, value in attributes.items()]


def _value_json(value: JSON) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, str):
        return {"stringValue": value}
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value if math.isfinite(value) else finite(value)}
    if isinstance(value, bytes | bytearray):
        return {"bytesValue": base64.b64encode(value).decode("ascii")}
    if isinstance(value, Mapping):
        return {"kvlistValue": {"values": _attributes_json(value)}}
    if isinstance(value, list | tuple):
        return {"arrayValue": {"values": [_value_json(item) for item in value]}}
    return {"stringValue": str(value)}
