"""The OTLP/HTTP codec: content types, compression, protobuf and JSON decoding, responses, encoding."""

from __future__ import annotations

import base64
import dataclasses
import gzip
import json
import logging
import math
import time
import tracemalloc
import zlib
from collections.abc import Callable
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import (
    AnyValue,
    ArrayValue,
    InstrumentationScope,
    KeyValue,
    KeyValueList,
)
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord as PbLogRecord
from opentelemetry.proto.logs.v1.logs_pb2 import ResourceLogs, ScopeLogs
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

from otel_lightning import semconv
from otel_lightning.exceptions import DecodeError, PayloadTooLargeError, UnsupportedMediaError
from otel_lightning.spans.otlp import (
    DecodedBatch,
    OtlpFormat,
    decode_logs,
    decode_traces,
    decompress,
    encode_export_response,
    encode_traces,
    otlp_format,
)
from otel_lightning.spans.records import LogRecord, SpanKind, SpanRecord, StatusCode

PB, JS = OtlpFormat.PROTOBUF, OtlpFormat.JSON
TRACE_A = bytes.fromhex("0af7651916cd43dd8448eb211c80319c")
TRACE_B = bytes.fromhex("4bf92f3577b34da6a3ce929d0e0e4736")
SPAN_1, SPAN_2, SPAN_3 = (
    bytes.fromhex(h) for h in ("b7ad6b7169203331", "00f067aa0ba902b7", "53995c3f42cd8ad8")
)


def kv(key: str, value: AnyValue) -> KeyValue:
    return KeyValue(key=key, value=value)


def rich_request() -> ExportTraceServiceRequest:
    """Every field the decoder maps, in two resources: nested values, events, links, status, identity."""
    attributes = [
        kv("s", AnyValue(string_value="text")),
        kv("empty_s", AnyValue(string_value="")),
        kv("i", AnyValue(int_value=-(1 << 62))),
        kv("zero", AnyValue(int_value=0)),
        kv("d", AnyValue(double_value=0.25)),
        kv("nan", AnyValue(double_value=float("nan"))),
        kv("inf", AnyValue(double_value=float("-inf"))),
        kv("b", AnyValue(bool_value=False)),
        kv("bytes", AnyValue(bytes_value=b"\x00\xff")),
        kv("none", AnyValue()),
        kv(
            "arr",
            AnyValue(array_value=ArrayValue(values=[AnyValue(int_value=1), AnyValue(string_value="x")])),
        ),
        kv("map", AnyValue(kvlist_value=KeyValueList(values=[kv("k", AnyValue(bool_value=True))]))),
        kv("dup", AnyValue(string_value="first")),
        kv("dup", AnyValue(string_value="last")),
        kv(semconv.ROLLOUT_ID, AnyValue(string_value="ro-1")),
        kv(semconv.ATTEMPT_ID, AnyValue(string_value="at-1")),
        kv(semconv.EXPERIMENT, AnyValue(int_value=7)),  # not a string: not copied
    ]
    root = Span(
        trace_id=TRACE_A,
        span_id=SPAN_1,
        name="otel_lightning.rollout",
        kind=Span.SPAN_KIND_INTERNAL,
        start_time_unix_nano=1_700_000_000_000_000_000,
        end_time_unix_nano=1_700_000_002_000_000_000,
        attributes=attributes,
        status=Status(code=Status.STATUS_CODE_ERROR, message="boom"),
        events=[
            Span.Event(name="tick", time_unix_nano=1_700_000_001_000_000_000, attributes=[attributes[0]])
        ],
        links=[Span.Link(trace_id=TRACE_B, span_id=SPAN_3, attributes=[attributes[2]])],
    )
    child = Span(
        trace_id=TRACE_A,
        span_id=SPAN_2,
        parent_span_id=SPAN_1,
        name="openai.chat",
        kind=Span.SPAN_KIND_CLIENT,
        start_time_unix_nano=1_700_000_000_500_000_000,
        end_time_unix_nano=1_700_000_001_500_000_000,
        status=Status(code=Status.STATUS_CODE_OK),
    )
    other = Span(trace_id=TRACE_B, span_id=SPAN_3, name="other", kind=9)  # a kind from the future
    return ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(
                resource=Resource(attributes=[kv("service.name", AnyValue(string_value="agent"))]),
                scope_spans=[
                    ScopeSpans(scope=InstrumentationScope(name="lib", version="1.2"), spans=[root, child]),
                    ScopeSpans(spans=[other]),
                ],
            ),
            ResourceSpans(scope_spans=[ScopeSpans(spans=[Span(trace_id=TRACE_B, span_id=SPAN_1, name="x")])]),
        ]
    )


