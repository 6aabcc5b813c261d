"""EvolutionarySearch over a free-form workflow config, against a real server and worker."""

from __future__ import annotations

import random

import pytest

from otel_lightning.algorithms.evolution import EvolutionarySearch
from otel_lightning.resources import Resource, WorkflowConfig
from otel_lightning.spans.trajectory import Trajectory
from tests.algorithms.algo_agent import label_of
from tests.algorithms.algo_checks import check_result
from tests.algorithms.conftest import AlgoEnv

STEPS = ["normalize", "verify", "translate", "summarize"]


def workflow_tasks(count: int, start: int = 0) -> list[dict[str, str]]:
    out = []
    for i in range(start, start + count):
        base = ["good day", "awful day", "great food", "bad food"][i % 4] + f" #{i}"
        text = [base, base.upper(), base + "?"][i % 3]
        out.append({"text": text, "label": label_of(text)})
    return out


class Mutator:
    def __init__(self) -> None:
        self.feedback: list[list[Trajectory]] = []

    def __call__(self, resource: Resource, feedback: list[Trajectory], rng: random.Random) -> Resource:
        assert isinstance(resource, WorkflowConfig)
        self.feedback.append(feedback)
        steps = list(resource.value.get("steps", []))
        # Reflect on one failure, as GEPA does: which step would have fixed it?
        failing = [t for t in feedback if not t.final_reward and t.steps]
        if failing:
            prompt = rng.choice(failing).steps[-1].llm_call.input_messages[-1].content
            text = prompt.rsplit("Text: ", 1)[-1].split("\n", 1)[0]
            need = "normalize" if text.isupper() else "verify" if text.endswith("?") else None
            if need is not None and need not in steps:
                return WorkflowConfig({**resource.value, "steps": [*steps, need]})
        missing = [s for s in STEPS if s not in steps]
        if steps and (not missing or rng.random() < 0.3):
            steps.remove(rng.choice(steps))
        else:
            steps.append(rng.choice(missing))
        return WorkflowConfig({**resource.value, "steps": steps})


def test_evolution_combines_specialists_into_the_best_workflow(algo_env: AlgoEnv) -> None:
    seed_config = {"steps": [], "retries": 1}
    lightning = algo_env.seeded("evolution", workflow=WorkflowConfig(seed_config))
    mutator = Mutator()
    algo = EvolutionarySearch(
        name="evo",
        train=workflow_tasks(9),
        val=workflow_tasks(12, start=30),
        resource="workflow",
        mutate=mutator,
        generations=4,
        children=2,
    )
    result = algo.run(lightning)

    check_result(lightning, result, "evolutionary_search", val_items=12)
    assert (result.baseline_score.mean, result.best_score.mean) == (4 / 12, 1.0)
    best = lightning.resources(result.best_version)["workflow"]
    assert isinstance(best, WorkflowConfig)
    assert {"normalize", "verify"} <= set(best.value["steps"]) and best.value["retries"] == 1
    # The winner descends from a specialist (one of the two steps), which descends from the seed.
    winner = next(c for c in result.history if c.id == result.best_candidate)
    parent = next(c for c in result.history if c.id == winner.parent)
    assert parent.parent == "seed" and parent.score is not None and parent.score.mean == 8 / 12
    # mutate got the parents' train trajectories, with their real prompts and rewards.
    assert mutator.feedback and all(len(f) == 4 for f in mutator.feedback)
    for trajectory in mutator.feedback[0]:
        assert trajectory.final_reward in (0.0, 1.0)
        assert trajectory.steps[-1].llm_call.input_messages[-1].content.startswith("Steps: ")


def test_evolution_checks_the_operator() -> None:
    with pytest.raises(TypeError, match="mutate must accept 3"):
        EvolutionarySearch(name="x", train=[{}], val=[{}], resource="w", mutate=lambda r: r)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="mutate must be callable"):
        EvolutionarySearch(name="x", train=[{}], val=[{}], resource="w", mutate=None)  # type: ignore[arg-type]


def test_evolution_rejects_a_mutation_that_is_no_resource(algo_env: AlgoEnv) -> None:
    lightning = algo_env.seeded("evolution-bad", workflow=WorkflowConfig({"steps": []}))
    algo = EvolutionarySearch(
        name="bad",
        train=workflow_tasks(2),
        val=workflow_tasks(2),
        resource="workflow",
        mutate=lambda resource, feedback, rng: {"steps": ["verify"]},  # type: ignore[arg-type,return-value]
        generations=1,
        children=1,
        feedback_size=1,
    )
    with pytest.raises(TypeError, match="must return a Resource"):
        algo.run(lightning)
