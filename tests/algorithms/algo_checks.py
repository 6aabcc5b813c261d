"""Checks every algorithm's result must pass, read back from the server."""

from __future__ import annotations

import math

from otel_lightning.algorithms import AlgorithmResult, Score
from otel_lightning.algorithms.evaluate import run_prefix
from otel_lightning.client.lightning import Lightning
from otel_lightning.types import Rollout


def run_rollouts(lightning: Lightning, run: str, experiment: str | None = None) -> list[Rollout]:
    """Every rollout of the experiment whose id belongs to the run."""
    experiment = experiment or lightning.experiment
    prefix = run_prefix(experiment, run) + ":"
    found: list[Rollout] = []
    while True:
        page = lightning.rollouts(experiment=experiment, limit=1000, offset=len(found))
        found += page
        if len(page) < 1000:
            return [r for r in found if r.rollout_id.startswith(prefix)]


def check_score(score: Score, n: int, failures: int = 0) -> None:
    assert score.n == n and score.failures == failures
    assert score.ci_low <= score.mean <= score.ci_high
    assert score.ci_low >= 0.0 and score.ci_high <= 1.0  # 0/1 rewards: a Wilson interval
    assert score.ci_high - score.ci_low > 0  # honest: n this small never gives a point interval
    assert math.isfinite(score.ci_low) and math.isfinite(score.ci_high)


def check_result(lightning: Lightning, result: AlgorithmResult, algorithm: str, val_items: int) -> None:
    """The winner is published as the latest version, says where it came from, and beats the baseline."""
    assert result.algorithm == algorithm
    assert result.improved and result.baseline_score is not None
    assert result.best_score.mean > result.baseline_score.mean
    check_score(result.best_score, val_items)
    check_score(result.baseline_score, val_items)

    latest = lightning.resources()
    assert latest.version == result.best_version
    assert latest.metadata["algorithm"] == algorithm
    assert latest.metadata["run"] == result.run_name
    assert latest.metadata["score"] == result.best_score.mean
    assert latest.metadata["best_candidate"] == result.best_candidate
    winner = next(c for c in result.history if c.id == result.best_candidate)
    assert winner.score == result.best_score
    assert latest.resources == lightning.resources(winner.version).resources

    for candidate in result.history:
        if candidate.id == "seed":
            assert candidate.version == 1
            continue
        meta = lightning.resources(candidate.version).metadata
        assert meta == {"run": result.run_name, "candidate": candidate.id}

    rollouts = run_rollouts(lightning, result.run_name)
    assert len(rollouts) == result.rollouts_used
    by_version = {c.version: c.id for c in result.history}
    for rollout in rollouts:
        # Pinned: each rollout ran exactly the candidate its id names.
        assert by_version[rollout.resource_version] == rollout.rollout_id.split(":")[2]
