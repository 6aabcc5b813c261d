"""Span rows as schema 1 wrote them (JSON columns, no OTLP message), for tests of upgrades in place."""

from __future__ import annotations

from typing import Any

from otel_lightning.spans.records import SpanRecord
from otel_lightning.store.rows import LEGACY_SPAN_COLUMNS, SPAN_COLUMNS, dumps

V1_SPAN_COLUMNS = (*SPAN_COLUMNS[:14], *LEGACY_SPAN_COLUMNS)
"""The span columns of schema 1, in its order."""


def v1_span_row(s: SpanRecord) -> tuple[Any, ...]:
    """The row schema 1's code wrote for ``s``, for :data:`V1_SPAN_COLUMNS`."""
    return (
        s.trace_id,
        s.span_id,
        s.parent_span_id,
        s.name,
        s.kind.value,
        s.start_ns,
        s.end_ns,
        s.status_code.value,
        s.status_message,
        s.rollout_id,
        s.attempt_id,
        s.experiment,
        s.scope_name,
        s.scope_version,
        dumps(s.attributes),
        dumps([{"name": e.name, "time_ns": e.time_ns, "attributes": e.attributes} for e in s.events]),
        dumps([{"trace_id": k.trace_id, "span_id": k.span_id, "attributes": k.attributes} for k in s.links]),
        dumps(s.resource),
    )
