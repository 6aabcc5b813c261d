"""Fixtures for the instrumentation tests.

In-process tests use a *local* TracerProvider, never the global one: that can be set once per process and is
shared with the other test packages. Tests of ``instrument()`` run it in a subprocess (see
``instrumentation_support.py``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from instrumentation_support import OtlpReceiver, serve_receiver
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Tracer

from otel_lightning.instrumentation.context import RolloutSpanProcessor


@dataclass
class MemoryTracing:
    """A local provider: RolloutSpanProcessor first, then an in-memory exporter."""

    provider: TracerProvider
    rollout: RolloutSpanProcessor
    exporter: InMemorySpanExporter

    def tracer(self) -> Tracer:
        return self.provider.get_tracer("tests")


@pytest.fixture
def tracing() -> Iterator[MemoryTracing]:
    provider = TracerProvider()
    rollout = RolloutSpanProcessor()
    exporter = InMemorySpanExporter()
    provider.add_span_processor(rollout)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield MemoryTracing(provider, rollout, exporter)
    provider.shutdown()


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with serve_receiver() as state:
        yield state
