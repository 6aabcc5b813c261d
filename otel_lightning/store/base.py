"""The store's plug points: small ABCs that SQLite (embedded) and PostgreSQL (scale-out) implement.

A :class:`Store` is all four: the rollout queue, the ledger of rollouts and attempts, the resource versions
and the spans. Methods are synchronous and thread-safe; the server calls them from worker threads.

The contract every implementation keeps (tests/store/test_conformance.py checks it against each one):

- ``enqueue`` is idempotent by ``Task.rollout_id``: the same id returns the existing rollout unchanged.
- ``claim`` is idempotent by ``request_id``: a retried claim returns the same attempt, never a second one.
  Rollouts are claimed oldest first; a claim starts an attempt with a lease of ``lease_s`` seconds and
  records the resource version it must run with (the pinned one, else the experiment's latest).
- ``heartbeat`` and ``complete`` take the attempt id and fail with StaleAttemptError once that attempt has
  ended or been superseded (fencing): a stale worker never changes a rollout.
- ``expire`` ends attempts whose lease or time limit has passed as ``timed_out`` and requeues their rollout
  until ``max_attempts``, after which the rollout fails with the reason.
- Resource versions are immutable and numbered 1, 2, ... per experiment; ``publish`` with an
  ``expected_version`` fails with ConflictError unless that is the latest (compare-and-swap).
- ``add_encoded_spans`` (and ``add_spans``, which encodes records first) deduplicates on (trace_id, span_id)
  and returns only when the spans are durable.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from otel_lightning.exceptions import NotFoundError, OtelLightningError, StaleAttemptError
from otel_lightning.resources import JSON, Resource, ResourceVersion
from otel_lightning.spans.encoded import EncodedSpan, encode_span
from otel_lightning.spans.records import LogRecord, SpanRecord
from otel_lightning.types import Attempt, Claim, Outcome, Rollout, RolloutFilter, Task


class RolloutQueue(ABC):
    """The work queue: tasks in, claimed attempts out, outcomes back."""

    @abstractmethod
    def enqueue(self, tasks: Sequence[Task]) -> list[Rollout]:
        """Add tasks as queued rollouts, in one transaction; known rollout ids return the existing rollout."""

    def claim(
        self, worker_id: str, request_id: str, experiments: Sequence[str] = (), lease_s: float = 30.0
    ) -> Claim | None:
        """Start an attempt at the oldest queued rollout (of the given experiments; all if empty).

        Returns None when nothing is queued. A repeated ``request_id`` returns the claim it made before.
        """
        claims = self.claim_many(worker_id, [request_id], experiments, lease_s)
        return claims[0] if claims else None

    @abstractmethod
    def claim_many(
        self,
        worker_id: str,
        request_ids: Sequence[str],
        experiments: Sequence[str] = (),
        lease_s: float = 30.0,
    ) -> list[Claim]:
        """:meth:`claim` for each request id in turn, in one transaction, stopping when nothing is left to
        claim. Bad arguments claim nothing."""

    @abstractmethod
    def heartbeat(self, attempt_id: str, lease_s: float = 30.0) -> Attempt:
        """Extend a running attempt's lease; StaleAttemptError if it is no longer running."""

    @abstractmethod
    def complete(self, attempt_id: str, outcome: Outcome) -> Attempt:
        """End a running attempt and decide its rollout; repeating the same completion is allowed."""

    def complete_many(self, items: Sequence[tuple[str, Outcome]]) -> list[Attempt | OtelLightningError]:
        """:meth:`complete` for each (attempt id, outcome), in order: the ended attempt, or the error that
        item met (StaleAttemptError, NotFoundError) returned in its place, not raised.

        A store may do them all in one transaction; by default each is a :meth:`complete` of its own.
        """
        results: list[Attempt | OtelLightningError] = []
        for attempt_id, outcome in items:
            try:
                results.append(self.complete(attempt_id, outcome))
            except (StaleAttemptError, NotFoundError) as exc:
                results.append(exc)
        return results


