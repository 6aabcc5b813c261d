"""Rollout identity: a context that every span started inside it is stamped with.

:func:`rollout_scope` sets the current :class:`RolloutContext` in two places at once:

- a :class:`contextvars.ContextVar`, the fast path inside this process, which also carries the resource
  version;
- the OpenTelemetry context, as W3C baggage (``semconv.BAGGAGE_KEYS``), so that an instrumented outgoing HTTP
  call carries the rollout to a tool server or sub-process that also called ``instrument()``.

:class:`RolloutSpanProcessor` reads it back when a span starts and writes the ids as span attributes, and
counts the spans that end per attempt so that the worker can tell the server how many to expect.

Both stores are context variables, so each asyncio task (which copies the context when it is created) and
each thread sees its own rollout: many rollouts can run concurrently in one process. Threads started by a
``ThreadPoolExecutor`` do not inherit the caller's context; submit ``contextvars.copy_context().run`` (or
open a ``rollout_scope`` in the thread) to carry it over.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from opentelemetry import baggage
from opentelemetry import context as otel_context
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from otel_lightning import semconv

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RolloutContext:
    """Which rollout and attempt the running code belongs to."""

    rollout_id: str
    """Id of the rollout."""
    attempt_id: str
    """Id of the attempt (one try at the rollout)."""
    experiment: str = "default"
    """Experiment name of the rollout."""
    resource_version: int | None = None
    """Resource version the attempt runs with; known in-process only (it is not put in baggage)."""


_CURRENT: ContextVar[RolloutContext | None] = ContextVar("otel_lightning_rollout", default=None)


@contextmanager
def rollout_scope(ctx: RolloutContext) -> Iterator[None]:
    """Make ``ctx`` the current rollout for the code in the ``with`` block.

    Sets the context variable and attaches an OpenTelemetry context whose baggage carries the rollout id,
    attempt id and experiment; both are restored on exit. Use a plain ``with`` inside ``async`` code too:
    the block's context belongs to the running task, and tasks created inside it inherit the rollout. Do not
    keep a scope open across the ``yield`` of an async generator, whose resumptions may run in another
    context.
    """
    otel_ctx = otel_context.get_current()
    otel_ctx = baggage.set_baggage(semconv.ROLLOUT_ID, ctx.rollout_id, otel_ctx)
    otel_ctx = baggage.set_baggage(semconv.ATTEMPT_ID, ctx.attempt_id, otel_ctx)
    otel_ctx = baggage.set_baggage(semconv.EXPERIMENT, ctx.experiment, otel_ctx)
    var_token = _CURRENT.set(ctx)
    otel_token = otel_context.attach(otel_ctx)
    try:
        yield
    finally:
        # detach logs (never raises) when the token belongs to another context; reset raises ValueError.
        otel_context.detach(otel_token)
        try:
            _CURRENT.reset(var_token)
        except ValueError:
            logger.warning("rollout_scope for attempt %s exited in another context", ctx.attempt_id)
            _CURRENT.set(None)


def current_rollout(context: Context | None = None) -> RolloutContext | None:
    """The rollout the code runs in, or ``None`` outside any rollout.

    Args:
        context: an OpenTelemetry context to read (for example a span's parent context, or one extracted
            from incoming request headers); the current one if omitted.

    Returns:
        Without ``context``: the rollout set by :func:`rollout_scope` in this execution context if any,
        else the one rebuilt from the current W3C baggage. With ``context``: the rollout its baggage names
        (with the in-process resource version when the attempt is the same), falling back to the context
        variable when its baggage names none.
    """
    scoped = _CURRENT.get()
    if context is None and scoped is not None:
        return scoped
    from_baggage = _from_baggage(context)
    if from_baggage is None:
        return scoped
    if scoped is not None and scoped.attempt_id == from_baggage.attempt_id:
        return scoped
    return from_baggage


def _from_baggage(context: Context | None) -> RolloutContext | None:
    entries = baggage.get_all(context)
    rollout_id = entries.get(semconv.ROLLOUT_ID)
    attempt_id = entries.get(semconv.ATTEMPT_ID)
    if not isinstance(rollout_id, str) or not isinstance(attempt_id, str) or not rollout_id or not attempt_id:
        return None
    experiment = entries.get(semconv.EXPERIMENT)
    return RolloutContext(
        rollout_id=rollout_id,
        attempt_id=attempt_id,
        experiment=experiment if isinstance(experiment, str) and experiment else "default",
    )


class RolloutSpanProcessor(SpanProcessor):
    """Stamps rollout identity onto every span started in a rollout, and counts ended spans per attempt.

    Add it to the TracerProvider before the exporting processor. Attributes already set on a span (by the
    caller, or inherited from another process's baggage) are left as they are. Never raises into the code
    that starts or ends a span.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ended: dict[str, int] = {}

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        try:
            rollout = current_rollout(parent_context)
            if rollout is None:
                return
            existing = span.attributes or {}
            stamps: dict[str, str | int] = {}
            if semconv.ROLLOUT_ID not in existing:
                stamps[semconv.ROLLOUT_ID] = rollout.rollout_id
            if semconv.ATTEMPT_ID not in existing:
                stamps[semconv.ATTEMPT_ID] = rollout.attempt_id
            if semconv.EXPERIMENT not in existing:
                stamps[semconv.EXPERIMENT] = rollout.experiment
            if rollout.resource_version is not None and semconv.RESOURCE_VERSION not in existing:
                stamps[semconv.RESOURCE_VERSION] = rollout.resource_version
            if stamps:
                span.set_attributes(stamps)  # one lock round trip instead of four
        except Exception:  # the agent must never see our failure
            logger.exception("could not stamp the rollout onto span %r", getattr(span, "name", None))

    def on_end(self, span: ReadableSpan) -> None:
        try:
            attempt_id = (span.attributes or {}).get(semconv.ATTEMPT_ID)
            if not isinstance(attempt_id, str):
                return
            with self._lock:
                self._ended[attempt_id] = self._ended.get(attempt_id, 0) + 1
        except Exception:
            logger.exception("could not count ended span %r", getattr(span, "name", None))

    def ended_spans(self, attempt_id: str) -> int:
        """How many spans of this attempt have ended so far (in this process)."""
        with self._lock:
            return self._ended.get(attempt_id, 0)

    def forget(self, attempt_id: str) -> int:
        """Drop the attempt's count and return it; the worker calls this once the attempt is complete."""
        with self._lock:
            return self._ended.pop(attempt_id, 0)

    def shutdown(self) -> None:
        """Nothing to release."""

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Nothing is buffered: always ``True``."""
        return True
