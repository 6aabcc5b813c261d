"""The OTLP/HTTP receiver: encodings, compression, limits, deduplication, backpressure."""

from __future__ import annotations

import asyncio
import gzip
import json
import threading
import time
import zlib
from collections.abc import Iterator, Sequence

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord as ProtoLogRecord
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from starlette.testclient import TestClient

from otel_lightning import semconv
from otel_lightning.collector.app import create_app
from otel_lightning.collector.ingest import IngestQueue
from otel_lightning.config import ServerSettings
from otel_lightning.exceptions import OverloadedError
from otel_lightning.spans.encoded import EncodedSpan, decode_encoded_spans
from otel_lightning.spans.records import SpanRecord
from otel_lightning.store.base import SpanQuery
from otel_lightning.store.sqlite import SQLiteStore

PROTOBUF = {"content-type": "application/x-protobuf"}


def trace_request(n: int, attempt_id: str = "a1", trace_byte: int = 1) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    scope_spans = request.resource_spans.add().scope_spans.add()
    for i in range(n):
        span = scope_spans.spans.add(
            trace_id=bytes([trace_byte]) * 16,
            span_id=(i + 1).to_bytes(8, "big"),
            name=f"span-{i}",
            kind=Span.SPAN_KIND_CLIENT,
            start_time_unix_nano=1_000 + i,
            end_time_unix_nano=2_000 + i,
        )
        span.attributes.append(KeyValue(key=semconv.ATTEMPT_ID, value=AnyValue(string_value=attempt_id)))
        span.attributes.append(KeyValue(key=semconv.ROLLOUT_ID, value=AnyValue(string_value="r1")))
    return request


@pytest.fixture
def store() -> Iterator[SQLiteStore]:
    store = SQLiteStore(":memory:")
    yield store
    store.close()


@pytest.fixture
def client(store: SQLiteStore) -> Iterator[TestClient]:
    settings = ServerSettings.resolve(env={}, db=":memory:", max_body_bytes=1024 * 1024)
    with TestClient(create_app(store, settings)) as test_client:
        yield test_client


def stored(store: SQLiteStore, attempt_id: str = "a1") -> list[SpanRecord]:
    return store.get_spans(SpanQuery(attempt_id=attempt_id))


def test_protobuf_request_is_stored_before_the_answer(client: TestClient, store: SQLiteStore) -> None:
    response = client.post("/v1/traces", content=trace_request(5).SerializeToString(), headers=PROTOBUF)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-protobuf"
    answer = ExportTraceServiceResponse()
    answer.ParseFromString(response.content)
    assert not answer.HasField("partial_success")
    spans = stored(store)
    assert [s.name for s in spans] == [f"span-{i}" for i in range(5)]
    assert spans[0].rollout_id == "r1" and spans[0].trace_id == "01" * 16


def test_json_request_answers_json(client: TestClient, store: SQLiteStore) -> None:
    body = {
        "resourceSpans": [
            {
                "scopeSpans": [
                    {
                        "spans": [
                            {
                                "traceId": "0af7651916cd43dd8448eb211c80319c",
                                "spanId": "b7ad6b7169203331",
                                "name": "json-span",
                                "kind": 3,
                                "startTimeUnixNano": "1000",
                                "endTimeUnixNano": 2000,
                                "attributes": [{"key": semconv.ATTEMPT_ID, "value": {"stringValue": "a1"}}],
                                "someFutureField": {"ignored": True},
                            }
                        ]
                    }
                ]
            }
        ]
    }
    response = client.post("/v1/traces", json=body)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert json.loads(response.content) == {}
    assert [s.span_id for s in stored(store)] == ["b7ad6b7169203331"]


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_compressed_requests(client: TestClient, store: SQLiteStore, encoding: str) -> None:
    raw = trace_request(3).SerializeToString()
    body = gzip.compress(raw) if encoding == "gzip" else zlib.compress(raw)
    response = client.post("/v1/traces", content=body, headers={**PROTOBUF, "content-encoding": encoding})
    assert response.status_code == 200
    assert len(stored(store)) == 3


def test_the_same_request_twice_stores_its_spans_once(client: TestClient, store: SQLiteStore) -> None:
    body = trace_request(4).SerializeToString()
    for _ in range(2):
        assert client.post("/v1/traces", content=body, headers=PROTOBUF).status_code == 200
    assert len(stored(store)) == 4


def test_gzip_bomb_is_refused_with_413(client: TestClient, store: SQLiteStore) -> None:
    bomb = gzip.compress(b"\0" * (64 * 1024 * 1024), compresslevel=9)
    response = client.post("/v1/traces", content=bomb, headers={**PROTOBUF, "content-encoding": "gzip"})
    assert response.status_code == 413
    assert stored(store) == []


def test_a_body_over_the_cap_is_refused_with_413(client: TestClient) -> None:
    response = client.post("/v1/traces", content=b"\0" * (2 * 1024 * 1024), headers=PROTOBUF)
    assert response.status_code == 413


def test_unknown_content_type_is_415_and_garbage_is_400(client: TestClient, store: SQLiteStore) -> None:
    assert client.post("/v1/traces", content=b"x", headers={"content-type": "text/csv"}).status_code == 415
    unknown_encoding = client.post("/v1/traces", content=b"x", headers={**PROTOBUF, "content-encoding": "br"})
    assert unknown_encoding.status_code == 415
    garbage = client.post("/v1/traces", content=b"\xff\xff\xff\xff", headers=PROTOBUF)
    assert garbage.status_code == 400
    assert (
        client.post("/v1/traces", content=b"[1, 2", headers={"content-type": "application/json"}).status_code
        == 400
    )
    assert stored(store) == []


