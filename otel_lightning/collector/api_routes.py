"""The REST API under ``/api/v1``: rollouts, claims, attempts, resources, and the long-polls.

Endpoints are module-level functions reading the store, settings and notifier from ``request.app.state``.
Store calls run in worker threads. Bodies and answers are the records' JSON forms (``to_json``); errors are
problem documents (collector/problems.py). The OpenAPI document (collector/openapi.py) describes every route.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from otel_lightning import __version__
from otel_lightning._validate import check, optional, require
from otel_lightning.collector.notify import Topic
from otel_lightning.collector.problems import problem_body
from otel_lightning.collector.request_io import call_store, read_object, store_of
from otel_lightning.exceptions import OtelLightningError, ValidationError
from otel_lightning.resources import decode_resources
from otel_lightning.store.base import Store
from otel_lightning.types import Attempt, Claim, Outcome, Rollout, RolloutFilter, RolloutStatus, Task

MAX_BATCH = 10_000
"""Most tasks one enqueue request may carry."""
_FILL_RECHECK_S = 0.2
"""How often a wait for complete traces looks again (spans arriving do not wake long-polls)."""
_RECHECK_GAP_PER_ROLLOUT_S = 0.00005
_RECHECK_MAX_GAP_S = 0.5
"""After a wake-up, a wait for N unfinished rollouts pauses min(N x 50 us, 0.5 s) before reading them again
(10 ms for 200 rollouts, 0.3 s for 6,000)."""


def _wait_s(request: Request, body: dict[str, Any], key: str, default: float) -> float:
    value = optional(body, key, float, "request", default)
    if value < 0:
        raise ValidationError(f"{key} must not be negative")
    return float(min(value, request.app.state.settings.max_wait_s))


# --- health ------------------------------------------------------------------------------------------------


async def health(request: Request) -> Response:
    ingest = request.app.state.ingest
    return JSONResponse({"status": "ok", "version": __version__, "ingest_pending": ingest.pending})


# --- rollouts ----------------------------------------------------------------------------------------------


async def enqueue(request: Request) -> Response:
    body = await read_object(request)
    raw = require(body, "tasks", list, "request")
    if not raw or len(raw) > MAX_BATCH:
        raise ValidationError(f"tasks must hold 1 to {MAX_BATCH} tasks")
    tasks = [Task.from_json(item) for item in raw]
    for task in tasks:
        _check_json(task.input, "task.input")
    rollouts = await call_store(request, store_of(request).enqueue, tasks)
    request.app.state.notifier.notify(Topic.QUEUE, Topic.ROLLOUTS)
    return JSONResponse({"rollouts": [r.to_json() for r in rollouts]})


def _check_json(value: Any, where: str) -> None:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise ValidationError(f"{where} is not JSON-serialisable: {exc}") from None


def _filter(request: Request) -> RolloutFilter:
    q = request.query_params
    try:
        statuses = tuple(RolloutStatus(s) for s in q.getlist("status"))
        version = q.get("resource_version")
        return RolloutFilter(
            experiment=q.get("experiment") or None,
            statuses=statuses,
            resource_version=int(version) if version else None,
            rollout_ids=tuple(q.getlist("rollout_id")),
            limit=min(int(q.get("limit", 1000)), MAX_BATCH),
            offset=max(int(q.get("offset", 0)), 0),
        )
    except ValueError as exc:
        raise ValidationError(f"bad query parameter: {exc}") from None


async def list_rollouts(request: Request) -> Response:
    rollouts = await call_store(request, store_of(request).list_rollouts, _filter(request))
    return JSONResponse({"rollouts": [r.to_json() for r in rollouts]})


async def get_rollout(request: Request) -> Response:
    rollout = await call_store(request, store_of(request).get_rollout, request.path_params["rollout_id"])
    return JSONResponse(rollout.to_json())


async def cancel_rollout(request: Request) -> Response:
    rollout = await call_store(request, store_of(request).cancel, request.path_params["rollout_id"])
    request.app.state.notifier.notify(Topic.ROLLOUTS)
    return JSONResponse(rollout.to_json())


async def list_attempts(request: Request) -> Response:
    attempts = await call_store(request, store_of(request).list_attempts, request.path_params["rollout_id"])
    return JSONResponse({"attempts": [a.to_json() for a in attempts]})


async def wait_rollouts(request: Request) -> Response:
    """Long-poll until every listed rollout is done or ``timeout_s`` passes; answers their current state, in
    the order asked (each id once).

    A rollout is done when it has ended; with ``complete: true``, when it has also either received every
    span its latest attempt reported or ended more than ``completeness_grace_s`` ago. ``waiting`` lists the
    ids that are not done (unknown ids included).
    """
    body = await read_object(request)
    ids = require(body, "rollout_ids", list, "request")
    if len(ids) > MAX_BATCH or not all(isinstance(i, str) for i in ids):
        raise ValidationError(f"rollout_ids must be a list of at most {MAX_BATCH} strings")
    complete = optional(body, "complete", bool, "request", False)
    deadline = time.monotonic() + _wait_s(request, body, "timeout_s", 30.0)
    notifier = request.app.state.notifier
    grace_ns = int(request.app.state.settings.completeness_grace_s * 1e9)
    final: dict[str, Rollout] = {}  # ended rollouts never change again: each is read once
    whole: set[str] = set()  # ended rollouts already known to be done, across rechecks
    while True:
        ticket = notifier.ticket(Topic.ROLLOUTS)
        unread = tuple(dict.fromkeys(i for i in ids if i not in final))
        current: dict[str, Rollout] = {}
        if unread:
            where = RolloutFilter(rollout_ids=unread, limit=len(unread))
            for rollout in await call_store(request, store_of(request).list_rollouts, where):
                current[rollout.rollout_id] = rollout
                if rollout.status.is_final:
                    final[rollout.rollout_id] = rollout
        waiting = {i for i in ids if i not in final}
        filling: list[str] = []
        if complete:
            ended = [r for r in final.values() if r.rollout_id not in whole]
            filling = await call_store(request, _fill_in, store_of(request), ended, grace_ns, whole)
        remaining = deadline - time.monotonic()
        if not (waiting or filling) or remaining <= 0:
            known = {**current, **final}
            return JSONResponse(
                {
                    "done": not (waiting or filling),
                    "rollouts": [known[i].to_json() for i in dict.fromkeys(ids) if i in known],
                    "waiting": sorted(waiting.union(filling)),
                }
            )
        # Spans arriving do not notify: while a trace fills in, look again soon.
        await notifier.wait(ticket, min(remaining, _FILL_RECHECK_S) if filling else remaining)
        # Every completion notifies: a wait for many rollouts reads them again at most this often, so that
        # its cost does not grow with the number of completions times the number of rollouts.
        gap = min(_RECHECK_MAX_GAP_S, len(waiting) * _RECHECK_GAP_PER_ROLLOUT_S, deadline - time.monotonic())
        if gap > 0:
            await asyncio.sleep(gap)


def _fill_in(store: Store, ended: list[Rollout], grace_ns: int, whole: set[str]) -> list[str]:
    """Add to ``whole`` the ended rollouts whose trace is complete or past its grace period; the others' ids.

    Runs in a worker thread. A trace is complete when the store holds as many spans of the rollout's latest
    attempt as its worker reported; an attempt that reported nothing (timed out, cancelled) waits the grace.
    """
    now = time.time_ns()
    filling: list[str] = []
    for rollout in ended:
        if rollout.attempt_id is None or now - rollout.updated_ns >= grace_ns:
            whole.add(rollout.rollout_id)
            continue
        expected = store.get_attempt(rollout.attempt_id).span_count
        if expected is not None and store.count_spans(rollout.attempt_id) >= expected:
            whole.add(rollout.rollout_id)
        else:
            filling.append(rollout.rollout_id)
    return filling


# --- claims and attempts -----------------------------------------------------------------------------------


MAX_CLAIM_BATCH = 256
"""Most claims one batch request may take."""


def _claim_up_to(
    store: Store, worker_id: str, request_id: str, experiments: tuple[str, ...], lease_s: float, count: int
) -> list[Claim]:
    """Up to ``count`` claims; the i-th uses request id ``{request_id}/{i}``, so a retried batch returns the
    same claims (runs in a worker thread)."""
    request_ids = [f"{request_id}/{i}" for i in range(count)] if count > 1 else [request_id]
    return store.claim_many(worker_id, request_ids, experiments, lease_s)


async def _claim_long_poll(request: Request, body: dict[str, Any], count: int) -> list[Claim]:
    worker_id = require(body, "worker_id", str, "claim")
    request_id = optional(body, "request_id", str, "claim") or uuid.uuid4().hex
    experiments = optional(body, "experiments", list, "claim", [])
    if not all(isinstance(e, str) for e in experiments):
        raise ValidationError("claim.experiments must be a list of strings")
    settings = request.app.state.settings
    lease_s = optional(body, "lease_s", float, "claim", settings.lease_s)
    if not 0 < lease_s <= 3600:
        raise ValidationError("claim.lease_s must be within (0, 3600]")
    deadline = time.monotonic() + _wait_s(request, body, "wait_s", 0.0)
    notifier = request.app.state.notifier
    store = store_of(request)
    while True:
        ticket = notifier.ticket(Topic.QUEUE)
        claims = await call_store(
            request, _claim_up_to, store, worker_id, request_id, tuple(experiments), lease_s, count
        )
        if claims:
            notifier.notify(Topic.ROLLOUTS)
            return claims
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return []
        await notifier.wait(ticket, remaining)


async def claim(request: Request) -> Response:
    """Long-poll for the next queued rollout; 200 with the claim, or 204 when nothing came in time."""
    claims = await _claim_long_poll(request, await read_object(request), 1)
    return JSONResponse(claims[0].to_json()) if claims else Response(status_code=204)


async def claim_batch(request: Request) -> Response:
    """Long-poll for up to ``max_claims`` queued rollouts; answers as many as were queued (an empty list
    when none came in time). A worker with N free slots asks once instead of N times."""
    body = await read_object(request)
    count = optional(body, "max_claims", int, "claim", 1)
    if not 1 <= count <= MAX_CLAIM_BATCH:
        raise ValidationError(f"claim.max_claims must be within [1, {MAX_CLAIM_BATCH}]")
    claims = await _claim_long_poll(request, body, count)
    return JSONResponse({"claims": [c.to_json() for c in claims]})


async def heartbeat(request: Request) -> Response:
    body = await read_object(request)
    lease_s = optional(body, "lease_s", float, "heartbeat", request.app.state.settings.lease_s)
    if not 0 < lease_s <= 3600:
        raise ValidationError("heartbeat.lease_s must be within (0, 3600]")
    attempt = await call_store(
        request, store_of(request).heartbeat, request.path_params["attempt_id"], lease_s
    )
    return JSONResponse(attempt.to_json())


async def complete(request: Request) -> Response:
    outcome = Outcome.from_json(await read_object(request))
    attempt = await call_store(
        request, store_of(request).complete, request.path_params["attempt_id"], outcome
    )
    request.app.state.notifier.notify(Topic.ROLLOUTS)
    return JSONResponse(attempt.to_json())


MAX_COMPLETE_BATCH = 256
"""Most completions one batch request may carry (client/calls.py ``MAX_COMPLETE_BATCH`` matches it)."""


def _completion(item: Any, i: int) -> tuple[str, Outcome]:
    where = f"completions[{i}]"
    check(item, dict, where)
    return require(item, "attempt_id", str, where), Outcome.from_json(require(item, "outcome", dict, where))


def _result(found: Attempt | OtelLightningError) -> dict[str, Any]:
    if isinstance(found, Attempt):
        return {"attempt": found.to_json()}
    return {"error": problem_body(found.http_status, found.code, str(found))}


async def complete_batch(request: Request) -> Response:
    """Report many attempts' outcomes at once; each is completed on its own, and ``results`` answers each
    in request order with ``attempt`` or ``error`` (a problem document), so one stale attempt does not fail
    the others. A malformed item fails the whole request (400) before any is completed."""
    body = await read_object(request)
    raw = require(body, "completions", list, "request")
    if not 1 <= len(raw) <= MAX_COMPLETE_BATCH:
        raise ValidationError(f"completions must hold 1 to {MAX_COMPLETE_BATCH} items")
    items = [_completion(item, i) for i, item in enumerate(raw)]
    results = await call_store(request, store_of(request).complete_many, items)
    request.app.state.notifier.notify(Topic.ROLLOUTS)
    return JSONResponse({"results": [_result(r) for r in results]})


async def get_attempt(request: Request) -> Response:
    attempt = await call_store(request, store_of(request).get_attempt, request.path_params["attempt_id"])
    return JSONResponse(attempt.to_json())


# --- resources ---------------------------------------------------------------------------------------------


async def get_resources(request: Request) -> Response:
    raw = request.query_params.get("version")
    try:
        version = int(raw) if raw not in (None, "", "latest") else None
    except ValueError:
        raise ValidationError("version must be an integer or 'latest'") from None
    found = await call_store(
        request, store_of(request).get_resources, request.path_params["experiment"], version
    )
    return JSONResponse(found.to_json())


async def list_resource_versions(request: Request) -> Response:
    versions = await call_store(request, store_of(request).list_versions, request.path_params["experiment"])
    return JSONResponse({"versions": [v.to_json() for v in versions]})


async def publish_resources(request: Request) -> Response:
    body = await read_object(request)
    resources = decode_resources(require(body, "resources", dict, "publish"))
    expected = optional(body, "expected_version", int, "publish")
    metadata = optional(body, "metadata", dict, "publish", {})
    _check_json(metadata, "publish.metadata")
    experiment = request.path_params["experiment"]
    check(experiment, str, "experiment")
    published = await call_store(
        request, store_of(request).publish, experiment, resources, expected, metadata
    )
    return JSONResponse(published.to_json(), status_code=201)


ROUTES = [
    Route("/api/v1/health", health, methods=["GET"]),
    Route("/api/v1/rollouts", enqueue, methods=["POST"]),
    Route("/api/v1/rollouts", list_rollouts, methods=["GET"]),
    Route("/api/v1/rollouts/wait", wait_rollouts, methods=["POST"]),
    Route("/api/v1/rollouts/{rollout_id}", get_rollout, methods=["GET"]),
    Route("/api/v1/rollouts/{rollout_id}/cancel", cancel_rollout, methods=["POST"]),
    Route("/api/v1/rollouts/{rollout_id}/attempts", list_attempts, methods=["GET"]),
    Route("/api/v1/claims", claim, methods=["POST"]),
    Route("/api/v1/claims/batch", claim_batch, methods=["POST"]),
    # Before the {attempt_id} routes, so "complete" is never read as an attempt id.
    Route("/api/v1/attempts/complete", complete_batch, methods=["POST"]),
    Route("/api/v1/attempts/{attempt_id}", get_attempt, methods=["GET"]),
    Route("/api/v1/attempts/{attempt_id}/heartbeat", heartbeat, methods=["POST"]),
    Route("/api/v1/attempts/{attempt_id}/complete", complete, methods=["POST"]),
    Route("/api/v1/resources/{experiment}", get_resources, methods=["GET"]),
    Route("/api/v1/resources/{experiment}", publish_resources, methods=["POST"]),
    Route("/api/v1/resources/{experiment}/versions", list_resource_versions, methods=["GET"]),
]