# --- A hand-written proto -> OTLP JSON converter: hex ids, int64 as strings, integer enums -----------------


def value_json(v: AnyValue) -> dict[str, Any]:
    which = v.WhichOneof("value")
    if which is None:
        return {}
    if which == "int_value":
        return {"intValue": str(v.int_value)}
    if which == "double_value":
        d = v.double_value  # proto3 JSON writes non-finite doubles as strings
        return {
            "doubleValue": d
            if math.isfinite(d)
            else "NaN"
            if d != d
            else "Infinity"
            if d > 0
            else "-Infinity"
        }
    if which == "bytes_value":
        return {"bytesValue": base64.b64encode(v.bytes_value).decode()}
    if which == "array_value":
        return {"arrayValue": {"values": [value_json(x) for x in v.array_value.values]}}
    if which == "kvlist_value":
        return {"kvlistValue": {"values": attributes_json(v.kvlist_value.values)}}
    return {"stringValue" if which == "string_value" else "boolValue": getattr(v, which)}


def attributes_json(kvs: Any) -> list[dict[str, Any]]:
    return [{"key": a.key, "value": value_json(a.value)} for a in kvs]


def span_json(s: Span) -> dict[str, Any]:
    return {
        "traceId": s.trace_id.hex(),
        "spanId": s.span_id.hex(),
        "parentSpanId": s.parent_span_id.hex(),
        "name": s.name,
        "kind": s.kind,
        "startTimeUnixNano": str(s.start_time_unix_nano),
        "endTimeUnixNano": str(s.end_time_unix_nano),
        "attributes": attributes_json(s.attributes),
        "events": [
            {
                "timeUnixNano": str(e.time_unix_nano),
                "name": e.name,
                "attributes": attributes_json(e.attributes),
            }
            for e in s.events
        ],
        "links": [
            {
                "traceId": lk.trace_id.hex(),
                "spanId": lk.span_id.hex(),
                "attributes": attributes_json(lk.attributes),
            }
            for lk in s.links
        ],
        "status": {"code": s.status.code, "message": s.status.message},
    }


def request_json(request: ExportTraceServiceRequest) -> dict[str, Any]:
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": attributes_json(rs.resource.attributes)},
                "scopeSpans": [
                    {
                        "scope": {"name": ss.scope.name, "version": ss.scope.version},
                        "spans": [span_json(s) for s in ss.spans],
                    }
                    for ss in rs.scope_spans
                ],
            }
            for rs in request.resource_spans
        ]
    }


def decode_json(document: Any) -> DecodedBatch[SpanRecord]:
    return decode_traces(json.dumps(document).encode(), JS)


# --- Content types and compression --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "fmt"),
    [
        ("application/x-protobuf", PB),
        ("Application/X-Protobuf", PB),
        ("application/protobuf", PB),
        ("application/json", JS),
        ("application/json; charset=utf-8", JS),
        (" application/json ;charset=UTF-8", JS),
    ],
)
def test_otlp_format_reads_the_media_type(header: str, fmt: OtlpFormat) -> None:
    assert otlp_format(header) is fmt
    assert otlp_format(fmt.content_type) is fmt


@pytest.mark.parametrize("header", [None, "", "text/plain", "application/grpc", "application/jsonx", "json"])
def test_unknown_or_missing_content_type_is_unsupported(header: str | None) -> None:
    with pytest.raises(UnsupportedMediaError) as info:
        otlp_format(header)
    assert info.value.http_status == 415


def test_decompress_round_trips_every_encoding() -> None:
    body = rich_request().SerializeToString() * 50
    raw_deflate = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    cases = {
        None: body,
        "": body,
        "identity": body,
        "gzip": gzip.compress(body),
        "x-gzip": gzip.compress(body),
        "GZIP": gzip.compress(body),
        "deflate": zlib.compress(body),
        "Deflate": raw_deflate.compress(body) + raw_deflate.flush(),
        "identity, gzip": gzip.compress(body),
        "gzip, deflate": zlib.compress(gzip.compress(body)),
    }
    for encoding, data in cases.items():
        assert decompress(data, encoding, len(body)) == body, encoding
    assert decompress(gzip.compress(body[:10]) + gzip.compress(body[10:]), "gzip", len(body)) == body


