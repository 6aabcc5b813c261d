"""The records of the rollout queue: tasks in, rollouts and attempts through their lifecycle, outcomes back.

All records are frozen dataclasses; time is integer nanoseconds since the epoch. Each converts to and from
plain JSON with ``to_json()`` / ``from_json()``, which is the REST API's wire format; ``from_json`` on what
clients send raises :class:`~otel_lightning.exceptions.ValidationError` on bad input.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from otel_lightning._validate import optional, require, valid_name
from otel_lightning.exceptions import ValidationError
from otel_lightning.resources import JSON

DEFAULT_EXPERIMENT = "default"
"""The experiment a record belongs to when none is named."""


class RolloutStatus(StrEnum):
    """Where a rollout is in its life: queued -> running -> succeeded | failed | cancelled."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in (RolloutStatus.SUCCEEDED, RolloutStatus.FAILED, RolloutStatus.CANCELLED)


class AttemptStatus(StrEnum):
    """How one attempt at a rollout went; ``running`` until it ends."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class Task:
    """What a client enqueues: the agent's input and how to run it."""

    input: JSON
    """The task input passed to the agent function."""
    rollout_id: str | None = None
    """Client-chosen id; enqueueing the same id again returns the existing rollout (idempotent)."""
    experiment: str = DEFAULT_EXPERIMENT
    resource_version: int | None = None
    """Pin a resource version; ``None`` runs with the experiment's latest version at claim time."""
    max_attempts: int = 3
    """How many attempts before a rollout whose attempts keep timing out is failed."""
    timeout_s: float | None = None
    """Wall-clock limit of one attempt; ``None`` means no limit beyond the lease."""
    metadata: Mapping[str, JSON] = field(default_factory=dict)

    def __post_init__(self) -> None:
        valid_name(self.experiment, "task.experiment")
        if self.rollout_id is not None:
            valid_name(self.rollout_id, "task.rollout_id")
        if not 1 <= self.max_attempts <= 100:
            raise ValidationError("task.max_attempts must be within [1, 100]")
        if self.timeout_s is not None and not 0 < self.timeout_s <= 7 * 86400:
            raise ValidationError("task.timeout_s must be positive and at most a week")
        if self.resource_version is not None and self.resource_version < 0:
            raise ValidationError("task.resource_version must not be negative")

    def to_json(self) -> dict[str, JSON]:
        return {
            "input": self.input,
            "rollout_id": self.rollout_id,
            "experiment": self.experiment,
            "resource_version": self.resource_version,
            "max_attempts": self.max_attempts,
            "timeout_s": self.timeout_s,
            "metadata": dict(self.metadata),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Task:
        what = "task"
        if not isinstance(data, Mapping):
            raise ValidationError("task must be a JSON object")
        if "input" not in data:
            raise ValidationError("task: missing field 'input'")
        return cls(
            input=data["input"],
            rollout_id=optional(data, "rollout_id", str, what),
            experiment=optional(data, "experiment", str, what, DEFAULT_EXPERIMENT),
            resource_version=optional(data, "resource_version", int, what),
            max_attempts=optional(data, "max_attempts", int, what, 3),
            timeout_s=optional(data, "timeout_s", float, what),
            metadata=optional(data, "metadata", dict, what, {}),
        )


@dataclass(frozen=True, slots=True)
class Rollout:
    """One task's run through the queue, over one or more attempts."""

    rollout_id: str
    experiment: str
    input: JSON
    status: RolloutStatus
    created_ns: int
    updated_ns: int
    max_attempts: int
    attempt_count: int
    """Attempts started so far."""
    resource_version: int | None
    """The pinned version, or once claimed, the version of the latest attempt."""
    timeout_s: float | None = None
    metadata: Mapping[str, JSON] = field(default_factory=dict)
    attempt_id: str | None = None
    """The latest attempt, which is the one that decided a final status."""
    reward: float | None = None
    """The final reward of the latest attempt."""
    error: str | None = None
    """Why the rollout failed, if it did."""

    def to_json(self) -> dict[str, JSON]:
        return {
            "rollout_id": self.rollout_id,
            "experiment": self.experiment,
            "input": self.input,
            "status": self.status.value,
            "created_ns": self.created_ns,
            "updated_ns": self.updated_ns,
            "max_attempts": self.max_attempts,
            "attempt_count": self.attempt_count,
            "resource_version": self.resource_version,
            "timeout_s": self.timeout_s,
            "metadata": dict(self.metadata),
            "attempt_id": self.attempt_id,
            "reward": self.reward,
            "error": self.error,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Rollout:
        return cls(
            rollout_id=data["rollout_id"],
            experiment=data["experiment"],
            input=data["input"],
            status=RolloutStatus(data["status"]),
            created_ns=data["created_ns"],
            updated_ns=data["updated_ns"],
            max_attempts=data["max_attempts"],
            attempt_count=data["attempt_count"],
            resource_version=data.get("resource_version"),
            timeout_s=data.get("timeout_s"),
            metadata=data.get("metadata") or {},
            attempt_id=data.get("attempt_id"),
            reward=data.get("reward"),
            error=data.get("error"),
        )


@dataclass(frozen=True, slots=True)
class Attempt:
    """One try at running a rollout, by one worker, under a lease."""

    attempt_id: str
    rollout_id: str
    experiment: str
    sequence: int
    """1 for the first attempt at the rollout, 2 for the second, ..."""
    status: AttemptStatus
    worker_id: str
    resource_version: int
    """The exact resource version this attempt ran with."""
    started_ns: int
    lease_expires_ns: int
    ended_ns: int | None = None
    reward: float | None = None
    error: str | None = None
    span_count: int | None = None
    """Spans the worker says it exported for this attempt (reported at completion)."""

    def to_json(self) -> dict[str, JSON]:
        return {
            "attempt_id": self.attempt_id,
            "rollout_id": self.rollout_id,
            "experiment": self.experiment,
            "sequence": self.sequence,
            "status": self.status.value,
            "worker_id": self.worker_id,
            "resource_version": self.resource_version,
            "started_ns": self.started_ns,
            "lease_expires_ns": self.lease_expires_ns,
            "ended_ns": self.ended_ns,
            "reward": self.reward,
            "error": self.error,
            "span_count": self.span_count,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Attempt:
        return cls(
            attempt_id=data["attempt_id"],
            rollout_id=data["rollout_id"],
            experiment=data["experiment"],
            sequence=data["sequence"],
            status=AttemptStatus(data["status"]),
            worker_id=data["worker_id"],
            resource_version=data["resource_version"],
            started_ns=data["started_ns"],
            lease_expires_ns=data["lease_expires_ns"],
            ended_ns=data.get("ended_ns"),
            reward=data.get("reward"),
            error=data.get("error"),
            span_count=data.get("span_count"),
        )


@dataclass(frozen=True, slots=True)
class Claim:
    """What a worker gets from a claim: the rollout to run and the attempt it runs as."""

    rollout: Rollout
    attempt: Attempt

    def to_json(self) -> dict[str, JSON]:
        return {"rollout": self.rollout.to_json(), "attempt": self.attempt.to_json()}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Claim:
        return cls(rollout=Rollout.from_json(data["rollout"]), attempt=Attempt.from_json(data["attempt"]))


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a worker reports the end of an attempt."""

    status: AttemptStatus
    """``succeeded`` or ``failed``."""
    reward: float | None = None
    error: str | None = None
    span_count: int | None = None
    """Spans the worker ended and flushed for the attempt, so the server can tell when the trace is whole."""

    def __post_init__(self) -> None:
        if self.status not in (AttemptStatus.SUCCEEDED, AttemptStatus.FAILED):
            raise ValidationError("outcome.status must be 'succeeded' or 'failed'")
        if self.reward is not None and not math.isfinite(self.reward):
            raise ValidationError("outcome.reward must be a finite number")
        if self.span_count is not None and self.span_count < 0:
            raise ValidationError("outcome.span_count must not be negative")

    def to_json(self) -> dict[str, JSON]:
        return {
            "status": self.status.value,
            "reward": self.reward,
            "error": self.error,
            "span_count": self.span_count,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Outcome:
        what = "outcome"
        status = require(data, "status", str, what)
        try:
            parsed = AttemptStatus(status)
        except ValueError:
            raise ValidationError("outcome.status must be 'succeeded' or 'failed'") from None
        error = optional(data, "error", str, what)
        return cls(
            status=parsed,
            reward=optional(data, "reward", float, what),
            error=error[:10_000] if error else error,
            span_count=optional(data, "span_count", int, what),
        )


@dataclass(frozen=True, slots=True)
class RolloutFilter:
    """Which rollouts to list; every field that is set must match."""

    experiment: str | None = None
    statuses: tuple[RolloutStatus, ...] = ()
    resource_version: int | None = None
    rollout_ids: tuple[str, ...] = ()
    limit: int = 1000
    offset: int = 0
