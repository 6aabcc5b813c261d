"""Every REST call of the API as data: method, path, body, how to parse the answer, whether to retry.

The sync and async HTTP clients (client/http.py) execute these, so each call is written once. ``retry`` says
what is safe: ``IDEMPOTENT`` calls are retried on any transport error and on 429/502/503/504, since repeating
them changes nothing (reads, and writes keyed by a client-chosen id: enqueue by rollout id, claim by request
id, heartbeat, repeated completion). ``UNSENT_ONLY`` calls (publishing a resource version) are retried only
when the request provably never reached the server.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Generic, TypeVar
from urllib.parse import quote

from otel_lightning.exceptions import ERRORS_BY_CODE, ApiError, OtelLightningError
from otel_lightning.resources import JSON, Resource, ResourceVersion
from otel_lightning.spans.records import LogRecord, SpanRecord
from otel_lightning.spans.trajectory import RewardMatching, Trajectory
from otel_lightning.types import Attempt, Claim, Outcome, Rollout, RolloutFilter, Task

T = TypeVar("T")

MAX_CLAIM_BATCH = 256
"""Most claims the server hands out for one :func:`claim_batch` (collector/api_routes.py)."""
MAX_COMPLETE_BATCH = 256
"""Most completions the server takes in one :func:`complete_batch` (collector/api_routes.py)."""


class Retry(StrEnum):
    """When a failed call may be sent again."""

    IDEMPOTENT = "idempotent"
    UNSENT_ONLY = "unsent_only"


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """One API request and the decoder of its answer (``None`` for a 204)."""

    method: str
    path: str
    parse: Callable[[Any], T]
    body: JSON = None
    params: Sequence[tuple[str, str]] = ()
    retry: Retry = Retry.IDEMPOTENT
    wait_s: float = 0.0
    """How long the server may hold the request (long-poll); added to the client's read timeout."""


def error_from_problem(problem: Any, status: int) -> OtelLightningError:
    """The exception a problem document stands for: the class its ``type`` names, else :class:`ApiError`."""
    if isinstance(problem, Mapping):
        code, detail = problem.get("type", ""), str(problem.get("detail", ""))
    else:
        code, detail = "", str(problem)[:500]
    cls = ERRORS_BY_CODE.get(code)
    if cls is not None:
        return cls(detail)
    return ApiError(f"HTTP {status}: {detail}", status)


def _seg(value: str) -> str:
    return quote(value, safe="")


def health() -> Call[dict[str, Any]]:
    return Call("GET", "/api/v1/health", lambda body: body)


def enqueue(tasks: Sequence[Task]) -> Call[list[Rollout]]:
    # Tasks arrive here with rollout ids filled in by the caller, which makes a retry safe.
    return Call(
        "POST",
        "/api/v1/rollouts",
        lambda body: [Rollout.from_json(r) for r in body["rollouts"]],
        body={"tasks": [t.to_json() for t in tasks]},
    )


def list_rollouts(where: RolloutFilter) -> Call[list[Rollout]]:
    params = [("limit", str(where.limit)), ("offset", str(where.offset))]
    if where.experiment:
        params.append(("experiment", where.experiment))
    if where.resource_version is not None:
        params.append(("resource_version", str(where.resource_version)))
    params += [("status", s.value) for s in where.statuses]
    params += [("rollout_id", r) for r in where.rollout_ids]
    return Call(
        "GET",
        "/api/v1/rollouts",
        lambda body: [Rollout.from_json(r) for r in body["rollouts"]],
        params=params,
    )


def get_rollout(rollout_id: str) -> Call[Rollout]:
    return Call("GET", f"/api/v1/rollouts/{_seg(rollout_id)}", Rollout.from_json)


def cancel(rollout_id: str) -> Call[Rollout]:
    return Call("POST", f"/api/v1/rollouts/{_seg(rollout_id)}/cancel", Rollout.from_json)


def list_attempts(rollout_id: str) -> Call[list[Attempt]]:
    return Call(
        "GET",
        f"/api/v1/rollouts/{_seg(rollout_id)}/attempts",
        lambda body: [Attempt.from_json(a) for a in body["attempts"]],
    )


def wait(
    rollout_ids: Sequence[str], timeout_s: float, complete: bool = False
) -> Call[tuple[bool, list[Rollout], set[str]]]:
    """Long-poll until the rollouts are done: (all done, their records, the ids not done yet)."""
    body: dict[str, Any] = {"rollout_ids": list(rollout_ids), "timeout_s": timeout_s}
    if complete:
        body["complete"] = True
    return Call(
        "POST",
        "/api/v1/rollouts/wait",
        lambda b: (b["done"], [Rollout.from_json(r) for r in b["rollouts"]], set(b["waiting"])),
        body=body,
        wait_s=timeout_s,
    )


