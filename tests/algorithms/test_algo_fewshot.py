"""BootstrapFewShot against a real server and worker: demonstrations from successful trajectories win."""

from __future__ import annotations

import pytest

from otel_lightning.algorithms import BootstrapFewShot, ProgressEvent, ProgressKind
from otel_lightning.exceptions import ResourceError, ValidationError
from otel_lightning.resources import WorkflowConfig
from otel_lightning.spans.llm import LLMCall
from tests.algorithms.algo_agent import DEFAULT_TEMPLATE, HARD, mixed, tasks
from tests.algorithms.algo_checks import check_result, run_rollouts
from tests.algorithms.conftest import AlgoEnv


def test_fewshot_publishes_the_demo_set_that_helps(algo_env: AlgoEnv) -> None:
    lightning = algo_env.seeded("fewshot")
    events: list[ProgressEvent] = []
    train, val = mixed(12), mixed(12, start=100)
    algo = BootstrapFewShot(name="fs", train=train, val=val, k=2, num_candidates=5, progress=events.append)
    result = algo.run(lightning)

    check_result(lightning, result, "bootstrap_fewshot", val_items=12)
    # The bare prompt gets the easy half; a demo of each label teaches the model both.
    assert result.baseline_score.mean == 0.5
    assert result.best_score.mean == 1.0
    best = lightning.resources(result.best_version).prompt("prompt")
    assert best.placeholders == {"text"}
    assert best.template.startswith("Examples:\n\nInput: ")
    assert best.template.endswith(DEFAULT_TEMPLATE)
    assert "Output: positive" in best.template and "Output: negative" in best.template

    candidates = [c for c in result.history if c.id != "seed"]
    assert len(candidates) == 5 and len({tuple(c.info["train_items"]) for c in candidates}) == 5
    for candidate in candidates:
        template = lightning.resources(candidate.version).prompt("prompt")
        assert template.placeholders == {"text"}
        # Demos are the real completions of the seed's successful (easy, even-indexed) train rollouts.
        for item in candidate.info["train_items"]:
            assert item % 2 == 0
            assert (
                f"Input: {train[item]['text']}\nOutput: {train[item]['label']}".replace("{", "{{").replace(
                    "}", "}}"
                )
                in template.template
            )
    # A demo with braces ("good {view} #4") is escaped and renders literally.
    braced = [c for c in candidates if 4 in c.info["train_items"]]
    assert braced, "the seed's demo pool holds the braced text"
    text = lightning.resources(braced[0].version).prompt("prompt").render(text="x")
    assert "Input: good {view} #4\nOutput: positive" in text

    kinds = {e.kind for e in events}
    assert kinds >= {
        ProgressKind.STARTED,
        ProgressKind.CANDIDATE,
        ProgressKind.EVALUATED,
        ProgressKind.FINISHED,
    }
    assert events[-1].kind is ProgressKind.FINISHED and events[-1].rollouts_used == result.rollouts_used
    assert result.rollouts_used == 12 + 6 * 12  # the train bootstrap, then seed and 5 candidates on val

    # Running the finished run again returns its result and runs nothing.
    before = len(run_rollouts(lightning, "fs"))
    again = BootstrapFewShot(name="fs", train=train, val=val, k=2, num_candidates=5).run(lightning)
    assert again == result
    assert len(run_rollouts(lightning, "fs")) == before
    assert lightning.resources().version == result.best_version


def test_fewshot_custom_demo_format(algo_env: AlgoEnv) -> None:
    lightning = algo_env.seeded("fewshot-format")
    seen: list[str] = []

    def demo(task_input: dict, call: LLMCall) -> str:
        # The real prompt the seed sent is in the trajectory.
        seen.append(call.input_messages[-1].content)
        return f"Text: {task_input['text']} => Output: {call.completion}"

    algo = BootstrapFewShot(
        name="fmt", train=mixed(6), val=mixed(6, start=50), k=2, num_candidates=2, demo_format=demo
    )
    result = algo.run(lightning)
    assert seen and all(s.startswith("Text: ") and s.endswith("\nLabel:") for s in seen)
    template = lightning.resources(result.best_version).prompt("prompt").template
    assert " => Output: " in template


def test_fewshot_checks_its_callbacks() -> None:
    with pytest.raises(TypeError, match="demo_format must accept 2"):
        BootstrapFewShot(name="x", train=[{}], val=[{}], demo_format=lambda task: "")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="metric must be callable"):
        BootstrapFewShot(name="x", train=[{}], val=[{}], metric=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="progress must accept 1"):
        BootstrapFewShot(name="x", train=[{}], val=[{}], progress=lambda: None)  # type: ignore[arg-type]


def test_fewshot_needs_a_seed_prompt(algo_env: AlgoEnv) -> None:
    lightning = algo_env.connect("fewshot-empty")
    with pytest.raises(ValidationError, match="no resource version to start from"):
        BootstrapFewShot(name="x", train=mixed(2), val=mixed(2)).run(lightning)
    lightning.publish({"llm": algo_env.endpoint})
    with pytest.raises(ResourceError, match="no resource 'prompt'"):
        BootstrapFewShot(name="y", train=mixed(2), val=mixed(2)).run(lightning)


def test_fewshot_labeled_chat_turn_demos_when_the_seed_never_succeeds(algo_env: AlgoEnv) -> None:
    """A seed that gets nothing right gives no bootstrapped demos: labelled train items fill the pool, and the
    demos go into a config resource that the agent replays as chat turns."""
    lightning = algo_env.seeded("fewshot-labeled")
    train, val = tasks(HARD, 0, 8), tasks(HARD, 100, 8)
    algo = BootstrapFewShot(
        name="labeled",
        train=train,
        val=val,
        k=2,
        num_candidates=4,
        demos_resource="demos",
        label_field="label",
    )
    result = algo.run(lightning)
    check_result(lightning, result, "bootstrap_fewshot", val_items=8)
    assert result.baseline_score.mean == 0.0
    assert result.best_score.mean == 1.0
    best = lightning.resources(result.best_version)
    assert best.prompt("prompt").template == DEFAULT_TEMPLATE, "the template is left alone"
    demos = best["demos"]
    assert isinstance(demos, WorkflowConfig)
    turns = demos.value["demos"]
    assert {t["output"] for t in turns} == {"positive", "negative"}
    for turn in turns:
        item = next(t for t in train if DEFAULT_TEMPLATE.format(text=t["text"]) == turn["input"])
        assert turn["output"] == item["label"]
    assert all(all(c.info["labeled"]) for c in result.history if c.id != "seed")
