"""Fuzzing the OTLP decoders: whatever the body, they return records or raise DecodeError, nothing else."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from otel_lightning.exceptions import DecodeError
from otel_lightning.spans.encoded import decode_encoded_spans, record_of
from otel_lightning.spans.otlp import OtlpFormat, decode_logs, decode_traces

FUZZ = settings(
    max_examples=200,
    deadline=2000,  # ms per example; the suite stays at a few seconds
    derandomize=True,  # deterministic: the same examples on every run
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
HEX_ID = re.compile(r"[0-9a-f]{16}([0-9a-f]{16})?")

leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),
    st.text(max_size=20),
    st.sampled_from(["NaN", "-Infinity", "1e3", "12", "-3", "SPAN_KIND_CLIENT", "AAAAAAAAAAAAAAAAAAAAAA=="]),
)
json_values = st.recursive(
    leaves,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=12,
)


def weighted(
    likely: st.SearchStrategy[Any], rare: st.SearchStrategy[Any], odds: int
) -> st.SearchStrategy[Any]:
    """``likely`` ``odds`` times out of ``odds + 1``, else ``rare`` (one_of would pick each half the time)."""
    return st.integers(min_value=0, max_value=odds).flatmap(lambda i: rare if i == 0 else likely)


def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly the right shape, sometimes anything at all."""
    return weighted(strategy, json_values, 15)


