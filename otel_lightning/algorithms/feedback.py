"""What algorithms learn from rollouts: their trajectories, and text views of tasks and calls."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from otel_lightning.algorithms.evaluate import Evaluation
from otel_lightning.exceptions import OtelLightningError
from otel_lightning.resources import JSON
from otel_lightning.spans.llm import LLMCall
from otel_lightning.spans.trajectory import Trajectory
from otel_lightning.types import Rollout

if TYPE_CHECKING:
    from otel_lightning.client.lightning import Lightning

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Example:
    """One evaluated item: the task, its rollout, its reward (0 for a failure), and its trajectory."""

    item: int
    """Index in the split."""
    task_input: JSON
    rollout: Rollout
    reward: float
    failed: bool
    """The rollout failed or has no reward."""
    trajectory: Trajectory | None
    """``None`` when the server has no trace of it."""

    @property
    def last_call(self) -> LLMCall | None:
        """The trajectory's last LLM call (the final answer, for a one-shot agent)."""
        if self.trajectory is None or not self.trajectory.steps:
            return None
        return self.trajectory.steps[-1].llm_call


def examples(
    lightning: Lightning,
    evaluation: Evaluation,
    dataset: Sequence[JSON],
    *,
    only: Sequence[int] | None = None,
) -> list[Example]:
    """The evaluation's items with their trajectories (``only``: just these item indexes)."""
    wanted = set(evaluation.items if only is None else only)
    found = []
    for item, rollout, reward in zip(evaluation.items, evaluation.rollouts, evaluation.rewards, strict=True):
        if item not in wanted:
            continue
        found.append(
            Example(
                item=item,
                task_input=dataset[item],
                rollout=rollout,
                reward=0.0 if reward is None else reward,
                failed=reward is None,
                trajectory=read_trajectory(lightning, rollout),
            )
        )
    return found


def read_trajectory(lightning: Lightning, rollout: Rollout) -> Trajectory | None:
    """A rollout's trajectory, or ``None`` (logged) when the server cannot rebuild it."""
    if rollout.attempt_id is None:
        return None
    try:
        return lightning.trajectory(rollout.rollout_id)
    except OtelLightningError as exc:
        logger.info("no trajectory for rollout %s: %s", rollout.rollout_id, exc)
        return None


def input_text(task_input: JSON, field: str | None = "text") -> str:
    """A task input as text: its ``field`` when it is a string there, the string itself, or its JSON."""
    if isinstance(task_input, str):
        return task_input
    if field is not None and isinstance(task_input, dict) and isinstance(task_input.get(field), str):
        return str(task_input[field])
    return json.dumps(task_input, sort_keys=True, ensure_ascii=False)


def prompt_text(call: LLMCall) -> str:
    """The prompt an LLM call was sent, as ``role: content`` lines."""
    return "\n".join(f"{m.role}: {m.content}" for m in call.input_messages)


def escape_braces(text: str) -> str:
    """Text made literal inside a Python-format prompt template (``{`` -> ``{{``)."""
    return text.replace("{", "{{").replace("}", "}}")
