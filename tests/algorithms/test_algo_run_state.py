"""A run's state in the server: compare-and-swap checkpoints, separate runs, failures in scores."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from otel_lightning.algorithms import (
    Algorithm,
    AlgorithmResult,
    BootstrapFewShot,
    RunContext,
    SamplingSearch,
    evaluate,
    evaluate_many,
    rollout_id,
    state_experiment,
)
from otel_lightning.algorithms.run_state import SEED, best_of
from otel_lightning.client.lightning import Lightning
from otel_lightning.exceptions import ConflictError
from otel_lightning.resources import PromptTemplate, SamplingParams, WorkflowConfig
from otel_lightning.types import RolloutStatus
from tests.algorithms.algo_agent import mixed
from tests.algorithms.algo_checks import run_rollouts
from tests.algorithms.conftest import AlgoEnv

CAREFUL = PromptTemplate("Read carefully. Text: {text}\nLabel:")


def test_the_same_run_in_two_processes_cannot_clobber_its_state(algo_env: AlgoEnv) -> None:
    lightning = algo_env.seeded("cas")
    algo = SamplingSearch(name="twice", val=mixed(4))
    first = RunContext.open(lightning, algo)
    second = RunContext.open(algo_env.connect("cas"), algo)  # a second process, same run name
    assert not first.resumed and second.resumed and second.seed_version == first.seed_version == 1
    first.memo("step", lambda: "first")
    with pytest.raises(ConflictError, match="changed by another process"):
        second.memo("step", lambda: "second")
    state = lightning.resources(experiment=state_experiment("cas", "twice"))
    assert isinstance(state["state"], WorkflowConfig)
    assert state["state"].value["memo"] == {"step": "first"}

    # Resuming under the same name with other options or another algorithm is refused.
    with pytest.raises(ConflictError, match="other options or data"):
        RunContext.open(lightning, SamplingSearch(name="twice", val=mixed(5)))
    with pytest.raises(ConflictError, match="is a sampling_search run"):
        RunContext.open(lightning, BootstrapFewShot(name="twice", train=mixed(4), val=mixed(4)))


def test_two_runs_on_one_experiment_keep_their_own_state(algo_env: AlgoEnv) -> None:
    algo_env.seeded("shared", prompt=CAREFUL, sampling=SamplingParams(temperature=1.0))
    grids = {"cold": (0.0, 0.6), "warm": (0.3, 1.2)}
    results: dict[str, AlgorithmResult] = {}
    errors: list[BaseException] = []

    def run(name: str) -> None:
        try:
            algo = SamplingSearch(name=name, val=mixed(8), temperature=grids[name], min_items=8)
            results[name] = algo.run(algo_env.connect("shared"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(name,)) for name in grids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors

    lightning = algo_env.connect("shared")
    versions = {v.version: v for v in lightning.resource_versions()}
    owned: dict[str, set[int]] = {}
    for name, result in results.items():
        state = lightning.resources(experiment=state_experiment("shared", name))["state"]
        assert isinstance(state, WorkflowConfig)
        assert state.value["run"] == name and state.value["status"] == "finished"
        assert state.value["seed_version"] == result.history[0].version == 1  # never the other's candidate
        recorded = [c["version"] for c in state.value["candidates"] if c["id"] != "seed"]
        assert recorded == [c.version for c in result.history if c.id != "seed"]
        assert all(versions[v].metadata["run"] == name for v in recorded)
        owned[name] = set(recorded)
        assert versions[result.best_version].metadata["run"] == name
        best = lightning.resources(result.best_version).sampling()
        assert best.temperature == grids[name][0]  # the colder of each run's grid
        assert result.baseline_score is not None and result.best_score.mean > result.baseline_score.mean
        for rollout in run_rollouts(lightning, name):
            assert rollout.resource_version in owned[name] | {1}
    assert not owned["cold"] & owned["warm"]
    assert len(versions) == 1 + 2 + 2 + 2  # the seed, two candidates per run, one winner per run


def test_failed_and_timed_out_rollouts_count_as_failures(algo_env: AlgoEnv) -> None:
    lightning = algo_env.seeded("failures", prompt=CAREFUL)
    dataset: list[Any] = [
        *mixed(4),
        {"text": "good", "label": "positive", "fail": True},
        {"text": "bad", "label": "negative", "fail": True},
        {"text": "good", "label": "positive", "sleep": 3},
    ]
    score = evaluate(lightning, 1, dataset, run="f", stage="val", rollout_timeout_s=0.5, max_attempts=1)
    assert (score.n, score.failures, score.mean) == (7, 3, 4 / 7)
    assert score.ci_low < 4 / 7 < score.ci_high
    timed_out = lightning.rollout(rollout_id("failures", "f", "val", "eval", 6))
    assert timed_out.status is RolloutStatus.FAILED and "timeout" in (timed_out.error or "")
    # Evaluating again under the same ids reuses the rollouts: the same score, nothing new run.
    again = evaluate_many(lightning, {"eval": 1}, dataset, run="f", stage="val", max_attempts=1)
    assert again["eval"].score == score and again["eval"].rewards[4:] == (None, None, None)
    assert len(run_rollouts(lightning, "f")) == 7

    # In an algorithm's result too: failures are scored, never dropped.
    result = SamplingSearch(name="s", val=dataset[:6], temperature=(0.0,), min_items=6).run(lightning)
    assert result.best_score.failures == 2 and result.best_score.n == 6
    assert result.baseline_score is not None and result.baseline_score.failures == 2


class TwoPrompts(Algorithm):
    """The example of docs/algorithms.md: one hand-written candidate against the seed."""

    algorithm_name = "two_prompts"

    def __init__(self, *, name: str, val: list[Any], **common: Any) -> None:
        super().__init__(name=name, **common)
        self.val = list(val)

    def options(self) -> dict[str, Any]:
        return {**super().options(), "val": self.val}

    def run(self, lightning: Lightning) -> AlgorithmResult:
        ctx = RunContext.open(lightning, self)
        if ctx.result is not None:
            return ctx.result
        seed = ctx.resources(SEED)
        ctx.add_candidate("c1", {**seed.resources, "prompt": CAREFUL}, parent=SEED)
        found = ctx.evaluate([SEED, "c1"], self.val, stage="val")
        return ctx.finish(best_of(ctx.candidates).id, baseline=found[SEED].score)


def test_a_custom_algorithm_built_on_run_context(algo_env: AlgoEnv) -> None:
    lightning = algo_env.seeded("custom")
    result = TwoPrompts(name="mine", val=mixed(6)).run(lightning)
    assert result.algorithm == "two_prompts" and result.best_candidate == "c1"
    assert lightning.resources(result.best_version).prompt("prompt") == CAREFUL
    assert (result.baseline_score.mean if result.baseline_score else None, result.best_score.mean) == (
        0.5,
        1.0,
    )