def test_logs_are_stored_and_metrics_accepted(client: TestClient, store: SQLiteStore) -> None:
    request = ExportLogsServiceRequest()
    record = request.resource_logs.add().scope_logs.add().log_records.add()
    record.CopyFrom(
        ProtoLogRecord(
            time_unix_nano=5, trace_id=b"\x01" * 16, span_id=b"\x02" * 8, body=AnyValue(string_value="hello")
        )
    )
    response = client.post("/v1/logs", content=request.SerializeToString(), headers=PROTOBUF)
    assert response.status_code == 200
    logs = store.get_logs(SpanQuery(trace_id="01" * 16))
    assert [(lg.body, lg.span_id) for lg in logs] == [("hello", "02" * 8)]
    assert client.post("/v1/metrics", content=b"", headers=PROTOBUF).status_code == 200


class SlowStore(SQLiteStore):
    """A real SQLite store whose span writes wait until released, to fill the ingest queue."""

    def __init__(self) -> None:
        super().__init__(":memory:")
        self.release = threading.Event()

    def add_encoded_spans(self, spans: Sequence[EncodedSpan]) -> int:
        self.release.wait(10)
        return super().add_encoded_spans(spans)


def test_full_ingest_queue_answers_503_with_retry_after() -> None:
    store = SlowStore()
    settings = ServerSettings.resolve(env={}, db=":memory:", ingest_queue_spans=10)
    with TestClient(create_app(store, settings, close_store=True)) as client:
        first: list[int] = []
        thread = threading.Thread(
            target=lambda: first.append(
                client.post(
                    "/v1/traces", content=trace_request(10).SerializeToString(), headers=PROTOBUF
                ).status_code
            )
        )
        thread.start()
        time.sleep(0.3)
        refused = client.post(
            "/v1/traces", content=trace_request(5, trace_byte=2).SerializeToString(), headers=PROTOBUF
        )
        assert refused.status_code == 503
        assert refused.headers["retry-after"] in {"1", "2", "3"}
        store.release.set()
        thread.join(10)
        assert first == [200]
        assert len(store.get_spans(SpanQuery(attempt_id="a1"))) == 10


def test_spans_and_logs_with_times_past_int64_are_rejected_not_the_request(
    client: TestClient, store: SQLiteStore
) -> None:
    """Times at or past 2**63 ns cannot be stored: those items are refused (partial success), others kept."""
    request = trace_request(3)
    request.resource_spans[0].scope_spans[0].spans[1].end_time_unix_nano = 2**64 - 1
    response = client.post("/v1/traces", content=request.SerializeToString(), headers=PROTOBUF)
    assert response.status_code == 200
    answer = ExportTraceServiceResponse()
    answer.ParseFromString(response.content)
    assert answer.partial_success.rejected_spans == 1
    assert "2**63" in answer.partial_success.error_message
    assert [s.name for s in stored(store)] == ["span-0", "span-2"]

    document = {
        "resourceSpans": [
            {
                "scopeSpans": [
                    {
                        "spans": [
                            {
                                "traceId": "0c" * 16,
                                "spanId": "01" * 8,
                                "name": "late",
                                "endTimeUnixNano": "9" * 19,
                            },
                            {
                                "traceId": "0c" * 16,
                                "spanId": "02" * 8,
                                "name": "fine",
                                "endTimeUnixNano": "5",
                            },
                        ]
                    }
                ]
            }
        ]
    }
    answer_json = client.post("/v1/traces", json=document).json()
    assert answer_json["partialSuccess"]["rejectedSpans"] == "1"
    assert [s.name for s in store.get_spans(SpanQuery(trace_id="0c" * 16))] == ["fine"]

    logs = ExportLogsServiceRequest()
    records = logs.resource_logs.add().scope_logs.add().log_records
    records.add(time_unix_nano=2**63, severity_text="late")
    records.add(time_unix_nano=5, severity_text="fine")
    assert client.post("/v1/logs", content=logs.SerializeToString(), headers=PROTOBUF).status_code == 200
    assert [lg.severity_text for lg in store.get_logs(SpanQuery())] == ["fine"]


class PickyStore(SQLiteStore):
    """A real SQLite store that fails any write holding a span named "poison"."""

    def __init__(self) -> None:
        super().__init__(":memory:")
        self.writes: list[int] = []

    def add_encoded_spans(self, spans: Sequence[EncodedSpan]) -> int:
        self.writes.append(len(spans))
        if any(s.name == "poison" for s in spans):
            raise RuntimeError("cannot store this one")
        return super().add_encoded_spans(spans)


def test_a_request_the_store_refuses_does_not_fail_the_requests_grouped_with_it() -> None:
    store = PickyStore()
    queue = IngestQueue(store)
    poison = trace_request(2, trace_byte=9)
    poison.resource_spans[0].scope_spans[0].spans[0].name = "poison"

    async def send_together() -> list[BaseException | None]:
        jobs = [
            asyncio.ensure_future(queue.put(spans=decode_encoded_spans(request.SerializeToString()).records))
            for request in (trace_request(3), poison, trace_request(2, trace_byte=5))
        ]
        await asyncio.sleep(0.05)  # all three are queued before the writer starts: one group
        queue.start()
        return await asyncio.gather(*jobs, return_exceptions=True)

    try:
        results = asyncio.run(send_together())
    finally:
        queue.stop()
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], OverloadedError)
    assert store.writes[0] == 7  # first tried as one group, then request by request
    assert len(store.get_spans(SpanQuery())) == 5
