"""APO against a real server and worker, with a scripted optimizer LLM."""

from __future__ import annotations

import itertools
import logging
import re
from typing import Any

import pytest

from otel_lightning.algorithms import APO, ProgressEvent, ProgressKind
from otel_lightning.resources import LLMEndpoint
from otel_lightning.testing import ScriptedLLM
from tests.algorithms.algo_agent import mixed
from tests.algorithms.algo_checks import check_result, run_rollouts
from tests.algorithms.conftest import AlgoEnv

ADVICE = "The model is unsure of words it does not know: ask it to read carefully."


class Optimizer:
    """Critiques say "read carefully"; of each three edits, the first drops the placeholder."""

    def __init__(self) -> None:
        self.edits = itertools.count()

    def __call__(self, request: dict[str, Any]) -> str:
        text = str(request["messages"][-1]["content"])
        if "Explain briefly" in text:
            return ADVICE
        current = re.search(r"<prompt>\n(.*?)\n</prompt>", text, re.DOTALL)
        assert current is not None and ADVICE in text
        n = next(self.edits) % 3
        if n == 0:
            return "Sure! <prompt>\nClassify the sentiment.\n</prompt>"  # dropped {text}: must be rejected
        verb = "Read" if n == 1 else "Think"
        return f"<prompt>\n{verb} carefully. {current.group(1)}\n</prompt>"


def test_apo_critiques_real_failures_and_rejects_broken_edits(
    algo_env: AlgoEnv, caplog: pytest.LogCaptureFixture
) -> None:
    lightning = algo_env.seeded("apo")
    events: list[ProgressEvent] = []
    train, val = mixed(8), mixed(10, start=50)
    with ScriptedLLM(Optimizer()) as llm, caplog.at_level(logging.WARNING, "otel_lightning.algorithms"):
        algo = APO(
            name="apo",
            train=train,
            val=val,
            optimizer=LLMEndpoint(llm.base_url, "optimizer"),
            rounds=2,
            minibatch=6,
            branch_factor=3,
            progress=events.append,
        )
        result = algo.run(lightning)
        requests = [str(r["messages"][-1]["content"]) for r in llm.requests]

    check_result(lightning, result, "apo", val_items=10)
    assert (result.baseline_score.mean, result.best_score.mean) == (0.5, 1.0)
    best = lightning.resources(result.best_version).prompt("prompt")
    assert best.template == "Read carefully. Text: {text}\nLabel:"
    winner = next(c for c in result.history if c.id == result.best_candidate)
    assert winner.parent == "seed" and winner.info["critique"] == ADVICE

    # The critique shows failures from the trajectories: the prompt really sent and the model's output.
    critique = requests[0]
    assert "Explain briefly" in critique and "Model output:\nunsure" in critique
    failed_texts = [t["text"] for t in train if t["text"] in critique]
    assert failed_texts and all(f"user: Text: {t}\nLabel:" in critique for t in failed_texts)
    assert all(not any(w in t for w in ("good", "bad")) for t in failed_texts)  # only real failures

    # Every edit that dropped the placeholder was rejected, logged, and never published.
    rejections = [e for e in events if e.kind is ProgressKind.REJECTED]
    assert rejections and all("dropped placeholders ['text']" in e.message for e in rejections)
    assert "rejected an edit of seed" in caplog.text
    for candidate in result.history:
        assert lightning.resources(candidate.version).prompt("prompt").placeholders == {"text"}

    # Candidates of a round are evaluated together, on the same validation items as the seed.
    val_rollouts = [r for r in run_rollouts(lightning, "apo") if ":val:" in r.rollout_id]
    by_candidate: dict[str, list[str]] = {}
    for rollout in val_rollouts:
        by_candidate.setdefault(rollout.rollout_id.split(":")[2], []).append(rollout.rollout_id.split(":")[3])
    assert len({tuple(sorted(items)) for items in by_candidate.values()}) == 1
    round_one = [r for r in val_rollouts if r.rollout_id.split(":")[2].startswith("r1.")]
    assert {r.rollout_id.split(":")[2] for r in round_one} == {"r1.1", "r1.2"}
    assert len({r.created_ns for r in round_one}) == 1  # enqueued together, then one wait


class Crash(Exception):
    pass


def crash_on_candidate(event: ProgressEvent) -> None:
    if event.kind is ProgressKind.CANDIDATE:
        raise Crash(event.message)


def test_apo_resumes_from_recorded_optimizer_answers(algo_env: AlgoEnv) -> None:
    """A run that dies after publishing a candidate resumes with the recorded critique and edits."""
    lightning = algo_env.seeded("apo-resume")
    options: dict[str, Any] = {"train": mixed(6), "val": mixed(6, start=70), "rounds": 1, "minibatch": 4}
    with ScriptedLLM(Optimizer()) as llm:
        with pytest.raises(Crash):
            APO(
                name="a", optimizer=LLMEndpoint(llm.base_url, "m"), progress=crash_on_candidate, **options
            ).run(lightning)
        assert len(llm.requests) == 3  # one critique, two edits
    # The optimizer now answers nonsense: a resumed run must not need it.
    with ScriptedLLM(lambda request: "nonsense") as other:
        result = APO(name="a", optimizer=LLMEndpoint(other.base_url, "m"), **options).run(lightning)
        assert other.requests == []
        check_result(lightning, result, "apo", val_items=6)
        assert (
            lightning.resources(result.best_version).prompt("prompt").template.startswith("Read carefully.")
        )
        published = [v for v in lightning.resource_versions() if v.metadata.get("candidate")]
        assert [v.metadata["candidate"] for v in published] == ["r1.1"]  # not published twice
        # Finished: running it again hands back the result.
        assert APO(name="a", optimizer=LLMEndpoint(other.base_url, "m"), **options).run(lightning) == result


def test_apo_checks_its_options() -> None:
    with pytest.raises(TypeError, match="LLMEndpoint"):
        APO(name="x", train=[{}], val=[{}], optimizer="http://x")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="metric must accept 1"):
        APO(
            name="x",
            train=[{}],
            val=[{}],
            optimizer=LLMEndpoint("http://127.0.0.1:1/v1", "m"),
            metric=lambda a, b: 0.0,  # type: ignore[arg-type]
        )
