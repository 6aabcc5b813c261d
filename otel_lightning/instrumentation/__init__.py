"""Client-side instrumentation: ``instrument()``, rollout context, rewards.

Needs the ``[client]`` extra (OpenTelemetry SDK, OTLP/HTTP exporter, Traceloop's openai instrumentation).
"""

try:
    import opentelemetry.sdk.trace  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "otel_lightning.instrumentation needs the OpenTelemetry SDK: pip install 'otel-lightning[client]'"
    ) from exc

from otel_lightning.instrumentation.context import (
    RolloutContext,
    RolloutSpanProcessor,
    current_rollout,
    rollout_scope,
)
from otel_lightning.instrumentation.emit import emit_event, emit_reward
from otel_lightning.instrumentation.setup import Instrumentation, instrument

__all__ = [
    "Instrumentation",
    "RolloutContext",
    "RolloutSpanProcessor",
    "current_rollout",
    "emit_event",
    "emit_reward",
    "instrument",
    "rollout_scope",
]
