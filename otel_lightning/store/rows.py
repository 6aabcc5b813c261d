"""Record <-> row conversions shared by the SQL stores (no SQL here, no driver).

A row is a plain tuple whose values follow a ``*_COLUMNS`` constant; structured fields (attributes, events,
inputs, resources) are compact JSON text (``separators=(",", ":")``, ``ensure_ascii=False``), so that SQLite
and PostgreSQL store the same text. Spans are the exception: a span row keeps the span's OTLP message
(spans/encoded.py), and rows written by schema 1 are still read. Log conversion is on the ingest hot path:
one JSON encode per mapping and nothing per value. When ``orjson`` is installed it writes telemetry JSON
(5-10x faster than the standard library; non-finite floats become ``null``), and the standard library takes
whatever it refuses.
"""

from __future__ import annotations

import base64
import json
import math
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from otel_lightning._validate import valid_name
from otel_lightning.exceptions import ValidationError
from otel_lightning.resources import JSON, Resource, ResourceVersion, decode_resources
from otel_lightning.spans.encoded import EncodedSpan, encode_span, record_of
from otel_lightning.spans.records import LogRecord, SpanEvent, SpanKind, SpanLink, SpanRecord, StatusCode
from otel_lightning.types import Attempt, AttemptStatus, Rollout, RolloutStatus, Task


def _optional_orjson() -> Any:
    try:
        import orjson
    except ImportError:  # an optional accelerator
        return None
    return orjson


_orjson = _optional_orjson()

Row = tuple[Any, ...]
"""One row's values, in the order of the matching ``*_COLUMNS``."""


def _lenient(value: Any) -> Any:
    # Telemetry is stored rather than dropped: odd attribute values are converted, never refused.
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(value).decode("ascii")  # OTLP JSON encodes bytes values as base64
    if isinstance(value, Iterable) and not isinstance(value, str):
        return list(value)
    return str(value)


def _strict(value: Any) -> Any:
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


_encode_stdlib = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=_lenient).encode


def _encode_orjson(value: Any) -> str:
    try:
        return _orjson.dumps(value, default=_lenient).decode()
    except TypeError:  # orjson refuses non-str keys, ints beyond 64 bits and lone surrogates; json does not
        return _encode_stdlib(value)


_encode_lenient = _encode_stdlib if _orjson is None else _encode_orjson
_encode_strict = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=_strict
).encode
_decode = json.JSONDecoder().decode


def dumps(value: JSON) -> str:
    """Compact JSON text for telemetry; values JSON cannot hold (bytes, sets, ...) are converted."""
    return _encode_lenient(value)


def dumps_strict(value: JSON, where: str) -> str:
    """Compact JSON text for user input; ValidationError if ``value`` is not plain JSON."""
    try:
        return _encode_strict(value)
    except (TypeError, ValueError, RecursionError) as exc:
        raise ValidationError(f"{where} must be JSON-serialisable: {exc}") from None


_SURROGATE = re.compile("[\ud800-\udfff]")


def scrub(row: Row) -> Row:
    """The row with lone surrogates in its text replaced by U+FFFD, which SQL drivers cannot encode."""
    return tuple(_SURROGATE.sub("\ufffd", v) if isinstance(v, str) else v for v in row)


def loads(text: str | None) -> Any:
    """Parse JSON text written by :func:`dumps`; ``None`` stays ``None``."""
    return None if text is None else _decode(text)


# --- Spans -----------------------------------------------------------------------------------------------

SPAN_COLUMNS = EncodedSpan._fields
"""The columns a span is written to; an :class:`~otel_lightning.spans.encoded.EncodedSpan` is such a row."""

LEGACY_SPAN_COLUMNS = ("attributes", "events", "links", "resource")
"""JSON columns of spans written by schema 1 (before spans kept their OTLP message). Rows written since leave
them empty ('') and fill ``otlp_span`` instead; a database upgraded in place holds both kinds of rows."""

SPAN_READ_COLUMNS = SPAN_COLUMNS + LEGACY_SPAN_COLUMNS
"""The columns a span is read from, by :func:`span_from_row`."""

_OTLP_SPAN = SPAN_COLUMNS.index("otlp_span")
_N_COLUMNS = len(SPAN_COLUMNS)


def spans_to_rows(spans: Iterable[SpanRecord]) -> list[EncodedSpan]:
    """Rows for :data:`SPAN_COLUMNS`, one per span."""
    return [encode_span(s) for s in spans]


def span_from_row(row: Row) -> SpanRecord:
    """The span stored in a row of :data:`SPAN_READ_COLUMNS`, whichever schema wrote it."""
    if row[_OTLP_SPAN] is not None:
        return record_of(EncodedSpan(*row[:_N_COLUMNS]))
    return _legacy_span(row)


