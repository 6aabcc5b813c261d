"""kill -9 a worker process in the middle of its rollouts: they are redone elsewhere, nothing is lost."""

from __future__ import annotations

from pathlib import Path

import pytest

from otel_lightning import connect
from otel_lightning.types import AttemptStatus, RolloutStatus
from tests.reliability.rel_support import (
    ServerProc,
    audit_db,
    running_on,
    start_worker,
    stop_workers,
    wait_until,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]

AGENT = "tests.reliability.rel_agents:spans_agent"


def test_rel_killed_worker_rollouts_succeed_on_another(tmp_path: Path) -> None:
    server = ServerProc(tmp_path / "server.db", tmp_path / "server.log", lease_s=2.0).start()
    workers = []
    try:
        with connect(server.url) as lightning:
            tasks = [{"spans": 5, "sleep_s": 1.5, "i": i} for i in range(16)]
            rollouts = lightning.enqueue(tasks)
            doomed = start_worker(server.url, AGENT, tmp_path / "doomed.log", concurrency=4)
            workers.append(doomed)
            wait_until(lambda: running_on(server.db, doomed.pid) == 4, 20, "4 attempts on the doomed worker")
            doomed.kill()
            doomed.wait(5)
            workers.append(start_worker(server.url, AGENT, tmp_path / "survivor.log", concurrency=4))
            final = lightning.wait(rollouts, timeout_s=40, complete=True)

            assert {r.status for r in final} == {RolloutStatus.SUCCEEDED}
            killed = 0
            for rollout in final:
                attempts = lightning.attempts(rollout.rollout_id)
                *dead, winner = attempts
                assert winner.attempt_id == rollout.attempt_id
                assert winner.status is AttemptStatus.SUCCEEDED and winner.span_count == 6
                assert all(a.status is AttemptStatus.TIMED_OUT and a.error == "lease expired" for a in dead)
                killed += len(dead)
                # The trajectory and the default span view hold the winning attempt's spans only.
                trajectory = lightning.trajectory(rollout.rollout_id)
                assert trajectory.attempt_id == winner.attempt_id and trajectory.complete
                spans = lightning.spans(rollout.rollout_id)
                assert len(spans) == 6 and {s.attempt_id for s in spans} == {winner.attempt_id}
            assert killed == 4, "exactly the 4 attempts running on the killed worker were redone"

        audit = audit_db(server.db, [r.rollout_id for r in rollouts])
        assert audit.problems == []
        assert audit.spans_reported == audit.spans_winning == 16 * 6
        assert audit.spans_stored == audit.spans_winning + audit.spans_dead
    finally:
        stop_workers(workers)
        server.stop()
