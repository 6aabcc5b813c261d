"""The closed loop through ``serve()`` in one process: the server, a Worker running 8 rollouts at a time
(async agent) and the driver, all here. Run by tests/test_closed_loop.py in its own process."""

from __future__ import annotations

import threading

from otel_lightning import Worker, serve
from otel_lightning.testing import ScriptedLLM
from tests.agents.classify import classify_async, scripted_handler
from tests.test_closed_loop import check_loop, run_two_versions


def main() -> None:
    with ScriptedLLM(scripted_handler) as llm, serve() as lightning:
        worker = Worker(classify_async, lightning.url, concurrency=8, claim_wait_s=1)
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        try:
            by_version = run_two_versions(lightning, llm)
            check_loop(lightning, by_version)
            peak = max(_overlap(lightning, ids) for ids in by_version.values())
            assert peak > 1, "rollouts ran concurrently in this process"
        finally:
            worker.stop()
            thread.join(30)
    print("embedded loop ok")


def _overlap(lightning, rollout_ids) -> int:  # type: ignore[no-untyped-def]
    """The most attempts that were running at the same moment."""
    events = []
    for rollout_id in rollout_ids:
        attempt = lightning.attempts(rollout_id)[0]
        events += [(attempt.started_ns, 1), (attempt.ended_ns, -1)]
    running = peak = 0
    for _, delta in sorted(events):
        running += delta
        peak = max(peak, running)
    return peak


if __name__ == "__main__":
    main()
