"""Workers behind a fault-injecting TCP proxy (REST and OTLP both through it): connections reset at random
points of requests and answers, delays, and a blackhole of a few seconds. Nothing is lost or duplicated."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from otel_lightning import connect
from otel_lightning.testing.faulty_proxy import Faults, FaultyProxy
from otel_lightning.types import RolloutStatus
from tests.reliability.rel_support import ServerProc, audit_db, start_worker, stop_workers, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]

AGENT = "tests.reliability.rel_agents:spans_agent"


def test_rel_resets_delays_and_a_blackhole_lose_nothing(tmp_path: Path) -> None:
    server = ServerProc(tmp_path / "server.db", tmp_path / "server.log", lease_s=3.0).start()
    faults = Faults(reset_probability=0.05, delay_s=(0.0, 0.01), seed=7)
    workers = []
    try:
        with FaultyProxy(server.port, faults) as proxy, connect(server.url) as lightning:
            rollouts = lightning.enqueue([{"spans": 10, "sleep_s": 0.5, "i": i} for i in range(60)])
            ids = [r.rollout_id for r in rollouts]
            workers = [
                start_worker(proxy.url, AGENT, tmp_path / f"worker{i}.log", concurrency=4) for i in range(2)
            ]
            wait_until(
                lambda: len(lightning.rollouts(status=RolloutStatus.SUCCEEDED)) >= 15, 40, "15 rollouts done"
            )
            proxy.blackhole(3.0)
            time.sleep(3.0)
            proxy.reset_all()  # every open connection at once, long-polls and keep-alives included
            final = lightning.wait(ids, timeout_s=60, complete=True)
            assert {r.status for r in final} == {RolloutStatus.SUCCEEDED}
            assert proxy.stats.resets > 0
            assert all(lightning.trajectory(r).complete for r in ids)
            assert all(code == 0 for code in stop_workers(workers)), "a worker failed"
        audit = audit_db(server.db, ids)
        assert audit.problems == []
        assert audit.spans_reported == audit.spans_winning == 60 * 11
        assert audit.duplicates == 0
    finally:
        stop_workers(workers)
        server.stop()
