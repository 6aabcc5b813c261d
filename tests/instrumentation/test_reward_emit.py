"""emit_reward / emit_event never raise; emit_event lands on the current span.

That a reward arrives as a stamped span at the server is checked end to end in test_instrument_setup.py
(emit_reward goes through the global provider, which these in-process tests leave alone).
"""

from __future__ import annotations

import logging
import math
from typing import Any

import pytest

from otel_lightning.instrumentation import RolloutContext, emit_event, emit_reward, rollout_scope


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, "0.5", None, object(), [1.0]])
def test_emit_reward_ignores_what_is_not_a_finite_number(
    value: Any, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="otel_lightning"):
        emit_reward(value)
    assert "not a finite number" in caplog.text


def test_emit_reward_never_raises_on_odd_input() -> None:
    with rollout_scope(RolloutContext("ro", "at")):
        emit_reward(1.0, attributes={"bad": object(), "nested": {"a": 1}})  # type: ignore[dict-item]
        emit_reward(True, name="")
        emit_reward(3, name="count", attributes=None)
    emit_reward(0.0)  # outside any rollout: recorded, with a debug message


def test_emit_event_adds_an_event_to_the_current_span(tracing: Any) -> None:
    with tracing.tracer().start_as_current_span("step"):
        emit_event("tool.result", {"ok": True, "tool": "search"})
    emit_event("no-span")  # nothing recording: dropped without error
    (span,) = tracing.exporter.get_finished_spans()
    (event,) = span.events
    assert event.name == "tool.result"
    assert dict(event.attributes) == {"ok": True, "tool": "search"}
