"""The scale-out topology on one machine: two server replicas on one PostgreSQL database behind a load
balancer, rotel in front of the balancer for the workers' spans, the workers' REST calls through the same
balancer. One replica is killed (SIGKILL) while rollouts run: every rollout still succeeds with all its
spans, once. Skipped where no PostgreSQL server is reachable."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.rotel_agent import RotelAgent, RotelOptions
from otel_lightning import connect
from otel_lightning.client.lightning import Lightning
from otel_lightning.resources import LLMEndpoint, PromptTemplate, SamplingParams
from otel_lightning.testing import ScriptedLLM
from otel_lightning.types import AttemptStatus, RolloutStatus
from tests.agents.classify import scripted_handler
from tests.conftest import free_port
from tests.deploy.deploy_support import PROMPT, require_rotel, start_workers, stop_workers
from tests.replicas.replica_support import Balancer, Replica
from tests.store.pg_scratch import require_postgres, scratch_database

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

ROLLOUTS = 80


@pytest.fixture
def pg_url() -> Iterator[str]:
    require_postgres()
    with scratch_database() as url:
        yield url


def test_deploy_rotel_in_front_of_two_replicas_one_killed(pg_url: str, tmp_path: Path) -> None:
    require_rotel()
    a = Replica(pg_url, tmp_path / "a.log", lease_s=3.0).start()
    b = Replica(pg_url, tmp_path / "b.log", lease_s=3.0).start()
    workers: list[subprocess.Popen[bytes]] = []
    codes: list[int | None] = []
    try:
        with (
            Balancer([a.port, b.port]) as balancer,
            ScriptedLLM(scripted_handler) as llm,
            (tmp_path / "rotel.log").open("wb") as log,
            RotelAgent(RotelOptions(free_port(), balancer.url, retry_max_backoff="1s"), log) as agent,
            connect(balancer.url) as lightning,
        ):
            try:
                run_and_check(lightning, llm, balancer, agent, a, tmp_path, workers)
            finally:
                # While the balancer and rotel still run: a stopping worker flushes its spans and its claim.
                codes = stop_workers(workers)
            assert balancer.connections[a.port] > 0 and balancer.connections[b.port] > 0
    finally:
        a.kill()
        b.stop()
    assert codes == [0, 0]


def run_and_check(
    lightning: Lightning,
    llm: ScriptedLLM,
    balancer: Balancer,
    agent: RotelAgent,
    victim: Replica,
    tmp_path: Path,
    workers: list[subprocess.Popen[bytes]],
) -> None:
    endpoint = LLMEndpoint(base_url=llm.base_url, model="scripted")
    lightning.publish({"prompt": PromptTemplate(PROMPT), "llm": endpoint, "sampling": SamplingParams(0.0)})
    labels = ["positive", "negative"]
    inputs = [
        {"text": f"{'good' if i % 2 == 0 else 'bad'} #{i}", "label": labels[i % 2]} for i in range(ROLLOUTS)
    ]
    ids = [r.rollout_id for r in lightning.enqueue([{**t, "delay_s": 0.2} for t in inputs])]
    workers.extend(start_workers(balancer.url, agent.traces_endpoint, 2, tmp_path))
    deadline = time.monotonic() + 60
    while (done := len(lightning.rollouts(status=RolloutStatus.SUCCEEDED))) < ROLLOUTS // 4:
        assert time.monotonic() < deadline, "the first rollouts did not succeed in time"
        time.sleep(0.1)
    victim.kill()
    assert done < ROLLOUTS, "the replica died after the run, not during it"
    final = lightning.wait(ids, timeout_s=60, complete=True)
    assert {r.status for r in final} == {RolloutStatus.SUCCEEDED}
    assert {r.reward for r in final} == {1.0}
    for rollout_id in ids:
        succeeded = [a for a in lightning.attempts(rollout_id) if a.status is AttemptStatus.SUCCEEDED]
        assert len(succeeded) == 1
        spans = lightning.spans(rollout_id, succeeded[0].attempt_id)
        assert succeeded[0].span_count == len(spans) == 3
        assert len({(s.trace_id, s.span_id) for s in spans}) == 3
