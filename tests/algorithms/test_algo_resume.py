"""Resume after kill -9: real server, worker and algorithm processes."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from otel_lightning import connect
from otel_lightning.algorithms import AlgorithmResult, state_experiment
from otel_lightning.resources import WorkflowConfig
from tests.algorithms.algo_checks import run_rollouts
from tests.algorithms.conftest import ProcessLoop
from tests.conftest import REPO, child_env

pytestmark = pytest.mark.slow


def driver(url: str, experiment: str, run: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.algorithms.algo_resume_driver", url, experiment, run],
        cwd=REPO, env=child_env(), stdout=subprocess.PIPE, text=True,
    )  # fmt: skip


def finished(proc: subprocess.Popen[str]) -> AlgorithmResult:
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    return AlgorithmResult.from_json(json.loads(out.strip().splitlines()[-1]))


def test_a_killed_run_resumes_without_duplicating_work(process_loop: ProcessLoop) -> None:
    server = process_loop.server
    clean, crashed = connect(server.url, experiment="clean"), connect(server.url, experiment="crashed")
    process_loop.seed(clean)
    process_loop.seed(crashed)
    reference = driver(server.url, "clean", "run")
    victim = driver(server.url, "crashed", "run")

    # Kill -9 while the validation rollouts are in flight: the train rollouts, the candidates and the
    # evaluation's enqueued rollouts exist; the run has not finished.
    deadline = time.monotonic() + 30
    while not any(":val:" in r.rollout_id for r in run_rollouts(crashed, "run")):
        assert victim.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    victim.kill()
    victim.wait(10)
    assert victim.returncode == -9
    state = crashed.resources(experiment=state_experiment("crashed", "run"))["state"]
    assert isinstance(state, WorkflowConfig) and state.value["status"] == "running"
    before = run_rollouts(crashed, "run")
    assert len(before) > 8

    resumed = finished(driver(server.url, "crashed", "run"))
    expected = finished(reference)

    # The same decisions, and exactly the rollouts and candidate versions of a run that never crashed.
    assert resumed.best_candidate == expected.best_candidate
    assert resumed.best_score == expected.best_score and resumed.baseline_score == expected.baseline_score
    assert [(c.id, c.score, c.info) for c in resumed.history] == [
        (c.id, c.score, c.info) for c in expected.history
    ]
    crashed_rollouts, clean_rollouts = run_rollouts(crashed, "run"), run_rollouts(clean, "run")
    assert (
        len(crashed_rollouts) == len(clean_rollouts) == resumed.rollouts_used == expected.rollouts_used == 40
    )
    assert {r.rollout_id.split(":", 1)[1] for r in crashed_rollouts} == {
        r.rollout_id.split(":", 1)[1] for r in clean_rollouts
    }
    assert all(r.attempt_count == 1 for r in crashed_rollouts)
    for lightning in (crashed, clean):
        tagged = [
            v.metadata.get("candidate") for v in lightning.resource_versions() if "candidate" in v.metadata
        ]
        assert sorted(tagged) == ["fs1", "fs2", "fs3"]  # each candidate published once
    assert crashed.resources().version == resumed.best_version
