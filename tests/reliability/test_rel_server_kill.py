"""kill -9 the server in the middle of a run and start it again on the same database and port: every
rollout ends succeeded, and no span the exporters sent is missing or stored twice."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from otel_lightning import connect
from otel_lightning.types import RolloutStatus
from tests.reliability.rel_support import ServerProc, audit_db, start_worker, stop_workers, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]

AGENT = "tests.reliability.rel_agents:spans_agent"


def test_rel_server_killed_and_restarted_loses_nothing(tmp_path: Path) -> None:
    server = ServerProc(tmp_path / "server.db", tmp_path / "server.log", lease_s=5.0).start()
    workers = []
    try:
        with connect(server.url) as lightning:
            rollouts = lightning.enqueue([{"spans": 10, "sleep_s": 0.6, "i": i} for i in range(60)])
            ids = [r.rollout_id for r in rollouts]
            workers = [
                start_worker(server.url, AGENT, tmp_path / f"worker{i}.log", concurrency=4) for i in range(2)
            ]
            wait_until(
                lambda: len(lightning.rollouts(status=RolloutStatus.SUCCEEDED)) >= 10, 30, "10 rollouts done"
            )
            server.kill()
            time.sleep(0.5)
            server.start()
            final = lightning.wait(ids, timeout_s=45, complete=True)
            assert {r.status for r in final} == {RolloutStatus.SUCCEEDED}
            assert all(lightning.trajectory(r).complete for r in ids[:5] + ids[-5:])

        assert all(code == 0 for code in stop_workers(workers)), "a worker did not survive the restart"
        audit = audit_db(server.db, ids)
        assert audit.problems == []
        assert audit.spans_reported == audit.spans_winning == 60 * 11
        assert audit.spans_stored == audit.spans_winning + audit.spans_dead
        assert audit.duplicates == 0
    finally:
        stop_workers(workers)
        server.stop()
