"""Two server processes on one PostgreSQL database, with real worker processes: 500 rollouts, each claimed
once, all succeeded, every span stored once; then the same with one replica killed (SIGKILL) midway."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from otel_lightning import connect
from otel_lightning.types import RolloutStatus
from tests.replicas.replica_support import Balancer, Replica, audit, start_worker, stop_workers

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

SPANS = 3  # child spans per rollout; with the worker's rollout span an attempt reports SPANS + 1


def test_replica_two_servers_share_the_queue_and_the_spans(pg_database: str, tmp_path: Path) -> None:
    """Workers split between the replicas; the driver talks to one and hears the other's completions."""
    a = Replica(pg_database, tmp_path / "a.log").start()
    b = Replica(pg_database, tmp_path / "b.log").start()
    workers = []
    try:
        with connect(a.url) as lightning:
            ids = [r.rollout_id for r in lightning.enqueue([{"spans": SPANS, "i": i} for i in range(500)])]
            workers = [
                start_worker(replica.url, f"{name}{i}", tmp_path / f"worker-{name}{i}.log")
                for name, replica in (("a", a), ("b", b))
                for i in range(2)
            ]
            final = lightning.wait(ids, timeout_s=90, complete=True)
        assert {r.status for r in final} == {RolloutStatus.SUCCEEDED}
        assert stop_workers(workers) == [0, 0, 0, 0]
        found = audit(pg_database, ids)
        assert found.rollout_statuses == {"succeeded": 500}
        assert found.attempts_per_rollout == {1: 500}  # each rollout claimed exactly once
        assert found.claims_per_attempt == {1: 500}
        assert found.mismatched == []
        assert found.spans_reported == found.spans_stored == 500 * (SPANS + 1)
        by_replica = {name: sum(n for w, n in found.workers.items() if w.startswith(name)) for name in "ab"}
        assert min(by_replica.values()) > 50, by_replica  # both replicas served claims
    finally:
        stop_workers(workers)
        a.stop()
        b.stop()


def test_replica_killed_midway_behind_a_load_balancer(pg_database: str, tmp_path: Path) -> None:
    """As deployed: clients reach the replicas through a load balancer. One replica is killed with SIGKILL
    mid-run; requests it held fail, their clients retry through the balancer to the survivor (a retried
    claim finds the claim the dead replica committed), and every rollout still succeeds with every span."""
    a = Replica(pg_database, tmp_path / "a.log", lease_s=3.0).start()
    b = Replica(pg_database, tmp_path / "b.log", lease_s=3.0).start()
    workers = []
    try:
        with Balancer([a.port, b.port]) as balancer, connect(balancer.url) as lightning:
            tasks = [{"spans": SPANS, "sleep_s": 0.01, "i": i} for i in range(500)]
            ids = [r.rollout_id for r in lightning.enqueue(tasks)]
            workers = [start_worker(balancer.url, f"w{i}", tmp_path / f"worker{i}.log") for i in range(4)]
            deadline = time.monotonic() + 60
            while len(lightning.rollouts(status=RolloutStatus.SUCCEEDED)) < 150:
                assert time.monotonic() < deadline, "150 rollouts did not succeed in time"
                time.sleep(0.2)
            a.kill()
            final = lightning.wait(ids, timeout_s=90, complete=True)
            assert stop_workers(workers) == [0, 0, 0, 0], "a worker did not survive the replica's death"
            served_by_a = balancer.connections[a.port]
        assert {r.status for r in final} == {RolloutStatus.SUCCEEDED}
        found = audit(pg_database, ids)
        assert found.rollout_statuses == {"succeeded": 500}
        assert found.mismatched == []
        assert found.spans_reported == found.spans_stored == 500 * (SPANS + 1)
        assert set(found.claims_per_attempt) == {1}
        assert served_by_a > 0
        # An attempt cut off with the dead replica is retried after its lease; most rollouts never are.
        assert found.attempts_per_rollout[1] >= 450, found.attempts_per_rollout
    finally:
        stop_workers(workers)
        a.kill()
        b.stop()