def test_decompress_handles_bodies_larger_than_one_step_up_to_the_exact_cap() -> None:
    body = bytes(range(256)) * (9 << 12)  # 9 MiB: inflated in several steps
    for encoding, data in [("gzip", gzip.compress(body, 1)), ("deflate", zlib.compress(body, 1))]:
        assert decompress(data, encoding, len(body)) == body
        with pytest.raises(PayloadTooLargeError):
            decompress(data, encoding, len(body) - 1)
        with pytest.raises(DecodeError):
            decompress(data[: len(data) // 2], encoding, len(body))


def test_decompressed_body_goes_through_the_decoder() -> None:
    body = decompress(gzip.compress(rich_request().SerializeToString()), "gzip", 1 << 20)
    assert len(decode_traces(body, PB).records) == 4


@pytest.mark.parametrize("encoding", ["br", "zstd", "compress", "gzip, br"])
def test_unknown_content_encoding_is_unsupported(encoding: str) -> None:
    with pytest.raises(UnsupportedMediaError):
        decompress(b"x", encoding, 100)


def test_cap_applies_with_and_without_compression() -> None:
    body = bytes(1000)
    assert decompress(body, None, 1000) == body
    for encoding, data in [(None, body), ("gzip", gzip.compress(body)), ("deflate", zlib.compress(body))]:
        with pytest.raises(PayloadTooLargeError) as info:
            decompress(data, encoding, 999)
        assert info.value.http_status == 413


@pytest.mark.parametrize(
    ("encoding", "data"),
    [
        ("gzip", b"not gzip at all"),
        ("gzip", gzip.compress(b"x" * 1000)[:-12]),  # truncated
        ("gzip", gzip.compress(b"x" * 1000) + b"junk"),  # trailing garbage
        ("gzip", b""),
        ("deflate", b"\xff\xff\xff\xff"),
        ("deflate", zlib.compress(bytes(range(256)) * 20)[:100]),  # truncated
        ("deflate", zlib.compress(b"y" * 1000) + b"junk"),
    ],
)
def test_corrupt_compressed_body_is_a_decode_error(encoding: str, data: bytes) -> None:
    with pytest.raises(DecodeError):
        decompress(data, encoding, 1 << 20)


def zero_blocks(wbits: int, count: int) -> bytes:
    """The compressed stream of ``count`` MiB of zeros, without its trailer, built from two compressed MiB.

    With a full flush after each MiB, every MiB after the first compresses to the same bytes.
    """
    block = bytes(1 << 20)
    compressor = zlib.compressobj(9, zlib.DEFLATED, wbits)
    first = compressor.compress(block) + compressor.flush(zlib.Z_FULL_FLUSH)
    repeat = compressor.compress(block) + compressor.flush(zlib.Z_FULL_FLUSH)
    final = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS).flush()  # an empty last block
    return first + repeat * (count - 1) + final


def gzip_bomb(total: int, member: int = 64 << 20) -> bytes:
    """``total`` zero bytes as concatenated gzip members of ``member`` bytes (~1 MiB per GiB)."""
    crc = 0
    for _ in range(member >> 20):
        crc = zlib.crc32(bytes(1 << 20), crc)
    one = (
        zero_blocks(16 + zlib.MAX_WBITS, member >> 20)
        + crc.to_bytes(4, "little")
        + member.to_bytes(4, "little")
    )
    return one * (total // member)


def zlib_bomb(total: int) -> bytes:
    """``total`` zero bytes as one zlib stream; the adler32 of n zero bytes is (n mod 65521) << 16 | 1."""
    return zero_blocks(zlib.MAX_WBITS, total >> 20) + ((total % 65521) << 16 | 1).to_bytes(4, "big")


def test_bomb_helpers_build_valid_streams() -> None:
    assert gzip.decompress(gzip_bomb(8 << 20, member=4 << 20)) == bytes(8 << 20)
    assert zlib.decompress(zlib_bomb(8 << 20)) == bytes(8 << 20)


@pytest.mark.parametrize(("encoding", "build"), [("gzip", gzip_bomb), ("deflate", zlib_bomb)])
def test_compression_bomb_fails_fast_in_bounded_memory(encoding: str, build: Callable[[int], bytes]) -> None:
    cap = 8 << 20
    bomb = build(2 << 30)  # 2 GiB of zeros
    assert len(bomb) < 4 << 20
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(PayloadTooLargeError):
            decompress(bomb, encoding, cap)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - started < 2.0
    assert peak < 3 * cap, f"peak {peak / 2**20:.1f} MiB for a {cap / 2**20:.0f} MiB cap"


# --- Decoding traces ----------------------------------------------------------------------------------------


def test_protobuf_decoding_maps_every_field() -> None:
    batch = decode_traces(rich_request().SerializeToString(), PB)
    assert (batch.rejected, batch.error_message) == (0, "")
    root, child, other, last = batch.records
    assert root.trace_id == TRACE_A.hex() and root.span_id == SPAN_1.hex() and root.parent_span_id is None
    assert child.parent_span_id == root.span_id and child.kind is SpanKind.CLIENT
    assert root.kind is SpanKind.INTERNAL and other.kind is SpanKind.UNSPECIFIED
    assert (root.status_code, root.status_message, child.status_code) == (
        StatusCode.ERROR,
        "boom",
        StatusCode.OK,
    )
    assert (root.start_ns, root.end_ns) == (1_700_000_000_000_000_000, 1_700_000_002_000_000_000)
    assert dict(root.attributes) == {
        "s": "text",
        "empty_s": "",
        "i": -(1 << 62),
        "zero": 0,
        "d": 0.25,
        "nan": "NaN",
        "inf": "-Infinity",
        "b": False,
        "bytes": base64.b64encode(b"\x00\xff").decode(),
        "none": None,
        "arr": [1, "x"],
        "map": {"k": True},
        "dup": "last",
        semconv.ROLLOUT_ID: "ro-1",
        semconv.ATTEMPT_ID: "at-1",
        semconv.EXPERIMENT: 7,
    }
    assert (root.rollout_id, root.attempt_id, root.experiment) == ("ro-1", "at-1", None)
    assert [(e.name, e.time_ns, dict(e.attributes)) for e in root.events] == [
        ("tick", 1_700_000_001_000_000_000, {"s": "text"})
    ]
    assert [(lk.trace_id, lk.span_id, dict(lk.attributes)) for lk in root.links] == [
        (TRACE_B.hex(), SPAN_3.hex(), {"i": -(1 << 62)})
    ]
    assert dict(root.resource) == {"service.name": "agent"} and dict(last.resource) == {}
    assert (root.scope_name, root.scope_version, other.scope_name) == ("lib", "1.2", "")
    json.dumps([r.to_json() for r in batch.records], allow_nan=False)  # records stay valid JSON


def test_protobuf_and_json_encodings_give_identical_records() -> None:
    request = rich_request()
    from_protobuf = decode_traces(request.SerializeToString(), PB)
    from_json = decode_json(request_json(request))
    assert from_json == from_protobuf
    assert len(from_json.records) == 4


def test_real_sdk_spans_encoded_by_the_exporter_decode_correctly() -> None:
    from opentelemetry.sdk.resources import Resource as SdkResource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import SpanKind as SdkSpanKind
    from opentelemetry.trace import Status as SdkStatus
    from opentelemetry.trace import StatusCode as SdkStatusCode

    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=SdkResource.create({"service.name": "sdk-test"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("my.lib", "0.3")
    with tracer.start_as_current_span("root", attributes={semconv.ROLLOUT_ID: "ro-9"}) as root:
        root.add_event("started", {"n": 1, "tags": ["a", "b"]})
        with tracer.start_as_current_span("openai.chat", kind=SdkSpanKind.CLIENT) as chat:
            chat.set_attribute(semconv.GEN_AI_REQUEST_MODEL, "gpt-4o-mini")
            chat.set_attribute(semconv.GEN_AI_USAGE_INPUT_TOKENS, 12)
            chat.set_attribute(semconv.GEN_AI_REQUEST_TEMPERATURE, 0.5)
            chat.set_status(SdkStatus(SdkStatusCode.ERROR, "rate limited"))
    provider.shutdown()
    sdk_spans = exporter.get_finished_spans()
    body = encode_spans(sdk_spans).SerializeToString()

    records = {r.name: r for r in decode_traces(body, PB).records}
    sdk = {s.name: s for s in sdk_spans}
    for name, record in records.items():
        context = sdk[name].context
        assert record.trace_id == format(context.trace_id, "032x")
        assert record.span_id == format(context.span_id, "016x")
        assert (record.start_ns, record.end_ns) == (sdk[name].start_time, sdk[name].end_time)
        assert record.resource["service.name"] == "sdk-test"
        assert (record.scope_name, record.scope_version) == ("my.lib", "0.3")
    root_record, chat_record = records["root"], records["openai.chat"]
    assert root_record.parent_span_id is None and chat_record.parent_span_id == root_record.span_id
    assert chat_record.trace_id == root_record.trace_id
    assert chat_record.kind is SpanKind.CLIENT and root_record.kind is SpanKind.INTERNAL
    assert dict(chat_record.attributes) == {
        semconv.GEN_AI_REQUEST_MODEL: "gpt-4o-mini",
        semconv.GEN_AI_USAGE_INPUT_TOKENS: 12,
        semconv.GEN_AI_REQUEST_TEMPERATURE: 0.5,
    }
    assert (chat_record.status_code, chat_record.status_message) == (StatusCode.ERROR, "rate limited")
    assert root_record.rollout_id == "ro-9" and root_record.status_code is StatusCode.UNSET
    (event,) = root_record.events
    assert (event.name, dict(event.attributes)) == ("started", {"n": 1, "tags": ["a", "b"]})


def test_json_ids_are_hex_and_lowercased() -> None:
    document = request_json(rich_request())
    span = document["resourceSpans"][0]["scopeSpans"][0]["spans"][1]
    span["traceId"], span["spanId"] = span["traceId"].upper(), span["spanId"].upper()
    span["parentSpanId"] = span["parentSpanId"].upper()
    record = decode_json(document).records[1]
    assert (record.trace_id, record.span_id, record.parent_span_id) == (
        TRACE_A.hex(),
        SPAN_2.hex(),
        SPAN_1.hex(),
    )


def test_json_accepts_base64_ids_as_proto3_json_writers_produce() -> None:
    document = request_json(rich_request())
    span = document["resourceSpans"][0]["scopeSpans"][0]["spans"][1]
    span["traceId"] = base64.b64encode(TRACE_A).decode()
    span["spanId"] = base64.urlsafe_b64encode(SPAN_2).decode().rstrip("=")
    record = decode_json(document).records[1]
    assert (record.trace_id, record.span_id) == (TRACE_A.hex(), SPAN_2.hex())


def test_json_int64_as_string_or_number_and_enums_as_numbers_or_names() -> None:
    def one_span(**fields: Any) -> SpanRecord:
        span = {"traceId": TRACE_A.hex(), "spanId": SPAN_1.hex(), **fields}
        (record,) = decode_json({"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]}).records
        return record

    as_strings = one_span(startTimeUnixNano="1700000000000000001", kind=2, status={"code": 1})
    as_numbers = one_span(
        startTimeUnixNano=1700000000000000001, kind="SPAN_KIND_SERVER", status={"code": "1"}
    )
    assert as_strings == as_numbers
    assert as_numbers.start_ns == 1700000000000000001 and as_numbers.kind is SpanKind.SERVER
    assert as_numbers.status_code is StatusCode.OK
    values = one_span(
        attributes=[
            {"key": "a", "value": {"intValue": 5}},
            {"key": "b", "value": {"intValue": "-5"}},
            {"key": "c", "value": {"doubleValue": "Infinity"}},
            {"key": "d", "value": {"doubleValue": 3}},
            {"key": "e", "value": {"doubleValue": "0.5"}},
        ]
    ).attributes
    assert dict(values) == {"a": 5, "b": -5, "c": "Infinity", "d": 3.0, "e": 0.5}


def test_json_unknown_fields_are_ignored_at_every_level() -> None:
    document = request_json(rich_request())
    plain = decode_json(document)

    def sprinkle(node: Any) -> None:
        if isinstance(node, dict):
            for value in list(node.values()):
                sprinkle(value)
            node["someFutureField"] = {"nested": [1, "x", None]}
            node["another_one"] = 42
        elif isinstance(node, list):
            for value in node:
                sprinkle(value)

    sprinkle(document)
    assert decode_json(document) == plain


def test_protobuf_unknown_fields_are_ignored() -> None:
    # Field 99 (varint) and field 100 (bytes) appended to a span and to the whole request.
    unknown = bytes([0x98, 0x06, 0x01, 0xA2, 0x06, 0x02]) + b"hi"
    span = Span(trace_id=TRACE_A, span_id=SPAN_1, name="s").SerializeToString() + unknown
    scope_spans = bytes([0x12, len(span)]) + span  # ScopeSpans.spans = 2
    resource_spans = bytes([0x12, len(scope_spans)]) + scope_spans  # ResourceSpans.scope_spans = 2
    body = bytes([0x0A, len(resource_spans)]) + resource_spans + unknown
    (record,) = decode_traces(body, PB).records
    assert (record.trace_id, record.name) == (TRACE_A.hex(), "s")


def test_json_accepts_snake_case_field_names() -> None:
    def snake(node: Any) -> Any:
        if isinstance(node, dict):
            return {
                "".join("_" + c.lower() if c.isupper() else c for c in k): snake(v) for k, v in node.items()
            }
        if isinstance(node, list):
            return [snake(v) for v in node]
        return node

    document = snake(request_json(rich_request()))
    assert "resource_spans" in document and "trace_id" in json.dumps(document)
    assert decode_json(document) == decode_traces(rich_request().SerializeToString(), PB)


@pytest.mark.parametrize(
    "body", [b"", b"not json", b"[]", b'"text"', b"null", b"\xff\xfe\x00", b"[" * 100_000 + b"]" * 100_000]
)
def test_a_body_that_is_not_a_json_object_is_a_decode_error(body: bytes) -> None:
    for decode in (decode_traces, decode_logs):
        with pytest.raises(DecodeError) as info:
            decode(body, JS)
        assert info.value.http_status == 400


def span_document(**fields: Any) -> dict[str, Any]:
    span = {"traceId": TRACE_A.hex(), "spanId": SPAN_1.hex(), **fields}
    return {"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]}


def attribute_document(value: Any) -> dict[str, Any]:
    return span_document(attributes=[{"key": "k", "value": value}])


@pytest.mark.parametrize(
    "document",
    [
        {"resourceSpans": {}},
        {"resourceSpans": [1]},
        {"resourceSpans": [{"scopeSpans": "x"}]},
        {"resourceSpans": [{"scopeSpans": [{"spans": [[]]}]}]},
        {"resourceSpans": [{"resource": {"attributes": {}}}]},
        {"resourceSpans": [{"resource": {"attributes": [{"key": 1}]}}]},
        span_document(startTimeUnixNano="soon"),
        span_document(endTimeUnixNano=-1),
        span_document(name=7),
        span_document(events=[{"timeUnixNano": True}]),
        span_document(status="ok"),
        attribute_document({"intValue": 1.5}),
        attribute_document({"intValue": "99999999999999999999"}),
        attribute_document({"boolValue": "true"}),
        attribute_document({"bytesValue": "not base64!"}),
        attribute_document({"arrayValue": [1]}),
        attribute_document("a bare string"),
    ],
)
def test_wrong_json_types_are_a_decode_error(document: Any) -> None:
    with pytest.raises(DecodeError):
        decode_json(document)


@pytest.mark.parametrize("body", [b"\xff\xff\xff", b"\x0a\x05abc", b"not a protobuf", b"\x0a" + b"\xff" * 12])
def test_malformed_protobuf_body_is_a_decode_error(body: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_traces(body, PB)
    with pytest.raises(DecodeError):
        decode_logs(body, PB)


def test_empty_protobuf_body_is_an_empty_request() -> None:
    assert decode_traces(b"", PB) == DecodedBatch([])
    assert decode_json({}) == DecodedBatch([])


@pytest.mark.parametrize("fmt", [PB, JS])
def test_spans_with_invalid_ids_are_rejected_and_the_rest_kept(fmt: OtlpFormat) -> None:
    good = Span(trace_id=TRACE_A, span_id=SPAN_1, name="good")
    bad = [
        Span(trace_id=TRACE_A[:8], span_id=SPAN_1, name="short trace"),
        Span(trace_id=TRACE_A, span_id=SPAN_1 + b"\x01", name="long span"),
        Span(trace_id=bytes(16), span_id=SPAN_1, name="zero trace"),
        Span(trace_id=TRACE_A, span_id=bytes(8), name="zero span"),
        Span(span_id=SPAN_1, name="no trace"),
        Span(trace_id=TRACE_A, span_id=SPAN_2, parent_span_id=b"\x01\x02", name="bad parent"),
    ]
    request = ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=[bad[0], good, *bad[1:]])])]
    )
    body = request.SerializeToString() if fmt is PB else json.dumps(request_json(request)).encode()
    batch = decode_traces(body, fmt)
    assert [r.name for r in batch.records] == ["good"]
    assert batch.rejected == len(bad)
    assert batch.error_message.startswith(f"rejected {len(bad)} spans")


def test_json_ids_that_are_not_hex_are_rejected() -> None:
    spans = [
        {"traceId": "zz" * 16, "spanId": SPAN_1.hex()},
        {"traceId": TRACE_A.hex(), "spanId": 12345},
        {"traceId": TRACE_A.hex(), "spanId": SPAN_1.hex(), "parentSpanId": "not-hex!"},
        {"traceId": TRACE_A.hex(), "spanId": SPAN_1.hex(), "name": "ok", "parentSpanId": "0" * 16},
    ]
    batch = decode_json({"resourceSpans": [{"scopeSpans": [{"spans": spans}]}]})
    assert batch.rejected == 3
    assert [(r.name, r.parent_span_id) for r in batch.records] == [("ok", None)]


def test_links_with_invalid_ids_are_dropped_and_their_span_kept() -> None:
    span = Span(
        trace_id=TRACE_A,
        span_id=SPAN_1,
        links=[Span.Link(trace_id=b"x"), Span.Link(trace_id=TRACE_B, span_id=SPAN_2)],
    )
    request = ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=[span])])]
    )
    for batch in (decode_traces(request.SerializeToString(), PB), decode_json(request_json(request))):
        (record,) = batch.records
        assert [(lk.trace_id, lk.span_id) for lk in record.links] == [(TRACE_B.hex(), SPAN_2.hex())]


