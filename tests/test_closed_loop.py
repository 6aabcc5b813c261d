"""The closed loop end to end, with real processes: a uvicorn server, two worker processes (concurrency 4)
whose agent uses the real openai client against a scripted OpenAI-compatible server, and a driver using
``connect()`` that publishes two prompt versions and runs 40 rollouts with each."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from otel_lightning import connect
from otel_lightning.client.lightning import Lightning
from otel_lightning.resources import LLMEndpoint, PromptTemplate, SamplingParams
from otel_lightning.testing import ScriptedLLM
from otel_lightning.types import AttemptStatus, RolloutStatus
from tests.agents.classify import scripted_answer, scripted_handler
from tests.conftest import REPO, ServerProcess, child_env

pytestmark = pytest.mark.slow

TEXTS = ["a good day", "a bad day", "good food", "awful food", "good music", "noise", "good", "bad"]
V1 = "Classify the sentiment of this text: {text}"
V2 = "Read carefully and classify the sentiment (positive or negative) of this text: {text}"


def tasks(n: int, offset: int) -> list[dict[str, str]]:
    out = []
    for i in range(n):
        text = f"{TEXTS[(i + offset) % len(TEXTS)]} #{i + offset}"
        out.append({"text": text, "label": "positive" if "good" in text else "negative"})
    return out


@pytest.fixture
def scripted_llm() -> Iterator[ScriptedLLM]:
    with ScriptedLLM(scripted_handler) as llm:
        yield llm


def start_workers(url: str, count: int, concurrency: int) -> list[subprocess.Popen[bytes]]:
    return [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "otel_lightning.cli",
                "--log-level",
                "WARNING",
                "worker",
                "tests.agents.classify:classify",
                "--server",
                url,
                "--concurrency",
                str(concurrency),
                "--claim-wait-s",
                "2",
            ],
            cwd=REPO,
            env=child_env(),
        )
        for _ in range(count)
    ]


def stop_workers(workers: list[subprocess.Popen[bytes]]) -> None:
    for proc in workers:
        proc.terminate()
    for proc in workers:
        assert proc.wait(30) == 0, "a worker did not stop cleanly"


def run_two_versions(lightning: Lightning, llm: ScriptedLLM) -> dict[int, list[str]]:
    """Publish v1, run 40 tasks, publish v2, run 40 more; rollout ids by version."""
    endpoint = LLMEndpoint(base_url=llm.base_url, model="scripted")
    v1 = lightning.publish(
        {"prompt": PromptTemplate(V1), "llm": endpoint, "sampling": SamplingParams(0.0)}, expected_version=0
    )
    first = lightning.run(tasks(40, 0), timeout_s=120)
    v2 = lightning.publish(
        {"prompt": PromptTemplate(V2), "llm": endpoint, "sampling": SamplingParams(0.0)},
        expected_version=v1.version,
    )
    second = lightning.run(tasks(40, 40), timeout_s=120)
    assert (v1.version, v2.version) == (1, 2)
    return {1: [r.rollout_id for r in first], 2: [r.rollout_id for r in second]}


def check_loop(lightning: Lightning, by_version: dict[int, list[str]]) -> None:
    """Every rollout succeeded with the version it ran, the exact prompt and completion, and every span."""
    templates = {1: V1, 2: V2}
    total_reported = 0
    for version, rollout_ids in by_version.items():
        for rollout_id in rollout_ids:
            rollout = lightning.rollout(rollout_id)
            assert rollout.status is RolloutStatus.SUCCEEDED, rollout
            attempts = lightning.attempts(rollout_id)
            assert len(attempts) == 1 and attempts[0].status is AttemptStatus.SUCCEEDED
            attempt = attempts[0]
            assert attempt.resource_version == version
            prompt = templates[version].format(text=rollout.input["text"])
            expected_reward = 1.0 if scripted_answer(prompt) == rollout.input["label"] else 0.0
            assert rollout.reward == attempt.reward == expected_reward

            trajectory = lightning.trajectory(rollout_id)
            assert trajectory.attempt_id == attempt.attempt_id
            assert trajectory.resource_version == version
            assert trajectory.complete
            assert len(trajectory.steps) == 1
            call = trajectory.steps[0].llm_call
            assert [m.content for m in call.input_messages] == [prompt]
            assert call.completion == scripted_answer(prompt)
            assert trajectory.final_reward == expected_reward
            assert [(r.name, r.value) for r in trajectory.rewards if r.name == "accuracy"] == [
                ("accuracy", expected_reward)
            ]

            # Exactly the spans the worker ended: the rollout span, the openai.chat span, the reward span.
            spans = lightning.spans(rollout_id)
            assert attempt.span_count == len(spans) == 3
            assert len({(s.trace_id, s.span_id) for s in spans}) == 3
            total_reported += attempt.span_count
    every = lightning.spans(by_version[1][0], attempt_id="all")
    assert len(every) == 3
    assert total_reported == 240


def check_exports(lightning: Lightning, url: str, tmp_path: Path, v2_ids: list[str]) -> None:
    """`otel-lightning export` writes what the trajectories hold, readable by json and pyarrow."""
    for fmt in ("sft", "parquet"):
        out = tmp_path / f"v2.{fmt}"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "otel_lightning.cli",
                "export",
                "--server",
                url,
                "--format",
                fmt,
                "--out",
                str(out),
                "--resource-version",
                "2",
                "--min-reward",
                "1",
            ],
            cwd=REPO,
            env=child_env(),
            check=True,
            capture_output=True,
            timeout=60,
        )
        if fmt == "sft":
            records = [json.loads(line) for line in out.read_text().splitlines()]
        else:
            records = pq.read_table(out).to_pylist()
        assert len(records) == 40
    trajectories = {r: lightning.trajectory(r) for r in v2_ids}
    by_rollout = {row["rollout_id"]: row for row in pq.read_table(tmp_path / "v2.parquet").to_pylist()}
    for rollout_id, trajectory in trajectories.items():
        row, call = by_rollout[rollout_id], trajectory.steps[0].llm_call
        assert row["response"] == call.completion
        assert row["prompt"] == [{"role": m.role, "content": m.content} for m in call.input_messages]
        assert row["reward"] == trajectory.steps[0].reward == 1.0
    sft = [json.loads(line) for line in (tmp_path / "v2.sft").read_text().splitlines()]
    assert {line["messages"][-1]["content"] for line in sft} == {"positive", "negative"}


def test_closed_loop_with_real_processes(
    server_process: ServerProcess, scripted_llm: ScriptedLLM, tmp_path: Path
) -> None:
    workers = start_workers(server_process.url, count=2, concurrency=4)
    try:
        with connect(server_process.url) as lightning:
            by_version = run_two_versions(lightning, scripted_llm)
            check_loop(lightning, by_version)
            # v2 asks the model to be careful: every answer is right; v1 gets none right.
            assert {r.reward for r in lightning.rollouts(resource_version=1)} == {0.0}
            assert {r.reward for r in lightning.rollouts(resource_version=2)} == {1.0}
            assert len(scripted_llm.requests) == 80
            workers_seen = {lightning.attempts(r)[0].worker_id for ids in by_version.values() for r in ids}
            assert len(workers_seen) == 2, "both worker processes took rollouts"
            check_exports(lightning, server_process.url, tmp_path, by_version[2])
    finally:
        stop_workers(workers)


def test_closed_loop_embedded() -> None:
    """The same flow through ``serve()``, with concurrent rollouts in one process (a subprocess, because
    ``instrument()`` sets this process's global tracer provider)."""
    result = subprocess.run(
        [sys.executable, "-m", "tests.scenarios.embedded_loop"],
        cwd=REPO,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "embedded loop ok" in result.stdout
