"""Stored telemetry: spans and log records as decoded from OTLP (pure data, no I/O)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from otel_lightning.resources import JSON


class SpanKind(StrEnum):
    """OpenTelemetry span kinds, by name."""

    UNSPECIFIED = "unspecified"
    INTERNAL = "internal"
    SERVER = "server"
    CLIENT = "client"
    PRODUCER = "producer"
    CONSUMER = "consumer"


class StatusCode(StrEnum):
    """OpenTelemetry span status codes, by name."""

    UNSET = "unset"
    OK = "ok"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class SpanEvent:
    """A timestamped event inside a span."""

    name: str
    time_ns: int
    attributes: Mapping[str, JSON] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SpanLink:
    """A link from a span to another span."""

    trace_id: str
    span_id: str
    attributes: Mapping[str, JSON] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SpanRecord:
    """One finished span, as stored.

    ``rollout_id``, ``attempt_id`` and ``experiment`` are copied out of the span's attributes at ingest (the
    client's rollout processor stamps them) so that spans can be found by rollout without reading attributes.
    """

    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    kind: SpanKind
    start_ns: int
    end_ns: int
    attributes: Mapping[str, JSON] = field(default_factory=dict)
    events: tuple[SpanEvent, ...] = ()
    links: tuple[SpanLink, ...] = ()
    status_code: StatusCode = StatusCode.UNSET
    status_message: str = ""
    resource: Mapping[str, JSON] = field(default_factory=dict)
    """Attributes of the OpenTelemetry resource that produced the span (service.name, ...)."""
    scope_name: str = ""
    scope_version: str = ""
    rollout_id: str | None = None
    attempt_id: str | None = None
    experiment: str | None = None

    @property
    def duration_ns(self) -> int:
        return self.end_ns - self.start_ns

    def to_json(self) -> dict[str, JSON]:
        return {
            "trace_id": self.trace_id,
            "span_id": self.span_id,
            "parent_span_id": self.parent_span_id,
            "name": self.name,
            "kind": self.kind.value,
            "start_ns": self.start_ns,
            "end_ns": self.end_ns,
            "attributes": dict(self.attributes),
            "events": [
                {"name": e.name, "time_ns": e.time_ns, "attributes": dict(e.attributes)} for e in self.events
            ],
            "links": [
                {"trace_id": lk.trace_id, "span_id": lk.span_id, "attributes": dict(lk.attributes)}
                for lk in self.links
            ],
            "status_code": self.status_code.value,
            "status_message": self.status_message,
            "resource": dict(self.resource),
            "scope_name": self.scope_name,
            "scope_version": self.scope_version,
            "rollout_id": self.rollout_id,
            "attempt_id": self.attempt_id,
            "experiment": self.experiment,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SpanRecord:
        return cls(
            trace_id=data["trace_id"],
            span_id=data["span_id"],
            parent_span_id=data.get("parent_span_id"),
            name=data["name"],
            kind=SpanKind(data.get("kind", "unspecified")),
            start_ns=data["start_ns"],
            end_ns=data["end_ns"],
            attributes=data.get("attributes") or {},
            events=tuple(
                SpanEvent(e["name"], e["time_ns"], e.get("attributes") or {})
                for e in data.get("events") or ()
            ),
            links=tuple(
                SpanLink(lk["trace_id"], lk["span_id"], lk.get("attributes") or {})
                for lk in data.get("links") or ()
            ),
            status_code=StatusCode(data.get("status_code", "unset")),
            status_message=data.get("status_message") or "",
            resource=data.get("resource") or {},
            scope_name=data.get("scope_name") or "",
            scope_version=data.get("scope_version") or "",
            rollout_id=data.get("rollout_id"),
            attempt_id=data.get("attempt_id"),
            experiment=data.get("experiment"),
        )


@dataclass(frozen=True, slots=True)
class LogRecord:
    """One OpenTelemetry log record (GenAI events arrive this way), linked to its span when it names one."""

    time_ns: int
    observed_ns: int
    trace_id: str | None
    span_id: str | None
    severity_number: int = 0
    severity_text: str = ""
    body: JSON = None
    attributes: Mapping[str, JSON] = field(default_factory=dict)
    event_name: str = ""
    resource: Mapping[str, JSON] = field(default_factory=dict)
    scope_name: str = ""
    rollout_id: str | None = None
    attempt_id: str | None = None
    experiment: str | None = None

    def to_json(self) -> dict[str, JSON]:
        return {
            "time_ns": self.time_ns,
            "observed_ns": self.observed_ns,
            "trace_id": self.trace_id,
            "span_id": self.span_id,
            "severity_number": self.severity_number,
            "severity_text": self.severity_text,
            "body": self.body,
            "attributes": dict(self.attributes),
            "event_name": self.event_name,
            "resource": dict(self.resource),
            "scope_name": self.scope_name,
            "rollout_id": self.rollout_id,
            "attempt_id": self.attempt_id,
            "experiment": self.experiment,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LogRecord:
        return cls(
            time_ns=data["time_ns"],
            observed_ns=data["observed_ns"],
            trace_id=data.get("trace_id"),
            span_id=data.get("span_id"),
            severity_number=data.get("severity_number", 0),
            severity_text=data.get("severity_text") or "",
            body=data.get("body"),
            attributes=data.get("attributes") or {},
            event_name=data.get("event_name") or "",
            resource=data.get("resource") or {},
            scope_name=data.get("scope_name") or "",
            rollout_id=data.get("rollout_id"),
            attempt_id=data.get("attempt_id"),
            experiment=data.get("experiment"),
        )
