"""Shared helpers for the span tests: SDK objects -> records, fixture loading, a small span factory.

The converters mirror what spans/otlp.py does at ingest (hex ids, tuples -> lists, rollout identity copied out
of the attributes) without going through protobuf. ``record_llm_spans.py`` imports them in a subprocess.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest
from record_llm_spans import CONVENTIONS

from otel_lightning import semconv
from otel_lightning.spans.records import LogRecord, SpanEvent, SpanKind, SpanRecord, StatusCode

FIXTURES = Path(__file__).parent / "fixtures"
INSTRUMENTATION_PACKAGES = (
    "opentelemetry.instrumentation.openai",  # opentelemetry-instrumentation-openai (Traceloop)
    "opentelemetry.instrumentation.openai_v2",  # opentelemetry-instrumentation-openai-v2 + -util-genai
    "openinference.instrumentation.openai",  # openinference-instrumentation-openai
)
RECORDER = Path(__file__).parent / "record_llm_spans.py"


def plain(value: Any) -> Any:
    """An OTel attribute value as plain JSON-able Python (tuples -> lists, recursively)."""
    if isinstance(value, tuple | list):
        return [plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, bytes):
        return value.hex()
    return value


def _identity(attributes: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "rollout_id": attributes.get(semconv.ROLLOUT_ID),
        "attempt_id": attributes.get(semconv.ATTEMPT_ID),
        "experiment": attributes.get(semconv.EXPERIMENT),
    }


def span_record_from_readable(span: Any) -> SpanRecord:
    """An SDK ``ReadableSpan`` as a :class:`SpanRecord`."""
    attributes = plain(dict(span.attributes or {}))
    parent = span.parent.span_id if span.parent is not None else None
    return SpanRecord(
        trace_id=format(span.context.trace_id, "032x"),
        span_id=format(span.context.span_id, "016x"),
        parent_span_id=format(parent, "016x") if parent else None,
        name=span.name,
        kind=SpanKind(span.kind.name.lower()),
        start_ns=span.start_time,
        end_ns=span.end_time,
        attributes=attributes,
        events=tuple(SpanEvent(e.name, e.timestamp, plain(dict(e.attributes or {}))) for e in span.events),
        status_code=StatusCode(span.status.status_code.name.lower()),
        status_message=span.status.description or "",
        resource=plain(dict(span.resource.attributes)),
        scope_name=span.instrumentation_scope.name if span.instrumentation_scope else "",
        scope_version=(span.instrumentation_scope.version or "") if span.instrumentation_scope else "",
        **_identity(attributes),
    )


def log_record_from_readable(readable: Any) -> LogRecord:
    """An SDK ``ReadableLogRecord`` as a :class:`LogRecord`."""
    record = readable.log_record
    attributes = plain(dict(record.attributes or {}))
    return LogRecord(
        time_ns=record.timestamp or record.observed_timestamp or 0,
        observed_ns=record.observed_timestamp or 0,
        trace_id=format(record.trace_id, "032x") if record.trace_id else None,
        span_id=format(record.span_id, "016x") if record.span_id else None,
        severity_number=record.severity_number.value if record.severity_number is not None else 0,
        severity_text=record.severity_text or "",
        body=plain(record.body),
        attributes=attributes,
        event_name=record.event_name or "",
        resource=plain(dict(readable.resource.attributes)),
        scope_name=readable.instrumentation_scope.name if readable.instrumentation_scope else "",
        **_identity(attributes),
    )


def load_records(path: Path) -> tuple[list[SpanRecord], list[LogRecord]]:
    """Spans and logs from a JSON file written by ``record_llm_spans.py`` (or by hand in that layout)."""
    data = json.loads(path.read_text())
    spans = [SpanRecord.from_json(s) for s in data.get("spans", [])]
    logs = [LogRecord.from_json(r) for r in data.get("logs", [])]
    return spans, logs


def load_fixture(name: str) -> tuple[list[SpanRecord], list[LogRecord]]:
    return load_records(FIXTURES / name)


def make_span(
    span_id: str,
    parent: str | None = None,
    start: int = 0,
    end: int = 100,
    *,
    name: str | None = None,
    trace: str = "t1",
    attributes: Mapping[str, Any] | None = None,
    attempt: str | None = "a1",
    rollout: str | None = "r1",
    events: Iterable[SpanEvent] = (),
    status: StatusCode = StatusCode.UNSET,
) -> SpanRecord:
    """A span for hand-built trees: short ids are padded to real hex widths."""
    return SpanRecord(
        trace_id=trace.encode().hex().rjust(32, "0"),
        span_id=span_id.encode().hex().rjust(16, "0"),
        parent_span_id=parent.encode().hex().rjust(16, "0") if parent else None,
        name=name or span_id,
        kind=SpanKind.INTERNAL,
        start_ns=start,
        end_ns=end,
        attributes=dict(attributes or {}),
        events=tuple(events),
        status_code=status,
        rollout_id=rollout,
        attempt_id=attempt,
    )


def sid(short: str) -> str:
    """The padded span id :func:`make_span` gives ``short``."""
    return short.encode().hex().rjust(16, "0")


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package is missing
        return False


@pytest.fixture(scope="session")
def live_recordings(
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, tuple[list[SpanRecord], list[LogRecord]]]:
    """Run every instrumentation package for real (one forked process each) against the scripted LLM."""
    missing = [name for name in INSTRUMENTATION_PACKAGES if not _installed(name)]
    if missing:
        pytest.skip(f"instrumentation packages not installed: {', '.join(missing)}")
    out = tmp_path_factory.mktemp("recordings")
    proc = subprocess.run(
        [sys.executable, str(RECORDER), "all", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, f"recorder failed:\n{proc.stdout.decode(errors='replace')}"
    return {name: load_records(out / f"{name}.json") for name in CONVENTIONS}
