"""Ending a running attempt from the server side reaches a real worker process: a cancel, and a rollout's
wall-clock timeout (Task.timeout_s). The worker's next heartbeat gets 409, it cancels the agent's task,
does not report the attempt, and goes on with other rollouts."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from otel_lightning import connect
from otel_lightning.client.lightning import Lightning
from otel_lightning.types import AttemptStatus, RolloutStatus, Task
from tests.reliability.rel_support import ServerProc, start_worker, stop_workers, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]

AGENT = "tests.reliability.rel_agents:slow_agent"


@pytest.fixture
def loop(tmp_path: Path) -> Iterator[tuple[Lightning, Path]]:
    server = ServerProc(tmp_path / "server.db", tmp_path / "server.log", lease_s=3.0).start()
    worker = start_worker(server.url, AGENT, tmp_path / "worker.log", concurrency=2)
    try:
        with connect(server.url) as lightning:
            yield lightning, tmp_path
    finally:
        assert stop_workers([worker]) == [0]
        server.stop()


def test_rel_cancel_reaches_the_running_worker(loop: tuple[Lightning, Path]) -> None:
    lightning, tmp_path = loop
    marker = tmp_path / "cancelled"
    (slow,) = lightning.enqueue([{"sleep_s": 30, "marker": str(marker)}])
    wait_until(lambda: lightning.rollout(slow.rollout_id).status is RolloutStatus.RUNNING, 15, "the claim")
    cancelled = lightning.cancel(slow.rollout_id)
    assert cancelled.status is RolloutStatus.CANCELLED
    # Heartbeats come every lease/3 = 1 s: the agent's task is cancelled soon after.
    wait_until(marker.exists, 15, "the agent to be cancelled")
    (attempt,) = lightning.attempts(slow.rollout_id)
    assert attempt.status is AttemptStatus.CANCELLED and attempt.span_count is None

    # The worker is free for other work, and never reported the cancelled attempt.
    fast = lightning.run([{"sleep_s": 0.1, "marker": str(tmp_path / "unused")}], timeout_s=20)
    assert [r.status for r in fast] == [RolloutStatus.SUCCEEDED]
    assert lightning.rollout(slow.rollout_id).status is RolloutStatus.CANCELLED
    log = (tmp_path / "worker.log").read_text()
    assert "abandoning it" in log and "completion of" not in log


def test_rel_rollout_timeout_ends_the_running_attempt(loop: tuple[Lightning, Path]) -> None:
    lightning, tmp_path = loop
    marker = tmp_path / "timed-out"
    slow, quick = lightning.enqueue(
        [
            Task({"sleep_s": 30, "marker": str(marker)}, timeout_s=1.0, max_attempts=2),
            Task({"sleep_s": 0.2, "marker": str(tmp_path / "unused")}, timeout_s=10.0),
        ]
    )
    final = lightning.wait([slow, quick], timeout_s=30)
    assert [r.status for r in final] == [RolloutStatus.FAILED, RolloutStatus.SUCCEEDED]
    assert final[0].error == "timed out after 2 attempts: attempt exceeded its timeout of 1 s"
    attempts = lightning.attempts(slow.rollout_id)
    assert [a.status for a in attempts] == [AttemptStatus.TIMED_OUT] * 2
    for attempt in attempts:
        assert attempt.ended_ns is not None
        assert (attempt.ended_ns - attempt.started_ns) / 1e9 >= 1.0  # then the watchdog's next sweep
    wait_until(marker.exists, 15, "the agent to be cancelled")