# --- Decoding logs ------------------------------------------------------------------------------------------


def logs_request() -> ExportLogsServiceRequest:
    records = [
        PbLogRecord(
            time_unix_nano=5,
            observed_time_unix_nano=6,
            trace_id=TRACE_A,
            span_id=SPAN_1,
            severity_number=9,
            severity_text="INFO",
            body=AnyValue(kvlist_value=KeyValueList(values=[kv("content", AnyValue(string_value="hi"))])),
            attributes=[
                kv(semconv.ROLLOUT_ID, AnyValue(string_value="ro-2")),
                kv("event.name", AnyValue(string_value="attr.name")),
            ],
            event_name="gen_ai.client.inference.operation.details",
        ),
        PbLogRecord(observed_time_unix_nano=7, body=AnyValue(string_value="plain")),
        PbLogRecord(time_unix_nano=8, attributes=[kv("event.name", AnyValue(string_value="from.attribute"))]),
        PbLogRecord(time_unix_nano=9, trace_id=b"short"),
    ]
    return ExportLogsServiceRequest(
        resource_logs=[
            ResourceLogs(
                resource=Resource(attributes=[kv("service.name", AnyValue(string_value="agent"))]),
                scope_logs=[ScopeLogs(scope=InstrumentationScope(name="openai.v2"), log_records=records)],
            )
        ]
    )