def _legacy_span(row: Row) -> SpanRecord:
    columns = dict(zip(SPAN_READ_COLUMNS, row, strict=True))
    events = _decode(columns["events"])
    links = _decode(columns["links"])
    return SpanRecord(
        trace_id=columns["trace_id"],
        span_id=columns["span_id"],
        parent_span_id=columns["parent_span_id"],
        name=columns["name"],
        kind=SpanKind(columns["kind"]),
        start_ns=columns["start_ns"],
        end_ns=columns["end_ns"],
        status_code=StatusCode(columns["status_code"]),
        status_message=columns["status_message"],
        rollout_id=columns["rollout_id"],
        attempt_id=columns["attempt_id"],
        experiment=columns["experiment"],
        scope_name=columns["scope_name"],
        scope_version=columns["scope_version"],
        attributes=_decode(columns["attributes"]),
        events=tuple(SpanEvent(e["name"], e["time_ns"], e["attributes"]) for e in events),
        links=tuple(SpanLink(lk["trace_id"], lk["span_id"], lk["attributes"]) for lk in links),
        resource=_decode(columns["resource"]),
    )


# --- Logs ------------------------------------------------------------------------------------------------

LOG_COLUMNS = (
    "time_ns",
    "observed_ns",
    "trace_id",
    "span_id",
    "severity_number",
    "severity_text",
    "event_name",
    "scope_name",
    "rollout_id",
    "attempt_id",
    "experiment",
    "body",
    "attributes",
    "resource",
)


def logs_to_rows(logs: Iterable[LogRecord]) -> list[Row]:
    """Rows for :data:`LOG_COLUMNS`, one per log record."""
    encode = _encode_lenient
    return [
        (
            r.time_ns,
            r.observed_ns,
            r.trace_id,
            r.span_id,
            r.severity_number,
            r.severity_text,
            r.event_name,
            r.scope_name,
            r.rollout_id,
            r.attempt_id,
            r.experiment,
            encode(r.body),
            encode(r.attributes) if r.attributes else "{}",
            encode(r.resource) if r.resource else "{}",
        )
        for r in logs
    ]


def log_from_row(row: Row) -> LogRecord:
    """The log record stored in a row of :data:`LOG_COLUMNS`."""
    return LogRecord(
        time_ns=row[0],
        observed_ns=row[1],
        trace_id=row[2],
        span_id=row[3],
        severity_number=row[4],
        severity_text=row[5],
        event_name=row[6],
        scope_name=row[7],
        rollout_id=row[8],
        attempt_id=row[9],
        experiment=row[10],
        body=_decode(row[11]),
        attributes=_decode(row[12]),
        resource=_decode(row[13]),
    )


# --- Rollouts and attempts -------------------------------------------------------------------------------

ROLLOUT_COLUMNS = (
    "rollout_id",
    "experiment",
    "input",
    "status",
    "created_ns",
    "updated_ns",
    "max_attempts",
    "attempt_count",
    "resource_version",
    "timeout_s",
    "metadata",
    "attempt_id",
    "reward",
    "error",
)


def rollout_to_row(rollout: Rollout) -> Row:
    """A row of :data:`ROLLOUT_COLUMNS`; ValidationError if the input or metadata is not plain JSON."""
    return (
        rollout.rollout_id,
        rollout.experiment,
        dumps_strict(rollout.input, "task.input"),
        rollout.status.value,
        rollout.created_ns,
        rollout.updated_ns,
        rollout.max_attempts,
        rollout.attempt_count,
        rollout.resource_version,
        rollout.timeout_s,
        dumps_strict(rollout.metadata, "task.metadata"),
        rollout.attempt_id,
        rollout.reward,
        rollout.error,
    )


def rollout_from_row(row: Row) -> Rollout:
    """The rollout stored in a row of :data:`ROLLOUT_COLUMNS`."""
    return Rollout(
        rollout_id=row[0],
        experiment=row[1],
        input=_decode(row[2]),
        status=RolloutStatus(row[3]),
        created_ns=row[4],
        updated_ns=row[5],
        max_attempts=row[6],
        attempt_count=row[7],
        resource_version=row[8],
        timeout_s=row[9],
        metadata=_decode(row[10]),
        attempt_id=row[11],
        reward=row[12],
        error=row[13],
    )


ATTEMPT_COLUMNS = (
    "attempt_id",
    "rollout_id",
    "experiment",
    "sequence",
    "status",
    "worker_id",
    "resource_version",
    "started_ns",
    "lease_expires_ns",
    "ended_ns",
    "reward",
    "error",
    "span_count",
)


def attempt_to_row(attempt: Attempt) -> Row:
    """A row of :data:`ATTEMPT_COLUMNS`."""
    return (
        attempt.attempt_id,
        attempt.rollout_id,
        attempt.experiment,
        attempt.sequence,
        attempt.status.value,
        attempt.worker_id,
        attempt.resource_version,
        attempt.started_ns,
        attempt.lease_expires_ns,
        attempt.ended_ns,
        attempt.reward,
        attempt.error,
        attempt.span_count,
    )


