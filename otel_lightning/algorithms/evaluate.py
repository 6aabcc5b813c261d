"""Evaluating resource versions on a dataset: pinned rollouts with deterministic ids, scored honestly.

A rollout's id is ``{experiment}.{run}:{stage}:{candidate}:{item}`` (:func:`rollout_id`): the same run asks
for the same rollout whenever it evaluates the same candidate on the same item of the same split. Enqueueing
is idempotent by rollout id, so a resumed run gets the rollouts that already exist instead of running them
again, and a larger evaluation of a candidate (successive halving) reuses the smaller one's rollouts.
Every rollout is pinned to the candidate's version, so workers run exactly that candidate.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from otel_lightning.algorithms.base import check_callback
from otel_lightning.algorithms.score import Score
from otel_lightning.exceptions import ValidationError
from otel_lightning.resources import JSON
from otel_lightning.types import Rollout, RolloutStatus, Task

if TYPE_CHECKING:
    from otel_lightning.client.lightning import Lightning

logger = logging.getLogger(__name__)

_MAX_PREFIX = 120


class Metric(Protocol):
    """Turns a finished rollout into a reward; ``None`` scores it as a failure (0)."""

    def __call__(self, rollout: Rollout, /) -> float | None: ...


def rollout_reward(rollout: Rollout) -> float | None:
    """The default metric: the reward of a succeeded rollout; ``None`` (a failure) otherwise."""
    if rollout.status is not RolloutStatus.SUCCEEDED:
        return None
    return rollout.reward


def run_prefix(experiment: str, run: str) -> str:
    """The prefix of every rollout id of a run (a long experiment name is shortened to a hash)."""
    prefix = f"{experiment}.{run}"
    if len(prefix) > _MAX_PREFIX:
        prefix = f"{hashlib.sha256(experiment.encode()).hexdigest()[:16]}.{run}"
    return prefix


def rollout_id(experiment: str, run: str, stage: str, candidate: str, item: int) -> str:
    """The deterministic id of one evaluation rollout."""
    for value, what in ((stage, "stage"), (candidate, "candidate")):
        if not value or ":" in value:
            raise ValidationError(f"{what} {value!r} must be non-empty and hold no ':'")
    return f"{run_prefix(experiment, run)}:{stage}:{candidate}:{item}"


@dataclass(frozen=True, slots=True)
class Evaluation:
    """One candidate's rollouts on some items of a split, in item order."""

    candidate: str
    version: int
    items: tuple[int, ...]
    """Indexes into the split."""
    rollouts: tuple[Rollout, ...]
    """The final rollout records, one per item."""
    rewards: tuple[float | None, ...]
    """Per item; ``None`` for a failed rollout."""
    score: Score

    def reward_of(self, item: int) -> float:
        """The reward on one item, 0 for a failure."""
        value = self.rewards[self.items.index(item)]
        return 0.0 if value is None else value


def evaluate_many(
    lightning: Lightning,
    versions: Mapping[str, int],
    dataset: Sequence[JSON],
    *,
    run: str,
    stage: str,
    items: Sequence[int] | None = None,
    experiment: str | None = None,
    max_attempts: int = 2,
    rollout_timeout_s: float | None = None,
    wait_timeout_s: float | None = None,
    metric: Metric | None = None,
) -> dict[str, Evaluation]:
    """Evaluate several candidates on the same items, all rollouts enqueued at once (paired, in parallel).

    Args:
        lightning: the server.
        versions: candidate id -> the resource version it runs with.
        dataset: the split's task inputs.
        run: the run's name (part of every rollout id).
        stage: the split's name (part of every rollout id), e.g. ``val``.
        items: which indexes of ``dataset`` to run (default: all).
        experiment: the experiment (default: the handle's).
        max_attempts: attempts per rollout.
        rollout_timeout_s: limit of one attempt.
        wait_timeout_s: raise TimeoutError if the rollouts have not all ended by then.
        metric: turns a final rollout into a reward (default :func:`rollout_reward`).

    Returns:
        candidate id -> its :class:`Evaluation`.
    """
    experiment = experiment or lightning.experiment
    chosen = tuple(range(len(dataset))) if items is None else tuple(items)
    if not chosen:
        raise ValidationError("an evaluation needs at least one item")
    if any(not 0 <= i < len(dataset) for i in chosen):
        raise ValidationError(f"items must index the {len(dataset)}-item dataset")
    if metric is not None:
        check_callback(metric, "metric", 1)
    score_of = metric or rollout_reward
    tasks = [
        Task(
            input=dataset[i],
            rollout_id=rollout_id(experiment, run, stage, candidate, i),
            experiment=experiment,
            resource_version=version,
            max_attempts=max_attempts,
            timeout_s=rollout_timeout_s,
            metadata={"run": run, "stage": stage, "candidate": candidate},
        )
        for candidate, version in versions.items()
        for i in chosen
    ]
    enqueued = lightning.enqueue(tasks)
    for task, rollout in zip(tasks, enqueued, strict=True):
        if rollout.resource_version not in (None, task.resource_version):
            # The id is taken by a rollout of another version: the run's state and the server disagree.
            raise ValidationError(
                f"rollout {rollout.rollout_id} exists with version {rollout.resource_version}, "
                f"not {task.resource_version}; was the run's state deleted?"
            )
    final = lightning.wait(enqueued, wait_timeout_s)
    result: dict[str, Evaluation] = {}
    for k, (candidate, version) in enumerate(versions.items()):
        rollouts = tuple(final[k * len(chosen) : (k + 1) * len(chosen)])
        rewards = tuple(score_of(r) for r in rollouts)
        result[candidate] = Evaluation(
            candidate, version, chosen, rollouts, rewards, Score.from_rewards(rewards)
        )
        failed = sum(1 for r in rewards if r is None)
        if failed:
            logger.info("candidate %s: %d of %d %s rollouts failed", candidate, failed, len(chosen), stage)
    return result


def evaluate(
    lightning: Lightning,
    version: int,
    dataset: Sequence[JSON],
    *,
    run: str,
    stage: str,
    candidate: str = "eval",
    items: Sequence[int] | None = None,
    experiment: str | None = None,
    max_attempts: int = 2,
    rollout_timeout_s: float | None = None,
    wait_timeout_s: float | None = None,
    metric: Metric | None = None,
) -> Score:
    """Run ``dataset`` with rollouts pinned to ``version`` (deterministic ids) and score them.

    Evaluating again with the same ``run``, ``stage`` and ``candidate`` reuses the rollouts: to measure a
    version afresh, use another ``run`` name. See :func:`evaluate_many` for the arguments.
    """
    evaluations = evaluate_many(
        lightning,
        {candidate: version},
        dataset,
        run=run,
        stage=stage,
        items=items,
        experiment=experiment,
        max_attempts=max_attempts,
        rollout_timeout_s=rollout_timeout_s,
        wait_timeout_s=wait_timeout_s,
        metric=metric,
    )
    return evaluations[candidate].score
