"""Agents for the reliability tests, run by real `otel-lightning worker` processes.

Task inputs say what to do: ``spans`` child spans, ``sleep_s`` seconds spread over them, and for the
cancellation tests a ``marker`` file that the agent writes when it is cancelled.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from opentelemetry import trace

from otel_lightning import ResourceVersion

_tracer = trace.get_tracer("tests.reliability")


async def spans_agent(task: dict[str, Any], resources: ResourceVersion) -> float:
    """Make ``task["spans"]`` child spans over ``task["sleep_s"]`` seconds; reward 1.0.

    With the worker's rollout span, an attempt that completes reports ``spans + 1`` spans.
    """
    count = int(task.get("spans", 3))
    pause = float(task.get("sleep_s", 0.0)) / max(count, 1)
    for i in range(count):
        with _tracer.start_as_current_span(f"step {i}") as span:
            span.set_attribute("step.index", i)
            if pause:
                await asyncio.sleep(pause)
    return 1.0


async def slow_agent(task: dict[str, Any], resources: ResourceVersion) -> float:
    """Sleep ``task["sleep_s"]`` seconds; if cancelled, write ``task["marker"]`` and stop."""
    try:
        await asyncio.sleep(float(task["sleep_s"]))
    except asyncio.CancelledError:
        Path(task["marker"]).write_text("cancelled")
        raise
    return 1.0
