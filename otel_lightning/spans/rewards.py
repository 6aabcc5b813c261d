"""Rewards in a trace: ``emit_reward`` spans, ``gen_ai.evaluation.result`` events, the final reward.

Read by :mod:`.trajectory`. A reward span is ``otel_lightning.reward`` with ``otel_lightning.reward.value``
(and optionally ``otel_lightning.reward.name``); an evaluation is the standard GenAI event, as a span event
or a log record, with ``gen_ai.evaluation.score.value`` (and ``gen_ai.evaluation.name``). Values that are
not finite numbers are ignored. Rewards without a name are named ``reward``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from otel_lightning import semconv
from otel_lightning.resources import JSON
from otel_lightning.spans.llm_messages import log_event_name
from otel_lightning.spans.records import SpanRecord
from otel_lightning.spans.tree import SpanTree
from otel_lightning.types import Attempt

logger = logging.getLogger(__name__)

DEFAULT_REWARD_NAME = "reward"


class RewardSource(StrEnum):
    """Where a reward was read from."""

    EMIT = "emit_reward"
    """An ``otel_lightning.reward`` span."""
    EVALUATION = "gen_ai.evaluation.result"
    """A standard GenAI evaluation event (span event or log record)."""
    FINAL = "final"
    """The attempt's reward, or the rollout span's reward attribute."""


@dataclass(frozen=True, slots=True)
class Reward:
    """One reward observed in the trace."""

    name: str
    value: float
    time_ns: int
    span_id: str | None
    """The reward span, the span carrying the evaluation event, or the rollout span (final)."""
    source: RewardSource

    def to_json(self) -> dict[str, JSON]:
        return {
            "name": self.name,
            "value": self.value,
            "time_ns": self.time_ns,
            "span_id": self.span_id,
            "source": self.source.value,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Reward:
        return cls(
            data["name"], data["value"], data["time_ns"], data.get("span_id"), RewardSource(data["source"])
        )


def find_rewards(tree: SpanTree) -> list[Reward]:
    """Rewards from reward spans, evaluation span events and evaluation log records, by time."""
    rewards = []
    for node in tree.walk():
        span = node.span
        if span.name == semconv.REWARD_SPAN:
            value = _finite(span.attributes.get(semconv.REWARD_VALUE))
            if value is not None:
                name = span.attributes.get(semconv.REWARD_NAME)
                rewards.append(Reward(_name(name), value, span.start_ns, span.span_id, RewardSource.EMIT))
        for event in span.events:
            if event.name == semconv.EVALUATION_EVENT:
                reward = _evaluation(event.attributes, event.time_ns, span.span_id)
                if reward is not None:
                    rewards.append(reward)
    for log in tree.logs:
        if log_event_name(log) == semconv.EVALUATION_EVENT:
            reward = _evaluation(log.attributes, log.time_ns or log.observed_ns, log.span_id)
            if reward is not None:
                rewards.append(reward)
    rewards.sort(key=lambda r: r.time_ns)
    return rewards


def _evaluation(attributes: Mapping[str, Any], time_ns: int, span_id: str | None) -> Reward | None:
    value = _finite(attributes.get(semconv.EVALUATION_SCORE_VALUE))
    if value is None:
        return None
    return Reward(
        _name(attributes.get(semconv.EVALUATION_NAME)), value, time_ns, span_id, RewardSource.EVALUATION
    )


def final_reward(
    attempt: Attempt | None, root: SpanRecord | None, rewards: list[Reward]
) -> tuple[float | None, Reward | None]:
    """The final reward, and the :class:`Reward` to record for it when it is not already a step reward."""
    if attempt is not None and attempt.reward is not None:
        time_ns = attempt.ended_ns or (root.end_ns if root else attempt.started_ns)
        value = float(attempt.reward)
        return value, Reward(
            DEFAULT_REWARD_NAME, value, time_ns, root.span_id if root else None, RewardSource.FINAL
        )
    if root is not None:
        from_root = _finite(root.attributes.get(semconv.ROLLOUT_FINAL_REWARD))
        if from_root is not None:
            return from_root, Reward(
                DEFAULT_REWARD_NAME, from_root, root.end_ns, root.span_id, RewardSource.FINAL
            )
    named = [r for r in rewards if r.name == DEFAULT_REWARD_NAME]
    return (named[-1].value if named else None), None


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        logger.debug("reward value %r is not a number", value)
        return None
    return number if math.isfinite(number) else None


def _name(value: Any) -> str:
    return value if isinstance(value, str) and value else DEFAULT_REWARD_NAME
