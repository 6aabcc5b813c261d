"""otel-lightning: an OpenTelemetry-native tracing and optimization backend for AI agents.

The public API. Names are imported lazily, so ``import otel_lightning`` stays light and the server side does
not pull in the client's dependencies (and the other way round).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "Attempt": "otel_lightning.types",
    "AttemptStatus": "otel_lightning.types",
    "LLMEndpoint": "otel_lightning.resources",
    "Lightning": "otel_lightning.client.lightning",
    "ModelWeights": "otel_lightning.resources",
    "PromptTemplate": "otel_lightning.resources",
    "ResourceVersion": "otel_lightning.resources",
    "Rollout": "otel_lightning.types",
    "RolloutStatus": "otel_lightning.types",
    "SamplingParams": "otel_lightning.resources",
    "SpanTree": "otel_lightning.spans.tree",
    "Task": "otel_lightning.types",
    "Trajectory": "otel_lightning.spans.trajectory",
    "Worker": "otel_lightning.client.worker",
    "WorkflowConfig": "otel_lightning.resources",
    "connect": "otel_lightning.client.lightning",
    "emit_reward": "otel_lightning.instrumentation.emit",
    "instrument": "otel_lightning.instrumentation.setup",
    "serve": "otel_lightning.client.lightning",
}

__all__ = [
    "Attempt",
    "AttemptStatus",
    "LLMEndpoint",
    "Lightning",
    "ModelWeights",
    "PromptTemplate",
    "ResourceVersion",
    "Rollout",
    "RolloutStatus",
    "SamplingParams",
    "SpanTree",
    "Task",
    "Trajectory",
    "Worker",
    "WorkflowConfig",
    "connect",
    "emit_reward",
    "instrument",
    "serve",
]

if TYPE_CHECKING:
    from otel_lightning.client.lightning import Lightning, connect, serve
    from otel_lightning.client.worker import Worker
    from otel_lightning.instrumentation.emit import emit_reward
    from otel_lightning.instrumentation.setup import instrument
    from otel_lightning.resources import (
        LLMEndpoint,
        ModelWeights,
        PromptTemplate,
        ResourceVersion,
        SamplingParams,
        WorkflowConfig,
    )
    from otel_lightning.spans.trajectory import Trajectory
    from otel_lightning.spans.tree import SpanTree
    from otel_lightning.types import Attempt, AttemptStatus, Rollout, RolloutStatus, Task


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'otel_lightning' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
