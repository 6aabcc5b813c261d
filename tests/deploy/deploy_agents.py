"""The agent the deployment tests' worker processes run: the closed-loop ``classify`` agent, after a pause
the task asks for, so that rollouts are still running when a test stops the server."""

from __future__ import annotations

import time
from typing import Any

from otel_lightning import ResourceVersion
from tests.agents.classify import classify


def slow_classify(task: dict[str, Any], resources: ResourceVersion) -> float:
    """Sleep ``task["delay_s"]`` seconds (inside the attempt's root span), then classify."""
    time.sleep(float(task.get("delay_s", 0.0)))
    return classify(task, resources)