def logs_json(request: ExportLogsServiceRequest) -> dict[str, Any]:
    def record(r: PbLogRecord) -> dict[str, Any]:
        return {
            "timeUnixNano": str(r.time_unix_nano),
            "observedTimeUnixNano": r.observed_time_unix_nano,  # a number: accepted too
            "traceId": r.trace_id.hex(),
            "spanId": r.span_id.hex(),
            "severityNumber": r.severity_number,
            "severityText": r.severity_text,
            "body": value_json(r.body),
            "attributes": attributes_json(r.attributes),
            "eventName": r.event_name,
        }

    return {
        "resourceLogs": [
            {
                "resource": {"attributes": attributes_json(rl.resource.attributes)},
                "scopeLogs": [
                    {"scope": {"name": sl.scope.name}, "logRecords": [record(r) for r in sl.log_records]}
                    for sl in rl.scope_logs
                ],
            }
            for rl in request.resource_logs
        ]
    }


def test_logs_decode_alike_from_protobuf_and_json() -> None:
    request = logs_request()
    batch = decode_logs(request.SerializeToString(), PB)
    from_json = decode_logs(json.dumps(logs_json(request)).encode(), JS)
    assert (from_json.records, from_json.rejected) == (batch.records, batch.rejected)
    assert batch.rejected == 1 and "rejected 1 log record;" in batch.error_message
    first, plain, from_attribute = batch.records
    assert first == LogRecord(
        time_ns=5,
        observed_ns=6,
        trace_id=TRACE_A.hex(),
        span_id=SPAN_1.hex(),
        severity_number=9,
        severity_text="INFO",
        body={"content": "hi"},
        attributes={semconv.ROLLOUT_ID: "ro-2", "event.name": "attr.name"},
        event_name="gen_ai.client.inference.operation.details",
        resource={"service.name": "agent"},
        scope_name="openai.v2",
        rollout_id="ro-2",
    )
    assert (plain.time_ns, plain.observed_ns, plain.trace_id, plain.span_id, plain.body) == (
        7,
        7,
        None,
        None,
        "plain",
    )
    assert (from_attribute.time_ns, from_attribute.observed_ns) == (8, 8)
    assert from_attribute.event_name == "from.attribute" and from_attribute.body is None


