"""SamplingSearch against a real server and worker: the scripted model errs more often when hot."""

from __future__ import annotations

import pytest

from otel_lightning.algorithms import SamplingSearch, SearchStrategy
from otel_lightning.exceptions import ResourceError, ValidationError
from otel_lightning.resources import PromptTemplate, SamplingParams
from tests.algorithms.algo_agent import mixed
from tests.algorithms.algo_checks import check_result, run_rollouts
from tests.algorithms.conftest import AlgoEnv

CAREFUL = PromptTemplate("Read carefully. Text: {text}\nLabel:")


def test_successive_halving_finds_the_cold_temperature(algo_env: AlgoEnv) -> None:
    lightning = algo_env.seeded("sampling", prompt=CAREFUL, sampling=SamplingParams(temperature=1.0, seed=7))
    algo = SamplingSearch(name="sh", val=mixed(16), temperature=(0.0, 0.5, 1.0, 1.5), top_p=(0.9, 1.0))
    result = algo.run(lightning)

    check_result(lightning, result, "sampling_search", val_items=16)
    best = lightning.resources(result.best_version)
    assert best.sampling().temperature == 0.0 and best.sampling().seed == 7  # unsearched fields are kept
    assert best.prompt("prompt") == CAREFUL
    assert result.best_score.mean == 1.0 and result.baseline_score.mean < 0.5
    # 8 grid points (T=1.0, top_p=1.0 differs from the seed in top_p) + the seed; halving: 4, 8, 16 items.
    grid = [c for c in result.history if c.id != "seed"]
    assert len(grid) == 8
    sizes = {c.id: c.score.n for c in result.history if c.score}
    # Halving: 9 arms on 4 items, the best 5 on 8, the best 3 on all 16; the seed measured on all 16 too.
    grid_sizes = sorted(n for cid, n in sizes.items() if cid != "seed")
    assert sizes["seed"] == 16 and grid_sizes[-2:] == [16, 16] and grid_sizes.count(4) >= 3
    # Larger rounds reused the smaller rounds' rollouts: exactly one rollout per (candidate, item).
    rollouts = run_rollouts(lightning, "sh")
    assert len(rollouts) == result.rollouts_used == sum(sizes.values())


def test_ucb_spends_its_budget_on_the_best_arm(algo_env: AlgoEnv) -> None:
    lightning = algo_env.seeded("sampling-ucb", prompt=CAREFUL, sampling=SamplingParams(temperature=1.0))
    algo = SamplingSearch(
        name="ucb",
        val=mixed(16),
        temperature=(0.0, 0.6, 1.2),
        strategy=SearchStrategy.UCB,
        batch=4,
        budget=40,
    )
    result = algo.run(lightning)

    check_result(lightning, result, "sampling_search", val_items=16)
    assert lightning.resources(result.best_version).sampling().temperature == 0.0
    pulls = {c.id: c.score.n for c in result.history if c.score}
    assert pulls[result.best_candidate] == max(pulls.values()) == 16
    # The budget bounds the search's rollouts; the paired baseline may add the seed's missing items.
    assert sum(n for cid, n in pulls.items() if cid != "seed") <= 40


def test_sampling_search_validates_its_grid() -> None:
    with pytest.raises(ResourceError, match="temperature"):
        SamplingSearch(name="x", val=[{}], temperature=(0.0, 9.0))
    with pytest.raises(ValidationError, match="axis"):
        SamplingSearch(name="x", val=[{}], temperature=None)
    with pytest.raises(ValidationError, match="run name"):
        SamplingSearch(name="bad name!", val=[{}])
