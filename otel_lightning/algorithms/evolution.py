"""Evolutionary search (GEPA-style) over any resource, with a user-given mutation operator.

Each generation draws parents from the per-item Pareto front (:mod:`~otel_lightning.algorithms.pareto`),
weighted by how many validation items each is best on; runs them on a shared train minibatch for feedback;
asks ``mutate(resource, feedback, rng)`` for a child of each (``feedback``: the minibatch's trajectories,
with their rewards); publishes the children and evaluates them all at once on the same validation items as
every other candidate. The resource may be anything: a prompt, sampling parameters, or a free-form
:class:`~otel_lightning.resources.WorkflowConfig` such as ``{"steps": [...], "retries": 2}``.

For an exact resume, ``mutate`` should depend only on its arguments (draw randomness from ``rng``); a child
the run has already published is never asked for again.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from otel_lightning.algorithms.base import (
    Algorithm,
    AlgorithmResult,
    callable_name,
    check_callback,
    check_dataset,
    dataset_digest,
)
from otel_lightning.algorithms.evaluate import Evaluation, Metric
from otel_lightning.algorithms.feedback import examples
from otel_lightning.algorithms.pareto import pareto_front, sample_parent
from otel_lightning.algorithms.run_state import SEED, RunContext, best_of
from otel_lightning.exceptions import ResourceError, ValidationError
from otel_lightning.resources import (
    JSON,
    LLMEndpoint,
    ModelWeights,
    PromptTemplate,
    Resource,
    SamplingParams,
    WorkflowConfig,
)
from otel_lightning.spans.trajectory import Trajectory

if TYPE_CHECKING:
    from otel_lightning.client.lightning import Lightning

logger = logging.getLogger(__name__)

_RESOURCE_TYPES = (PromptTemplate, SamplingParams, LLMEndpoint, ModelWeights, WorkflowConfig)


class MutationOperator(Protocol):
    """Proposes a changed resource from a parent, what its rollouts did, and a seeded RNG."""

    def __call__(self, resource: Resource, feedback: list[Trajectory], rng: random.Random, /) -> Resource: ...


class EvolutionarySearch(Algorithm):
    """Pareto-front evolutionary search over one resource.

    Args:
        name: the run's name (see :class:`~otel_lightning.algorithms.base.Algorithm` for the common options).
        train: task inputs run for feedback.
        val: task inputs every candidate is scored on, item by item (the Pareto front).
        resource: name of the resource to evolve.
        mutate: ``mutate(resource, feedback, rng) -> Resource``.
        generations: rounds of select -> mutate -> evaluate.
        children: children per generation.
        feedback_size: train items run per generation for feedback.
        val_size: validation items every candidate runs on (a seeded subset; all by default).
        metric: ``metric(rollout) -> reward | None`` (default: the rollout's reward; failures score 0).
    """

    algorithm_name = "evolutionary_search"

    def __init__(
        self,
        *,
        name: str,
        train: Sequence[JSON],
        val: Sequence[JSON],
        resource: str,
        mutate: MutationOperator,
        generations: int = 4,
        children: int = 2,
        feedback_size: int = 4,
        val_size: int | None = None,
        metric: Metric | None = None,
        **common: Any,
    ) -> None:
        super().__init__(name=name, **common)
        check_callback(mutate, "mutate", 3)
        if metric is not None:
            check_callback(metric, "metric", 1)
        if min(generations, children, feedback_size) < 1:
            raise ValidationError("generations, children and feedback_size must be at least 1")
        self.train = check_dataset(train, "train")
        self.val = check_dataset(val, "val")
        self.resource = resource
        self.mutate = mutate
        self.generations = generations
        self.children = children
        self.feedback_size = feedback_size
        self.val_size = val_size
        self.metric = metric

    def options(self) -> dict[str, JSON]:
        return {
            **super().options(),
            "train": dataset_digest(self.train),
            "val": dataset_digest(self.val),
            "resource": self.resource,
            "mutate": callable_name(self.mutate),
            "generations": self.generations,
            "children": self.children,
            "feedback_size": self.feedback_size,
            "val_size": self.val_size,
            "metric": callable_name(self.metric),
        }

    def run(self, lightning: Lightning) -> AlgorithmResult:
        ctx = RunContext.open(lightning, self)
        if ctx.result is not None:
            return ctx.result
        if self.resource not in ctx.resources(SEED).resources:
            raise ResourceError(f"the seed version has no resource {self.resource!r} to evolve")
        items = list(range(len(self.val)))
        if self.val_size is not None and self.val_size < len(items):
            items = sorted(ctx.rng("val").sample(items, self.val_size))
        per_item: dict[str, list[float]] = {}
        baseline = self._evaluate(ctx, [SEED], items, per_item)[SEED].score
        seen = {_key(ctx.resources(SEED)[self.resource]): SEED}
        for generation in range(1, self.generations + 1):
            front = pareto_front(per_item)
            rng = ctx.rng("parents", generation)
            parents = [sample_parent(front, rng) for _ in range(self.children)]
            logger.info("run %s generation %d: front %s, parents %s", self.name, generation, front, parents)
            distinct = list(dict.fromkeys(parents))
            batch = ctx.rng("feedback", generation).sample(
                range(len(self.train)), min(self.feedback_size, len(self.train))
            )
            runs = ctx.evaluate(
                distinct, self.train, stage="train", items=batch, metric=self.metric, record=False
            )
            new = []
            for i, parent in enumerate(parents):
                cid = f"g{generation}.{i + 1}"
                if cid in ctx:
                    seen.setdefault(_key(ctx.resources(cid)[self.resource]), cid)
                else:
                    child = self._child(ctx, parent, runs[parent], ctx.rng("mutate", generation, i))
                    if _key(child) in seen:
                        logger.info("run %s: %s repeats %s; skipped", self.name, cid, seen[_key(child)])
                        continue
                    seen[_key(child)] = cid
                    parent_resources = ctx.resources(parent).resources
                    ctx.add_candidate(
                        cid,
                        {**parent_resources, self.resource: child},
                        parent=parent,
                        info={self.resource: child.to_json()},
                    )
                new.append(cid)
            self._evaluate(ctx, new, items, per_item)
        best = best_of(ctx.candidates)
        return ctx.finish(best.id, baseline=baseline)

    def _evaluate(
        self, ctx: RunContext, cids: list[str], items: list[int], per_item: dict[str, list[float]]
    ) -> dict[str, Evaluation]:
        found = ctx.evaluate(cids, self.val, stage="val", items=items, metric=self.metric)
        for cid, evaluation in found.items():
            per_item[cid] = [0.0 if r is None else r for r in evaluation.rewards]
        return found

    def _child(self, ctx: RunContext, parent: str, run: Evaluation, rng: random.Random) -> Resource:
        feedback = [
            e.trajectory for e in examples(ctx.lightning, run, self.train) if e.trajectory is not None
        ]
        current = ctx.resources(parent)[self.resource]
        child = self.mutate(current, feedback, rng)
        if not isinstance(child, _RESOURCE_TYPES):
            raise TypeError(
                f"mutate must return a Resource (PromptTemplate, WorkflowConfig, ...), not {child!r}"
            )
        if type(child) is not type(current):
            raise TypeError(f"mutate turned a {type(current).__name__} into a {type(child).__name__}")
        return child


def _key(resource: Resource) -> str:
    return json.dumps(resource.to_json(), sort_keys=True, default=repr)
