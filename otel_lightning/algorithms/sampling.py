"""Sampling-parameter search: temperature, top_p and max_tokens grids, by successive halving or UCB.

Every grid point becomes a candidate version whose sampling resource differs from the seed's in the searched
fields only (axes left ``None`` keep the seed's value). The seed itself competes as the baseline.

- **Successive halving** (default): all candidates run on the first ``min_items`` validation items (a
  seeded order); the best ``1/eta`` survive and run on ``eta`` times as many items; until one is left or
  the split is used up. A larger evaluation reuses the smaller one's rollouts (same rollout ids).
- **UCB**: every candidate runs one batch; then the candidate with the highest upper confidence bound
  runs its next ``batch`` items, until ``budget`` rollouts are spent. The most-pulled candidate wins.

The baseline is the seed's score on the same items as the winner's (paired).
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Sequence
from enum import StrEnum
from functools import partial
from typing import TYPE_CHECKING, Any

from otel_lightning.algorithms.base import (
    Algorithm,
    AlgorithmResult,
    callable_name,
    check_callback,
    check_dataset,
    dataset_digest,
)
from otel_lightning.algorithms.evaluate import Metric
from otel_lightning.algorithms.run_state import SEED, RunContext
from otel_lightning.algorithms.score import Score
from otel_lightning.exceptions import ValidationError
from otel_lightning.resources import JSON, SamplingParams

if TYPE_CHECKING:
    from otel_lightning.client.lightning import Lightning

logger = logging.getLogger(__name__)


class SearchStrategy(StrEnum):
    """How :class:`SamplingSearch` spends its rollouts."""

    HALVING = "successive_halving"
    UCB = "ucb"


class SamplingSearch(Algorithm):
    """Finds the sampling parameters that score best on the validation split.

    Args:
        name: the run's name (see :class:`~otel_lightning.algorithms.base.Algorithm` for the common options).
        val: task inputs candidates are scored on.
        temperature, top_p, max_tokens: the values to try on each axis; ``None`` keeps the seed's value.
        resource: name of the sampling resource.
        strategy: successive halving or UCB.
        eta: halving factor (keep 1/eta, run eta times as many items).
        min_items: items of the first halving round.
        batch: items per UCB pull.
        budget: rollouts UCB may spend (default: four per validation item).
        ucb_c: UCB exploration weight (rewards are assumed within [0, 1]).
        metric: ``metric(rollout) -> reward | None`` (default: the rollout's reward; failures score 0).
    """

    algorithm_name = "sampling_search"

    def __init__(
        self,
        *,
        name: str,
        val: Sequence[JSON],
        temperature: Sequence[float] | None = (0.0, 0.3, 0.7, 1.0),
        top_p: Sequence[float] | None = None,
        max_tokens: Sequence[int] | None = None,
        resource: str = "sampling",
        strategy: SearchStrategy = SearchStrategy.HALVING,
        eta: int = 2,
        min_items: int = 4,
        batch: int = 8,
        budget: int | None = None,
        ucb_c: float = 1.0,
        metric: Metric | None = None,
        **common: Any,
    ) -> None:
        super().__init__(name=name, **common)
        if eta < 2 or min_items < 1 or batch < 1:
            raise ValidationError("eta must be at least 2, min_items and batch at least 1")
        if metric is not None:
            check_callback(metric, "metric", 1)
        self.val = check_dataset(val, "val")
        self.axes = {
            "temperature": None if temperature is None else tuple(temperature),
            "top_p": None if top_p is None else tuple(top_p),
            "max_tokens": None if max_tokens is None else tuple(max_tokens),
        }
        if all(values is None for values in self.axes.values()) or any(v == () for v in self.axes.values()):
            raise ValidationError("give at least one non-empty axis to search")
        for point in self._grid(SamplingParams()):
            SamplingParams(**point)  # every grid point must be valid before anything runs
        self.resource = resource
        self.strategy = SearchStrategy(strategy)
        self.eta = eta
        self.min_items = min_items
        self.batch = batch
        self.budget = 4 * len(self.val) if budget is None else budget
        self.ucb_c = ucb_c
        self.metric = metric

    def options(self) -> dict[str, JSON]:
        return {
            **super().options(),
            "val": dataset_digest(self.val),
            "axes": {k: None if v is None else list(v) for k, v in self.axes.items()},
            "resource": self.resource,
            "strategy": self.strategy.value,
            "eta": self.eta,
            "min_items": self.min_items,
            "batch": self.batch,
            "budget": self.budget,
            "ucb_c": self.ucb_c,
            "metric": callable_name(self.metric),
        }

    def run(self, lightning: Lightning) -> AlgorithmResult:
        ctx = RunContext.open(lightning, self)
        if ctx.result is not None:
            return ctx.result
        seed = ctx.resources(SEED)
        base = seed.sampling(self.resource)
        arms = [SEED]
        for point in self._grid(base):
            params = SamplingParams(**point)
            if params == base:
                continue  # the seed already competes with these parameters
            made = ctx.add_candidate(
                f"s{len(arms)}",
                {**seed.resources, self.resource: params},
                parent=SEED,
                info={"sampling": params.to_json()},
            )
            arms.append(made.id)
        order = list(range(len(self.val)))
        ctx.rng("order").shuffle(order)
        if self.strategy is SearchStrategy.HALVING:
            winner, items = self._halving(ctx, arms, order)
        else:
            winner, items = self._ucb(ctx, arms, order)
        baseline = ctx.evaluate([SEED], self.val, stage="val", items=items, metric=self.metric)[SEED].score
        return ctx.finish(winner, baseline=baseline)

    def _grid(self, base: SamplingParams) -> list[dict[str, Any]]:
        names = list(self.axes)
        values = [self.axes[n] or (getattr(base, n),) for n in names]
        return [
            {**dict(zip(names, combo, strict=True)), "seed": base.seed}
            for combo in itertools.product(*values)
        ]

    def _halving(self, ctx: RunContext, arms: list[str], order: list[int]) -> tuple[str, list[int]]:
        alive = list(arms)
        size = min(self.min_items, len(order))
        while True:
            found = ctx.evaluate(alive, self.val, stage="val", items=order[:size], metric=self.metric)
            ranked = sorted(alive, key=lambda a: -found[a].score.mean)  # stable: earlier wins ties
            if len(alive) == 1 or size == len(order):
                return ranked[0], order[:size]
            alive = ranked[: math.ceil(len(alive) / self.eta)]
            size = min(len(order), size * self.eta)

    def _ucb(self, ctx: RunContext, arms: list[str], order: list[int]) -> tuple[str, list[int]]:
        first = min(self.batch, len(order))
        found = ctx.evaluate(arms, self.val, stage="val", items=order[:first], metric=self.metric)
        scores: dict[str, Score] = {a: found[a].score for a in arms}
        used = first * len(arms)
        while used < self.budget:
            open_arms = [a for a in arms if scores[a].n < len(order)]
            if not open_arms:
                break
            total = sum(s.n for s in scores.values())
            arm = max(open_arms, key=partial(_upper_bound, scores, total, self.ucb_c))
            size = min(len(order), scores[arm].n + self.batch, scores[arm].n + self.budget - used)
            used += size - scores[arm].n
            evaluation = ctx.evaluate([arm], self.val, stage="val", items=order[:size], metric=self.metric)
            scores[arm] = evaluation[arm].score
        winner = max(arms, key=lambda a: (scores[a].n, scores[a].mean, -arms.index(a)))
        return winner, order[: scores[winner].n]


def _upper_bound(scores: dict[str, Score], total: int, c: float, arm: str) -> float:
    """UCB1's upper confidence bound of an arm's mean reward."""
    score = scores[arm]
    return score.mean + c * math.sqrt(2 * math.log(total) / score.n)