def test_real_sdk_log_records_decode_correctly() -> None:
    from opentelemetry._logs import SeverityNumber
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
    from opentelemetry.sdk.trace import TracerProvider

    exporter = InMemoryLogRecordExporter()
    logger_provider = LoggerProvider()
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    logger = logger_provider.get_logger("gen_ai.events")
    with TracerProvider().get_tracer("t").start_as_current_span("chat") as span:
        logger.emit(
            body={"messages": [{"role": "user", "content": "hi"}]},
            attributes={semconv.ATTEMPT_ID: "at-3"},
            event_name=semconv.GEN_AI_INFERENCE_DETAILS_EVENT,
            severity_number=SeverityNumber.INFO,
        )
    logger_provider.shutdown()
    (record,) = decode_logs(encode_logs(exporter.get_finished_logs()).SerializeToString(), PB).records
    assert record.trace_id == format(span.get_span_context().trace_id, "032x")
    assert record.span_id == format(span.get_span_context().span_id, "016x")
    assert record.event_name == semconv.GEN_AI_INFERENCE_DETAILS_EVENT and record.attempt_id == "at-3"
    assert record.body == {"messages": [{"role": "user", "content": "hi"}]}
    assert record.severity_number == 9 and record.time_ns == record.observed_ns > 0
    assert record.scope_name == "gen_ai.events"