def objects(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """JSON objects with any subset of ``fields`` (each maybe ill-typed) and sometimes an unknown field."""
    return st.fixed_dictionaries(
        {}, optional={**{k: maybe(v) for k, v in fields.items()}, "unknownField": json_values}
    )


odd_ids = st.one_of(st.binary(max_size=17).map(bytes.hex), st.text(max_size=33))
trace_ids = weighted(st.binary(min_size=16, max_size=16).map(bytes.hex), odd_ids, 4)
span_ids = weighted(st.binary(min_size=8, max_size=8).map(bytes.hex), odd_ids, 4)
times = weighted(
    st.integers(min_value=0, max_value=2**64 - 1) | st.integers(min_value=0, max_value=2**64 - 1).map(str),
    st.integers(min_value=-(2**70), max_value=2**70) | st.floats() | st.text(max_size=5),
    4,
)
int64s = weighted(
    st.integers(min_value=-(2**63), max_value=2**63 - 1) | st.integers(-(2**63), 2**63 - 1).map(str),
    st.integers(min_value=-(2**70), max_value=2**70) | st.floats() | st.text(max_size=5),
    4,
)
base64s = weighted(st.binary(max_size=8).map(lambda b: base64.b64encode(b).decode()), st.text(max_size=12), 4)


def one_field(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """An AnyValue-like object: one of ``fields`` (maybe ill-typed), or none."""
    return st.one_of(st.just({}), *[st.builds(lambda v, k=k: {k: v}, maybe(s)) for k, s in fields.items()])


any_values = st.recursive(
    one_field(
        stringValue=st.text(max_size=10),
        intValue=int64s,
        doubleValue=weighted(st.floats(), st.sampled_from(["NaN", "Infinity", "0.5", "x"]), 4),
        boolValue=st.booleans(),
        bytesValue=base64s,
    ),
    lambda children: one_field(
        arrayValue=objects(values=st.lists(children, max_size=3)),
        kvlistValue=objects(values=st.lists(objects(key=st.text(max_size=5), value=children), max_size=3)),
    ),
    max_leaves=8,
)
key_values = st.lists(maybe(objects(key=st.text(max_size=8), value=any_values)), max_size=3)
resources = objects(attributes=key_values)
scopes = objects(name=st.text(max_size=8), version=st.text(max_size=8))
spans = st.builds(
    lambda trace_id, span_id, rest: {"traceId": trace_id, "spanId": span_id, **rest},
    trace_ids,
    span_ids,
    objects(
        parentSpanId=span_ids,
        name=st.text(max_size=8),
        kind=st.integers(min_value=-3, max_value=9) | st.sampled_from(["SPAN_KIND_SERVER", "nope"]),
        startTimeUnixNano=times,
        end_time_unix_nano=times,
        attributes=key_values,
        events=st.lists(
            objects(name=st.text(max_size=5), timeUnixNano=times, attributes=key_values), max_size=2
        ),
        links=st.lists(objects(traceId=trace_ids, spanId=span_ids, attributes=key_values), max_size=2),
        status=objects(code=st.integers(min_value=-1, max_value=4), message=st.text(max_size=5)),
    ),
)

trace_documents = objects(
    resourceSpans=st.lists(
        objects(
            resource=resources, scopeSpans=st.lists(objects(scope=scopes, spans=st.lists(spans, max_size=3)))
        ),
        max_size=2,
    )
)
log_records = objects(
    timeUnixNano=times,
    observed_time_unix_nano=times,
    traceId=trace_ids,
    spanId=span_ids,
    severityNumber=st.integers(min_value=-(2**40), max_value=2**40)
    | st.sampled_from(["SEVERITY_NUMBER_WARN"]),
    severityText=st.text(max_size=5),
    body=any_values,
    attributes=key_values,
    eventName=st.text(max_size=5),
)
log_documents = objects(
    resourceLogs=st.lists(
        objects(
            resource=resources,
            scopeLogs=st.lists(
                objects(scope=scopes, logRecords=st.lists(log_records, max_size=3)), max_size=2
            ),
        ),
        max_size=2,
    )
)


def check_decodes_or_raises_decode_error(body: bytes, fmt: OtlpFormat) -> None:
    if fmt is OtlpFormat.PROTOBUF:
        check_encoded_spans_agree(body)
    for decode in (decode_traces, decode_logs):
        try:
            batch = decode(body, fmt)
        except DecodeError:
            continue
        json.dumps([record.to_json() for record in batch.records], allow_nan=False)  # stays valid JSON
        for record in batch.records:
            assert record.trace_id is None or HEX_ID.fullmatch(record.trace_id)
            assert record.span_id is None or HEX_ID.fullmatch(record.span_id)
        assert batch.rejected >= 0 and bool(batch.error_message) == (batch.rejected > 0)


def check_encoded_spans_agree(body: bytes) -> None:
    """The stored form of a protobuf body reads back as the records decoded from it, or both refuse it."""
    try:
        records = decode_traces(body, OtlpFormat.PROTOBUF)
    except DecodeError:
        with pytest.raises(DecodeError):
            decode_encoded_spans(body)
        return
    encoded = decode_encoded_spans(body)
    assert [record_of(s) for s in encoded.records] == records.records
    assert encoded.rejected == records.rejected


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes_never_raise_anything_but_decode_error(body: bytes) -> None:
    check_decodes_or_raises_decode_error(body, OtlpFormat.PROTOBUF)
    check_decodes_or_raises_decode_error(body, OtlpFormat.JSON)


VALID_PROTOBUF = ExportTraceServiceRequest(
    resource_spans=[
        ResourceSpans(
            scope_spans=[
                ScopeSpans(
                    spans=[
                        Span(
                            trace_id=bytes(range(1, 17)),
                            span_id=bytes(range(1, 9)),
                            name="s",
                            attributes=[KeyValue(key="k", value=AnyValue(string_value="v"))],
                        )
                    ]
                )
            ]
        )
    ]
).SerializeToString()


@FUZZ
@given(st.lists(st.tuples(st.integers(min_value=0, max_value=len(VALID_PROTOBUF) - 1), st.integers(0, 255))))
def test_mutated_protobuf_never_raises_anything_but_decode_error(edits: list[tuple[int, int]]) -> None:
    body = bytearray(VALID_PROTOBUF)
    for position, byte in edits:
        body[position] = byte
    check_decodes_or_raises_decode_error(bytes(body), OtlpFormat.PROTOBUF)


@FUZZ
@given(st.dictionaries(st.sampled_from(["resourceSpans", "resource_logs", "x"]), json_values) | json_values)
def test_random_json_never_raises_anything_but_decode_error(document: Any) -> None:
    check_decodes_or_raises_decode_error(json.dumps(document).encode(), OtlpFormat.JSON)


@FUZZ
@given(trace_documents | log_documents)
def test_otlp_shaped_json_never_raises_anything_but_decode_error(document: dict[str, Any]) -> None:
    check_decodes_or_raises_decode_error(json.dumps(document).encode(), OtlpFormat.JSON)
