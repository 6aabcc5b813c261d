"""The agent of the replica tests, run by real ``otel-lightning worker`` processes: no LLM, only spans."""

from __future__ import annotations

import asyncio
from typing import Any

from opentelemetry import trace

from otel_lightning import ResourceVersion

_tracer = trace.get_tracer("tests.replicas")


async def spans_agent(task: dict[str, Any], resources: ResourceVersion) -> float:
    """Make ``task["spans"]`` child spans, ``task["sleep_s"]`` seconds apart; reward 1.0.

    With the worker's rollout span, a completed attempt reports ``spans + 1`` spans.
    """
    for i in range(int(task["spans"])):
        with _tracer.start_as_current_span(f"step {i}") as span:
            span.set_attribute("step.index", i)
            await asyncio.sleep(float(task.get("sleep_s", 0.0)))
    return 1.0