class RolloutLedger(ABC):
    """Reading rollouts and attempts."""

    @abstractmethod
    def get_rollout(self, rollout_id: str) -> Rollout:
        """The rollout; NotFoundError if there is none."""

    @abstractmethod
    def get_attempt(self, attempt_id: str) -> Attempt:
        """The attempt; NotFoundError if there is none."""

    @abstractmethod
    def list_rollouts(self, where: RolloutFilter) -> list[Rollout]:
        """Rollouts matching the filter, oldest first."""

    @abstractmethod
    def list_attempts(self, rollout_id: str) -> list[Attempt]:
        """The rollout's attempts in order; NotFoundError if there is no such rollout."""


class RolloutControl(ABC):
    """Ending rollouts from outside the worker: a user's cancel, the watchdog's expiry."""

    @abstractmethod
    def cancel(self, rollout_id: str) -> Rollout:
        """Cancel a rollout that has not ended (a no-op on an ended one); a running attempt becomes
        ``cancelled`` and its worker's next heartbeat or completion gets StaleAttemptError."""

    @abstractmethod
    def expire(self, now_ns: int) -> list[Attempt]:
        """Time out running attempts whose lease or time limit has passed; return the attempts it ended."""


class ResourceStore(ABC):
    """Immutable, numbered resource versions per experiment."""

    @abstractmethod
    def publish(
        self,
        experiment: str,
        resources: Mapping[str, Resource],
        expected_version: int | None = None,
        metadata: Mapping[str, JSON] | None = None,
    ) -> ResourceVersion:
        """Store a new version; ConflictError if ``expected_version`` is given and is not the latest."""

    @abstractmethod
    def get_resources(self, experiment: str, version: int | None = None) -> ResourceVersion:
        """A version, or the latest; version 0 (no resources) when nothing was published yet."""

    @abstractmethod
    def list_versions(self, experiment: str) -> list[ResourceVersion]:
        """Every version of the experiment, oldest first."""


@dataclass(frozen=True, slots=True)
class SpanQuery:
    """Which spans or log records to read; every field that is set must match."""

    rollout_id: str | None = None
    attempt_id: str | None = None
    trace_id: str | None = None
    limit: int = 100_000


class SpanStore(ABC):
    """Spans and log records, deduplicated, durable before acknowledged."""

    @abstractmethod
    def add_encoded_spans(self, spans: Sequence[EncodedSpan]) -> int:
        """Store spans in one transaction, skipping any (trace_id, span_id) already stored; return how many
        were new. The OTLP receiver hands spans over in this form (spans/encoded.py)."""

    def add_spans(self, spans: Sequence[SpanRecord]) -> int:
        """:meth:`add_encoded_spans` for span records."""
        return self.add_encoded_spans([encode_span(s) for s in spans])

    @abstractmethod
    def add_logs(self, logs: Sequence[LogRecord]) -> int:
        """Store log records in one transaction; return how many were stored."""

    @abstractmethod
    def get_spans(self, query: SpanQuery) -> list[SpanRecord]:
        """Matching spans ordered by start time."""

    @abstractmethod
    def get_logs(self, query: SpanQuery) -> list[LogRecord]:
        """Matching log records ordered by time."""

    def count_spans(self, attempt_id: str) -> int:
        """How many spans of the attempt are stored."""
        return len(self.get_spans(SpanQuery(attempt_id=attempt_id)))


class Store(RolloutQueue, RolloutLedger, RolloutControl, ResourceStore, SpanStore):
    """Everything the server keeps. ``close`` releases connections; it is safe to call twice."""

    def close(self) -> None:
        """Release the store's resources."""

    def watch(self, callback: Callable[[str], None]) -> Callable[[], None]:
        """Call ``callback(topic)`` ("queue", "rollouts") when another process changes the store; returns a
        function that stops watching. A store only one process uses has nothing to report: a no-op."""
        return lambda: None