def attempt_from_row(row: Row) -> Attempt:
    """The attempt stored in a row of :data:`ATTEMPT_COLUMNS`."""
    return Attempt(
        attempt_id=row[0],
        rollout_id=row[1],
        experiment=row[2],
        sequence=row[3],
        status=AttemptStatus(row[4]),
        worker_id=row[5],
        resource_version=row[6],
        started_ns=row[7],
        lease_expires_ns=row[8],
        ended_ns=row[9],
        reward=row[10],
        error=row[11],
        span_count=row[12],
    )


# --- Resource versions -----------------------------------------------------------------------------------

VERSION_COLUMNS = ("experiment", "version", "resources", "created_ns", "metadata")


def version_to_row(version: ResourceVersion) -> Row:
    """A row of :data:`VERSION_COLUMNS`; ValidationError if the metadata is not plain JSON."""
    return (
        version.experiment,
        version.version,
        resources_json(version.resources),
        version.created_ns,
        dumps_strict(version.metadata, "metadata"),
    )


def resources_json(resources: Mapping[str, Resource]) -> str:
    """``{name: resource.to_json()}`` as JSON text."""
    return dumps_strict({name: r.to_json() for name, r in resources.items()}, "resources")


def version_from_row(row: Row) -> ResourceVersion:
    """The resource version stored in a row of :data:`VERSION_COLUMNS`."""
    return ResourceVersion(
        experiment=row[0],
        version=row[1],
        resources=decode_resources(_decode(row[2])),
        created_ns=row[3],
        metadata=_decode(row[4]),
    )


# --- Checks and preparation shared by the SQL stores --------------------------------------------------------

_INT64_MAX = 2**63 - 1


def int64(value: int | None, where: str) -> int | None:
    """``value`` if a signed 64-bit column holds it; else ValidationError (not a driver's OverflowError)."""
    if value is not None and not -_INT64_MAX - 1 <= value <= _INT64_MAX:
        raise ValidationError(f"{where} is out of range")
    return value


def seconds_ns(seconds: float, where: str) -> int:
    """A positive duration of at most a week, in nanoseconds; else ValidationError."""
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise ValidationError(f"{where} must be a number of seconds")
    if not (math.isfinite(seconds) and 0 < seconds <= 7 * 86400):
        raise ValidationError(f"{where} must be positive and at most a week")
    return int(seconds * 1e9)


def prepare_claims(
    worker_id: str, request_ids: Sequence[str], experiments: Sequence[str] | str, lease_s: float
) -> tuple[int, tuple[str, ...]]:
    """The checked arguments of a batch of claims: the lease in nanoseconds and the experiments to claim from
    (a bare string is one experiment; empty means all). ValidationError before any transaction."""
    lease_ns = seconds_ns(lease_s, "lease_s")
    valid_name(worker_id, "worker_id")
    for request_id in request_ids:
        valid_name(request_id, "request_id")
    wanted = (experiments,) if isinstance(experiments, str) else tuple(sorted(set(experiments)))
    return lease_ns, wanted


def prepare_enqueue(tasks: Sequence[Task], now: int) -> list[tuple[Rollout, Row]]:
    """The queued rollouts of ``tasks`` and their rows, all serialised before any transaction (bad input
    anywhere writes nothing). The rollouts carry the stored JSON, which is what every later read returns."""
    prepared: list[tuple[Rollout, Row]] = []
    for task in tasks:
        if not isinstance(task, Task):
            raise ValidationError(f"enqueue takes Task records, not {type(task).__name__}")
        int64(task.resource_version, "task.resource_version")
        rollout = Rollout(
            rollout_id=task.rollout_id or uuid.uuid4().hex,
            experiment=task.experiment,
            input=task.input,
            status=RolloutStatus.QUEUED,
            created_ns=now,
            updated_ns=now,
            max_attempts=task.max_attempts,
            attempt_count=0,
            resource_version=task.resource_version,
            timeout_s=task.timeout_s,
        )
        row = rollout_to_row(replace(rollout, metadata=task.metadata))
        prepared.append((replace(rollout, input=loads(row[2]), metadata=loads(row[10])), row))
    return prepared


def prepare_publish(
    experiment: str,
    resources: Mapping[str, Resource],
    expected_version: int | None,
    metadata: Mapping[str, JSON] | None,
) -> tuple[str, dict[str, Resource], str]:
    """Check a publish's arguments and encode them before any transaction: the resources' JSON text, the
    resources as decoded back from it (names and kinds validated), and the metadata's JSON text."""
    valid_name(experiment, "experiment")
    if expected_version is not None and (
        isinstance(expected_version, bool) or not isinstance(expected_version, int) or expected_version < 0
    ):
        raise ValidationError("expected_version must be a non-negative integer")
    if not isinstance(resources, Mapping) or not all(hasattr(r, "to_json") for r in resources.values()):
        raise ValidationError("resources must map names to Resource records")
    text = resources_json(resources)
    return text, decode_resources(loads(text)), dumps_strict(metadata or {}, "metadata")
