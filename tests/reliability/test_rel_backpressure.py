"""A full ingest queue answers OTLP with 503 + Retry-After, and the real Python OTLP exporter's retries
deliver every span, once, when the server catches up."""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.reliability.rel_support import ServerProc

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]

SENDERS, BATCHES, BATCH = 8, 4, 250


def make_spans(count: int) -> list[ReadableSpan]:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("tests.reliability")
    for i in range(count):
        with tracer.start_as_current_span(f"span {i}", attributes={"payload": "x" * 200}):
            pass
    spans = list(memory.get_finished_spans())
    provider.shutdown()
    return spans


def test_rel_full_ingest_queue_503_then_exporter_retries_deliver_all(tmp_path: Path) -> None:
    server = ServerProc(
        tmp_path / "server.db", tmp_path / "server.log", env={"OTEL_LIGHTNING_INGEST_QUEUE_SPANS": "250"}
    ).start()
    spans = make_spans(SENDERS * BATCHES * BATCH)
    results: list[SpanExportResult] = []
    lock = threading.Lock()
    start = threading.Barrier(SENDERS)

    def send(index: int) -> None:
        exporter = OTLPSpanExporter(endpoint=f"{server.url}/v1/traces", timeout=10)
        mine = spans[index * BATCHES * BATCH : (index + 1) * BATCHES * BATCH]
        start.wait()
        for b in range(BATCHES):
            result = exporter.export(mine[b * BATCH : (b + 1) * BATCH])
            with lock:
                results.append(result)
        exporter.shutdown()

    try:
        threads = [threading.Thread(target=send, args=(i,)) for i in range(SENDERS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(50)
        refused = server.log_text().count("ingest queue full")
        with sqlite3.connect(f"file:{os.fspath(server.db)}?mode=ro", uri=True) as conn:
            stored = conn.execute("SELECT COUNT(*) FROM spans").fetchone()[0]
        assert refused > 0, "the queue never filled: nothing was tested"
        assert results == [SpanExportResult.SUCCESS] * (SENDERS * BATCHES)
        assert stored == len(spans)
    finally:
        server.stop()
