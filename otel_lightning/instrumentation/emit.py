"""Record rewards and events from agent code: ``emit_reward(1.0)``.

The reward is a short span named ``semconv.REWARD_SPAN`` started in the current context, so the rollout
processor stamps it with the rollout it belongs to, and its parent is the span that was current (the step it
rewards). ``spans/trajectory.py`` reads it back. Both functions go through the global tracer, work (as
no-ops) before ``instrument()`` is called, and never raise into the agent.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from numbers import Real
from typing import Any

from opentelemetry import trace

from otel_lightning import semconv
from otel_lightning.instrumentation.context import current_rollout

logger = logging.getLogger(__name__)

DEFAULT_REWARD_NAME = "reward"
"""The reward name recorded when none is given."""

# A ProxyTracer until a global provider is set, after which it delegates to that provider's tracer.
_tracer = trace.get_tracer("otel_lightning")


def emit_reward(
    value: float, name: str | None = None, *, attributes: Mapping[str, Any] | None = None
) -> None:
    """Record a reward for the current rollout as a ``semconv.REWARD_SPAN`` span.

    Args:
        value: the reward; a finite real number (a bool counts as 0.0 or 1.0). Anything else is logged
                and ignored.
        name: the reward's name when an agent records several (default ``"reward"``).
        attributes: extra span attributes (OpenTelemetry attribute values); our keys take precedence.
    """
    try:
        if not isinstance(value, Real) or not math.isfinite(float(value)):
            logger.warning("ignoring reward %r: not a finite number", value)
            return
        if current_rollout() is None:
            logger.debug("reward %r recorded outside any rollout", value)
        span_attributes: dict[str, Any] = dict(attributes or {})
        span_attributes[semconv.REWARD_VALUE] = float(value)
        span_attributes[semconv.REWARD_NAME] = name or DEFAULT_REWARD_NAME
        _tracer.start_span(semconv.REWARD_SPAN, attributes=span_attributes).end()
    except Exception:  # the agent must never see our failure
        logger.exception("could not record reward %r", value)


def emit_event(name: str, attributes: Mapping[str, Any] | None = None) -> None:
    """Add an event to the current span (a no-op when no span is recording).

    Args:
        name: the event name.
        attributes: event attributes (OpenTelemetry attribute values).
    """
    try:
        span = trace.get_current_span()
        if not span.is_recording():
            logger.debug("event %r dropped: no recording span", name)
            return
        span.add_event(name, attributes=dict(attributes or {}))
    except Exception:
        logger.exception("could not record event %r", name)
