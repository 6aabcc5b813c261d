"""Spans as the stores keep them: a few columns to find them by, and the OTLP ``Span`` message itself.

Ingest is the hot path and reading is rare, so a span is stored as it arrived: :class:`EncodedSpan` holds
the columns that queries filter and sort on (ids, name, times, status, rollout identity, scope) and the
span's own protobuf bytes, plus its resource's. Attributes, events and links are decoded only when a span is
read (:func:`record_of`). Going straight from an export request to encoded spans
(:func:`decode_encoded_spans`) skips building attribute dicts and encoding them as JSON: ~2.5x cheaper per
span than decoding records and writing them as JSON rows.

Records that do not come from a protobuf request (OTLP JSON, a caller of ``Store.add_spans``) are encoded with
:func:`encode_span`. Everything here is pure: bytes and records in, bytes and records out.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, NamedTuple

from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from otel_lightning import semconv
from otel_lightning.resources import JSON
from otel_lightning.spans.otlp import (
    ZERO_SPAN_ID,
    DecodedBatch,
    decode_attributes,
    parse_message,
    rejection,
    span_from_message,
    span_problem,
)
from otel_lightning.spans.otlp_encode import key_values, span_message
from otel_lightning.spans.records import SpanEvent, SpanKind, SpanLink, SpanRecord, StatusCode

__all__ = ["EncodedSpan", "decode_encoded_spans", "encode_span", "record_of"]

_KINDS = tuple(kind.value for kind in SpanKind)  # by OTLP enum number (records.py keeps that order)
_STATUSES = tuple(code.value for code in StatusCode)
_IDENTITY_KEYS = {semconv.ROLLOUT_ID: 0, semconv.ATTEMPT_ID: 1, semconv.EXPERIMENT: 2}


class EncodedSpan(NamedTuple):
    """One span as stored, field for column (a tuple, so a database driver takes it as a row)."""

    trace_id: str
    """Lowercase hex, as in :class:`~otel_lightning.spans.records.SpanRecord`; so are the other ids."""
    span_id: str
    parent_span_id: str | None
    name: str
    kind: str
    """A :class:`~otel_lightning.spans.records.SpanKind` value."""
    start_ns: int
    end_ns: int
    status_code: str
    """A :class:`~otel_lightning.spans.records.StatusCode` value."""
    status_message: str
    rollout_id: str | None
    attempt_id: str | None
    experiment: str | None
    scope_name: str
    scope_version: str
    otlp_span: bytes
    """The serialized OTLP ``Span`` message: attributes, events, links and all."""
    otlp_resource: bytes
    """The serialized OTLP ``Resource`` message of the span's producer (shared by its request's spans)."""


def decode_encoded_spans(body: bytes) -> DecodedBatch[EncodedSpan]:
    """Encoded spans of an (already decompressed) protobuf ``ExportTraceServiceRequest``.

    The same spans as :func:`otel_lightning.spans.otlp.decode_traces` would give, rejected alike (malformed
    ids, times past int64), with the same rollout identity (string attributes only).

    Raises:
        DecodeError: the body is not a protobuf trace export request.
    """
    request = parse_message(trace_service_pb2.ExportTraceServiceRequest(), body)
    spans: list[EncodedSpan] = []
    append = spans.append
    kinds, statuses, keys = _KINDS, _STATUSES, _IDENTITY_KEYS
    rejected, reason = 0, ""
    for resource_spans in request.resource_spans:
        resource = resource_spans.resource.SerializeToString()
        for scope_spans in resource_spans.scope_spans:
            scope = scope_spans.scope
            scope_name, scope_version = scope.name, scope.version
            for span in scope_spans.spans:
                problem = span_problem(span)
                if problem:
                    rejected += 1
                    reason = reason or problem
                    continue
                # Only the three identity keys are looked at; no other attribute is decoded.
                found: list[str | None] = [None, None, None]
                for kv in span.attributes:
                    slot = keys.get(kv.key)
                    if slot is not None:
                        value = kv.value
                        found[slot] = (
                            value.string_value if value.WhichOneof("value") == "string_value" else None
                        )
                parent, kind, status = span.parent_span_id, span.kind, span.status
                append(
                    EncodedSpan(
                        span.trace_id.hex(),
                        span.span_id.hex(),
                        parent.hex() if parent and parent != ZERO_SPAN_ID else None,
                        span.name,
                        kinds[kind] if 0 <= kind < 6 else "unspecified",
                        span.start_time_unix_nano,
                        span.end_time_unix_nano,
                        statuses[status.code] if 0 <= status.code < 3 else "unset",
                        status.message,
                        found[0],
                        found[1],
                        found[2],
                        scope_name,
                        scope_version,
                        span.SerializeToString(),
                        resource,
                    )
                )
    return DecodedBatch(spans, rejected, rejection("span", rejected, reason))


def encode_span(record: SpanRecord) -> EncodedSpan:
    """The encoded form of a record; :func:`record_of` gives the record back.

    Strings that UTF-8 cannot encode (lone surrogates, which OTLP JSON can carry) are stored with U+FFFD in
    their place rather than refused.
    """
    try:
        return _encode(record)
    except UnicodeEncodeError:
        return _encode(_scrubbed_record(record))


def _encode(record: SpanRecord) -> EncodedSpan:
    message = span_message(record, stamp_identity=False)
    resource = (
        Resource(attributes=key_values(record.resource)).SerializeToString() if record.resource else b""
    )
    return EncodedSpan(
        record.trace_id,
        record.span_id,
        record.parent_span_id,
        record.name,
        record.kind.value,
        record.start_ns,
        record.end_ns,
        record.status_code.value,
        record.status_message,
        record.rollout_id,
        record.attempt_id,
        record.experiment,
        record.scope_name,
        record.scope_version,
        message.SerializeToString(),
        resource,
    )


def record_of(span: EncodedSpan) -> SpanRecord:
    """The record of an encoded span: attributes, events and links decoded from its message.

    Raises:
        DecodeError: the stored message is not a protobuf ``Span`` (a damaged row).
    """
    message = parse_message(Span(), span.otlp_span)
    return span_from_message(
        message,
        decode_attributes(message.attributes),
        _resource(span.otlp_resource),
        span.scope_name,
        span.scope_version,
        (span.rollout_id, span.attempt_id, span.experiment),
    )


@functools.lru_cache(maxsize=256)
def _resource(raw: bytes) -> dict[str, JSON]:
    # A few producers write all the spans: their resources decode once. Records share the dict, as the
    # spans of one request do when decoded from it; records are read-only.
    return decode_attributes(parse_message(Resource(), raw).attributes) if raw else {}


# --- lone surrogates ---------------------------------------------------------------------------------------

_SURROGATE = re.compile("[\ud800-\udfff]")


def _scrubbed(value: Any) -> Any:
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, Mapping):
        return {_scrubbed(k): _scrubbed(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrubbed(v) for v in value]
    return value


def _scrubbed_record(record: SpanRecord) -> SpanRecord:
    text = {
        name: _scrubbed(getattr(record, name))
        for name in ("name", "status_message", "scope_name", "scope_version", "rollout_id", "attempt_id")
    }
    return replace(
        record,
        **text,
        experiment=_scrubbed(record.experiment),
        attributes=_scrubbed(record.attributes),
        resource=_scrubbed(record.resource),
        events=tuple(SpanEvent(_scrubbed(e.name), e.time_ns, _scrubbed(e.attributes)) for e in record.events),
        links=tuple(SpanLink(lk.trace_id, lk.span_id, _scrubbed(lk.attributes)) for lk in record.links),
    )
