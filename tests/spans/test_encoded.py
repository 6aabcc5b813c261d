"""Spans as stored (spans/encoded.py): straight from a request, from records, and back to records."""

from __future__ import annotations

import dataclasses

import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from otel_lightning.exceptions import DecodeError
from otel_lightning.spans.encoded import EncodedSpan, decode_encoded_spans, encode_span, record_of
from otel_lightning.spans.otlp import OtlpFormat, decode_traces
from otel_lightning.spans.records import SpanEvent, SpanKind, SpanLink, SpanRecord, StatusCode
from tests.spans.test_otlp import TRACE_A, rich_request


def test_encoded_spans_read_back_as_the_records_of_the_request() -> None:
    body = rich_request().SerializeToString()
    encoded = decode_encoded_spans(body)
    records = decode_traces(body, OtlpFormat.PROTOBUF)
    assert [record_of(s) for s in encoded.records] == records.records
    assert (encoded.rejected, encoded.error_message) == (records.rejected, records.error_message)
    root = encoded.records[0]
    # The columns the stores index: identity only from string attributes, enums as their stored names.
    assert (root.rollout_id, root.attempt_id, root.experiment) == ("ro-1", "at-1", None)
    assert (root.kind, root.status_code, root.status_message) == ("internal", "error", "boom")
    assert encoded.records[2].kind == "unspecified"  # a kind from the future
    assert encoded.records[1].parent_span_id == root.span_id


def test_spans_with_malformed_ids_are_rejected_as_the_record_decoder_does() -> None:
    request = rich_request()
    bad = request.resource_spans[0].scope_spans[0].spans.add()
    bad.CopyFrom(Span(trace_id=TRACE_A, span_id=b"\x01\x02", name="short id"))
    body = request.SerializeToString()
    encoded, records = decode_encoded_spans(body), decode_traces(body, OtlpFormat.PROTOBUF)
    assert encoded.rejected == records.rejected == 1
    assert encoded.error_message == records.error_message
    assert [record_of(s) for s in encoded.records] == records.records


def test_a_body_that_is_not_a_request_is_a_decode_error() -> None:
    with pytest.raises(DecodeError):
        decode_encoded_spans(b"\xff\xff\xff")


def test_records_round_trip_through_their_encoded_form() -> None:
    record = SpanRecord(
        trace_id="ab" * 16,
        span_id="cd" * 8,
        parent_span_id="ef" * 8,
        name="tool",
        kind=SpanKind.CLIENT,
        start_ns=1,
        end_ns=2**63 + 5,  # fixed64 on the wire: past int64 is fine
        attributes={"s": "x", "i": 3, "f": 0.5, "b": True, "none": None, "list": [1, "a"], "map": {"k": [2]}},
        events=(SpanEvent("e", 7, {"k": "v"}),),
        links=(SpanLink("12" * 16, "34" * 8, {"why": "retry"}),),
        status_code=StatusCode.OK,
        status_message="",
        resource={"service.name": "agent"},
        scope_name="lib",
        scope_version="1.0",
        rollout_id="r",  # not among the attributes: kept in the columns, not added to the message
        attempt_id="a",
        experiment="e",
    )
    encoded = encode_span(record)
    assert isinstance(encoded, EncodedSpan) and encoded.rollout_id == "r"
    assert record_of(encoded) == record
    bare = dataclasses.replace(record, resource={}, events=(), links=(), attributes={}, parent_span_id=None)
    assert encode_span(bare).otlp_resource == b""
    assert record_of(encode_span(bare)) == bare


def test_lone_surrogates_are_replaced_not_refused() -> None:
    record = SpanRecord(
        trace_id="ab" * 16,
        span_id="cd" * 8,
        parent_span_id=None,
        name="n\ud800",
        kind=SpanKind.INTERNAL,
        start_ns=1,
        end_ns=2,
        attributes={"k\udfff": ["v\ud800"]},
        events=(SpanEvent("e\ud800", 1, {"a": "\ud800"}),),
        resource={"r": "\ud800"},
    )
    back = record_of(encode_span(record))
    assert back.name == "n\ufffd" and back.attributes == {"k\ufffd": ["v\ufffd"]}
    assert back.events == (SpanEvent("e\ufffd", 1, {"a": "\ufffd"}),)
    assert back.resource == {"r": "\ufffd"}


def test_a_damaged_stored_message_is_a_decode_error() -> None:
    encoded = encode_span(record_of(decode_encoded_spans(rich_request().SerializeToString()).records[0]))
    with pytest.raises(DecodeError):
        record_of(encoded._replace(otlp_span=b"\xff\xff"))
