"""Read views of one rollout's telemetry: its spans, its span tree and its trajectory.

Each view reads one attempt: the one named by the ``attempt_id`` query parameter, else the rollout's latest
attempt (the one that decided its status), so a view never mixes the spans of several attempts.
``attempt_id=all`` on the spans view returns every attempt's spans.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from otel_lightning.collector.request_io import call_store, store_of
from otel_lightning.exceptions import NotFoundError, ValidationError
from otel_lightning.spans.records import LogRecord, SpanRecord
from otel_lightning.spans.trajectory import RewardMatching, build_trajectory
from otel_lightning.spans.tree import SpanTree
from otel_lightning.store.base import SpanQuery, Store
from otel_lightning.types import Attempt


def _attempt_and_telemetry(
    store: Store, rollout_id: str, attempt_id: str | None
) -> tuple[Attempt | None, list[SpanRecord], list[LogRecord]]:
    """The chosen attempt, its spans, and the log records of its traces (runs in a worker thread)."""
    rollout = store.get_rollout(rollout_id)
    if attempt_id == "all":
        spans = store.get_spans(SpanQuery(rollout_id=rollout_id))
        return None, spans, _logs_of(store, spans)
    chosen = attempt_id or rollout.attempt_id
    if chosen is None:
        return None, [], []
    attempt = store.get_attempt(chosen)
    if attempt.rollout_id != rollout_id:
        raise NotFoundError(f"attempt {chosen} does not belong to rollout {rollout_id}")
    spans = store.get_spans(SpanQuery(attempt_id=chosen))
    return attempt, spans, _logs_of(store, spans)


def _logs_of(store: Store, spans: list[SpanRecord]) -> list[LogRecord]:
    # Log records (GenAI events) carry trace and span ids, not always our rollout attributes: join by trace.
    logs: list[LogRecord] = []
    for trace_id in sorted({s.trace_id for s in spans}):
        logs.extend(store.get_logs(SpanQuery(trace_id=trace_id)))
    return logs


async def _load(request: Request) -> tuple[Attempt | None, list[SpanRecord], list[LogRecord]]:
    attempt_id = request.query_params.get("attempt_id") or None
    return await call_store(
        request, _attempt_and_telemetry, store_of(request), request.path_params["rollout_id"], attempt_id
    )


async def rollout_spans(request: Request) -> Response:
    attempt, spans, logs = await _load(request)
    body: dict[str, Any] = {
        "attempt_id": attempt.attempt_id if attempt else None,
        "spans": [s.to_json() for s in spans],
        "logs": [lg.to_json() for lg in logs],
    }
    return JSONResponse(body)


async def rollout_tree(request: Request) -> Response:
    attempt, spans, logs = await _load(request)
    tree = SpanTree.from_spans(spans, logs)
    return JSONResponse(
        {
            "attempt_id": attempt.attempt_id if attempt else None,
            "roots": tree.to_json(),
            "text": tree.render(),
        }
    )


async def rollout_trajectory(request: Request) -> Response:
    raw = request.query_params.get("matching") or RewardMatching.FINAL_TO_ALL.value
    try:
        matching = RewardMatching(raw)
    except ValueError:
        raise ValidationError(f"matching must be one of {[m.value for m in RewardMatching]}") from None
    attempt, spans, logs = await _load(request)
    trajectory = build_trajectory(spans, logs, attempt=attempt, matching=matching)
    return JSONResponse(trajectory.to_json())


ROUTES = [
    Route("/api/v1/rollouts/{rollout_id}/spans", rollout_spans, methods=["GET"]),
    Route("/api/v1/rollouts/{rollout_id}/tree", rollout_tree, methods=["GET"]),
    Route("/api/v1/rollouts/{rollout_id}/trajectory", rollout_trajectory, methods=["GET"]),
]