# --- Responses and encoding ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("signal", "response_class", "field", "json_field"),
    [
        ("traces", ExportTraceServiceResponse, "rejected_spans", "rejectedSpans"),
        ("logs", ExportLogsServiceResponse, "rejected_log_records", "rejectedLogRecords"),
        ("metrics", ExportMetricsServiceResponse, "rejected_data_points", "rejectedDataPoints"),
    ],
)
def test_export_responses_parse_back(signal: str, response_class: Any, field: str, json_field: str) -> None:
    ok = response_class.FromString(encode_export_response(signal, PB))
    assert not ok.HasField("partial_success")
    partial = response_class.FromString(encode_export_response(signal, PB, rejected=3, message="bad ids"))
    assert partial.HasField("partial_success")
    assert getattr(partial.partial_success, field) == 3 and partial.partial_success.error_message == "bad ids"
    assert json.loads(encode_export_response(signal, JS, rejected=0, message="ignored")) == {}
    assert json.loads(encode_export_response(signal, JS, rejected=2, message="m")) == {
        "partialSuccess": {json_field: "2", "errorMessage": "m"}
    }


def test_unknown_signal_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="profiles"):
        encode_export_response("profiles", PB)


@pytest.mark.parametrize("fmt", [PB, JS])
def test_encode_traces_is_the_inverse_of_decode_traces(fmt: OtlpFormat) -> None:
    records = decode_traces(rich_request().SerializeToString(), PB).records
    assert decode_traces(encode_traces(records, fmt), fmt).records == records


