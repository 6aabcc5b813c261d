"""force_flush tells the truth: failed batches, dropped spans and a missed deadline give False.

The SDK's BatchSpanProcessor.force_flush returns True in all three cases; instrument() wraps it in
``_ExportingProcessor``. The exporters here are the test's stand-ins for the network.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from otel_lightning.instrumentation.setup import _ExportingProcessor


class ScriptedExporter(SpanExporter):
    """Fails the batches whose spans are named ``fail``; waits for ``gate`` before answering."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.gate.set()
        self.delivered: list[str] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.gate.wait(10)
        if any(span.name == "fail" for span in spans):
            return SpanExportResult.FAILURE
        self.delivered.extend(span.name for span in spans)
        return SpanExportResult.SUCCESS


@pytest.fixture
def exporter() -> ScriptedExporter:
    return ScriptedExporter()


def _setup(
    exporter: SpanExporter, queue: int = 1024, patience_s: float = 0.0
) -> tuple[TracerProvider, _ExportingProcessor]:
    # No patience by default: these tests look at batches that fail for good.
    provider = TracerProvider()
    processor = _ExportingProcessor(
        exporter, max_queue_size=queue, schedule_delay_ms=50, patience_s=patience_s
    )
    provider.add_span_processor(processor)
    return provider, processor


@pytest.fixture
def pipeline(exporter: ScriptedExporter) -> Iterator[tuple[TracerProvider, _ExportingProcessor]]:
    provider, processor = _setup(exporter)
    yield provider, processor
    exporter.gate.set()
    provider.shutdown()


def test_flush_is_true_when_everything_was_delivered(exporter: ScriptedExporter, pipeline: tuple) -> None:
    provider, processor = pipeline
    tracer = provider.get_tracer("t")
    for _ in range(1000):
        tracer.start_span("ok").end()
    assert processor.force_flush() is True
    assert len(exporter.delivered) == 1000


def test_a_failed_batch_makes_the_next_flush_false(pipeline: tuple) -> None:
    provider, processor = pipeline
    tracer = provider.get_tracer("t")
    tracer.start_span("fail").end()
    assert processor.force_flush() is False
    tracer.start_span("ok").end()
    assert processor.force_flush() is True  # only failures since the previous flush count


def test_spans_dropped_by_a_full_queue_make_the_flush_false(exporter: ScriptedExporter) -> None:
    provider, processor = _setup(exporter, queue=8)
    tracer = provider.get_tracer("t")
    exporter.gate.clear()  # the exporter is stuck: the queue fills up
    for _ in range(100):
        tracer.start_span("ok").end()
    exporter.gate.set()
    try:
        assert processor.force_flush() is False
        tracer.start_span("ok").end()
        assert processor.force_flush() is True
    finally:
        provider.shutdown()


def test_flush_gives_up_at_its_deadline(exporter: ScriptedExporter, pipeline: tuple) -> None:
    provider, processor = pipeline
    exporter.gate.clear()
    provider.get_tracer("t").start_span("ok").end()
    started = time.monotonic()
    assert processor.force_flush(timeout_millis=200) is False
    assert time.monotonic() - started < 2


def test_spans_after_shutdown_are_ignored(exporter: ScriptedExporter) -> None:
    provider, processor = _setup(exporter)
    processor.shutdown()
    provider.get_tracer("t").start_span("late").end()
    assert processor.force_flush() is False
    assert exporter.delivered == []
    provider.shutdown()


class FlakyExporter(SpanExporter):
    """Fails the first ``failures`` calls (a server restarting), then delivers."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0
        self.delivered: list[str] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.calls += 1
        if self.calls <= self.failures:
            return SpanExportResult.FAILURE
        self.delivered.extend(span.name for span in spans)
        return SpanExportResult.SUCCESS


def test_a_batch_that_fails_for_a_while_is_sent_again_until_delivered() -> None:
    exporter = FlakyExporter(failures=2)
    provider, processor = _setup(exporter, patience_s=30.0)
    try:
        provider.get_tracer("t").start_span("survivor").end()
        assert processor.force_flush(timeout_millis=10_000) is True
        assert exporter.delivered == ["survivor"]
        assert exporter.calls == 3
    finally:
        provider.shutdown()