def claim(
    worker_id: str, request_id: str, experiments: Sequence[str], wait_s: float, lease_s: float | None = None
) -> Call[Claim | None]:
    body: dict[str, Any] = {
        "worker_id": worker_id,
        "request_id": request_id,
        "experiments": list(experiments),
        "wait_s": wait_s,
    }
    if lease_s is not None:
        body["lease_s"] = lease_s
    return Call(
        "POST",
        "/api/v1/claims",
        lambda b: None if b is None else Claim.from_json(b),
        body=body,
        wait_s=wait_s,
    )


def claim_batch(
    worker_id: str,
    request_id: str,
    max_claims: int,
    experiments: Sequence[str],
    wait_s: float,
    lease_s: float | None = None,
) -> Call[list[Claim]]:
    body: dict[str, Any] = {
        "worker_id": worker_id,
        "request_id": request_id,
        "max_claims": max_claims,
        "experiments": list(experiments),
        "wait_s": wait_s,
    }
    if lease_s is not None:
        body["lease_s"] = lease_s
    return Call(
        "POST",
        "/api/v1/claims/batch",
        lambda b: [Claim.from_json(c) for c in b["claims"]],
        body=body,
        wait_s=wait_s,
    )


def heartbeat(attempt_id: str, lease_s: float | None = None) -> Call[Attempt]:
    body = {} if lease_s is None else {"lease_s": lease_s}
    return Call("POST", f"/api/v1/attempts/{_seg(attempt_id)}/heartbeat", Attempt.from_json, body=body)


def complete(attempt_id: str, outcome: Outcome) -> Call[Attempt]:
    return Call(
        "POST", f"/api/v1/attempts/{_seg(attempt_id)}/complete", Attempt.from_json, body=outcome.to_json()
    )


def complete_batch(items: Sequence[tuple[str, Outcome]]) -> Call[list[Attempt | OtelLightningError]]:
    """Complete many attempts in one request (at most :data:`MAX_COMPLETE_BATCH`); one answer per item, in
    order: the ended attempt, or the error that item met (as an exception, not raised)."""
    body = {"completions": [{"attempt_id": a, "outcome": o.to_json()} for a, o in items]}
    return Call("POST", "/api/v1/attempts/complete", _completion_results, body=body)


def _completion_results(body: Any) -> list[Attempt | OtelLightningError]:
    results: list[Attempt | OtelLightningError] = []
    for item in body["results"]:
        if "attempt" in item:
            results.append(Attempt.from_json(item["attempt"]))
        else:
            error = item["error"]
            results.append(error_from_problem(error, int(error.get("status", 500))))
    return results


def get_attempt(attempt_id: str) -> Call[Attempt]:
    return Call("GET", f"/api/v1/attempts/{_seg(attempt_id)}", Attempt.from_json)


def get_resources(experiment: str, version: int | None = None) -> Call[ResourceVersion]:
    params = [] if version is None else [("version", str(version))]
    return Call("GET", f"/api/v1/resources/{_seg(experiment)}", ResourceVersion.from_json, params=params)


def list_versions(experiment: str) -> Call[list[ResourceVersion]]:
    return Call(
        "GET",
        f"/api/v1/resources/{_seg(experiment)}/versions",
        lambda body: [ResourceVersion.from_json(v) for v in body["versions"]],
    )


def publish(
    experiment: str,
    resources: Mapping[str, Resource],
    expected_version: int | None,
    metadata: Mapping[str, JSON] | None,
) -> Call[ResourceVersion]:
    body = {
        "resources": {name: r.to_json() for name, r in resources.items()},
        "expected_version": expected_version,
        "metadata": dict(metadata or {}),
    }
    return Call(
        "POST",
        f"/api/v1/resources/{_seg(experiment)}",
        ResourceVersion.from_json,
        body=body,
        retry=Retry.UNSENT_ONLY,
    )


def _attempt_params(attempt_id: str | None) -> list[tuple[str, str]]:
    return [] if attempt_id is None else [("attempt_id", attempt_id)]


def telemetry(
    rollout_id: str, attempt_id: str | None = None
) -> Call[tuple[list[SpanRecord], list[LogRecord]]]:
    return Call(
        "GET",
        f"/api/v1/rollouts/{_seg(rollout_id)}/spans",
        lambda body: (
            [SpanRecord.from_json(s) for s in body["spans"]],
            [LogRecord.from_json(lg) for lg in body["logs"]],
        ),
        params=_attempt_params(attempt_id),
    )


def trajectory(rollout_id: str, attempt_id: str | None, matching: RewardMatching) -> Call[Trajectory]:
    params = [*_attempt_params(attempt_id), ("matching", matching.value)]
    return Call("GET", f"/api/v1/rollouts/{_seg(rollout_id)}/trajectory", Trajectory.from_json, params=params)