def test_encode_traces_writes_rollout_identity_into_attributes() -> None:
    record = SpanRecord(
        trace_id=TRACE_A.hex(),
        span_id=SPAN_1.hex(),
        parent_span_id=None,
        name="n",
        kind=SpanKind.SERVER,
        start_ns=1,
        end_ns=2,
        rollout_id="ro",
        attempt_id="at",
        experiment="exp",
    )
    for fmt in (PB, JS):
        (decoded,) = decode_traces(encode_traces([record], fmt), fmt).records
        assert (decoded.rollout_id, decoded.attempt_id, decoded.experiment) == ("ro", "at", "exp")
        assert decoded.attributes[semconv.EXPERIMENT] == "exp"


def test_record_fields_are_in_the_order_the_decoder_uses() -> None:
    # The protobuf decoder builds records positionally, and indexes enums by OTLP number.
    assert [f.name for f in dataclasses.fields(SpanRecord)] == [
        "trace_id", "span_id", "parent_span_id", "name", "kind", "start_ns", "end_ns", "attributes", "events",
        "links", "status_code", "status_message", "resource", "scope_name", "scope_version", "rollout_id",
        "attempt_id", "experiment",
    ]  # fmt: skip
    assert [f.name for f in dataclasses.fields(LogRecord)] == [
        "time_ns", "observed_ns", "trace_id", "span_id", "severity_number", "severity_text", "body",
        "attributes", "event_name", "resource", "scope_name", "rollout_id", "attempt_id", "experiment",
    ]  # fmt: skip
    assert [k.name for k in SpanKind] == [
        n.removeprefix("SPAN_KIND_") for n, _ in sorted(Span.SpanKind.items(), key=lambda item: item[1])
    ]
    assert [c.name for c in StatusCode] == [
        n.removeprefix("STATUS_CODE_") for n, _ in sorted(Status.StatusCode.items(), key=lambda item: item[1])
    ]


def test_a_slow_protobuf_backend_is_logged_once(monkeypatch: pytest.MonkeyPatch, caplog: Any) -> None:
    from google.protobuf.internal import api_implementation

    from otel_lightning.spans import otlp

    otlp._check_backend.cache_clear()
    monkeypatch.setattr(api_implementation, "Type", lambda: "python")
    try:
        with caplog.at_level(logging.WARNING, logger=otlp.__name__):
            decode_traces(b"", PB)
            decode_logs(b"", PB)
    finally:
        otlp._check_backend.cache_clear()
    (warning,) = caplog.records
    assert "'python' backend" in warning.getMessage()
