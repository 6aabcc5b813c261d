"""A thousand concurrent long-polls (claims and waits) against a real server process: every one is
answered, and the server's memory stays bounded (RSS read from /proc before, during and after)."""

from __future__ import annotations

import asyncio
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from otel_lightning import connect
from otel_lightning.client.lightning import Lightning
from tests.reliability.rel_support import ServerProc, rss_kib, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(150)]

CLAIMS = WAITS = 500
POLL_S = 20.0  # long enough to open 1,000 connections on a loaded 2-core machine


async def long_polls(
    url: str, ending: list[str], lasting: list[str], round_: int
) -> tuple[list[int], list[bool]]:
    """500 claims and 500 waits at once: half the waits are on rollouts that end, half on ones that do not."""
    limits = httpx.Limits(max_connections=CLAIMS + WAITS + 10, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as http:

        async def claim(i: int) -> int:
            body = {
                "worker_id": f"w{i}",
                "request_id": f"claim-{round_}-{i}",
                "experiments": ["work"],
                "wait_s": POLL_S,
            }
            return (await http.post("/api/v1/claims", json=body)).status_code

        async def wait(rollout_ids: list[str]) -> bool:
            body = {"rollout_ids": rollout_ids, "timeout_s": POLL_S}
            answer = await http.post("/api/v1/rollouts/wait", json=body)
            assert answer.status_code == 200, answer.text
            return bool(answer.json()["done"])

        claims = [asyncio.create_task(claim(i)) for i in range(CLAIMS)]
        waits = [asyncio.create_task(wait(ending if i < WAITS // 2 else lasting)) for i in range(WAITS)]
        return list(await asyncio.gather(*claims)), list(await asyncio.gather(*waits))


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def one_round(lightning: Lightning, url: str, pid: int, round_: int) -> list[int]:
    """1000 long-polls held at once, then half of them answered by changes; server RSS samples."""
    targets = [r.rollout_id for r in lightning.enqueue([{"t": i} for i in range(20)], experiment="idle")]
    ending, lasting = targets[:10], targets[10:]
    during: list[int] = []
    baseline = open_fds(pid)

    def act() -> None:
        # Once the server holds all 1000 connections (one socket each), the long-polls are in.
        wait_until(lambda: open_fds(pid) >= baseline + CLAIMS + WAITS, POLL_S, "1000 connections")
        time.sleep(0.5)
        during.append(rss_kib(pid))
        # Work for half the claims, and the end of what half the waits wait for.
        lightning.enqueue([{"w": i} for i in range(CLAIMS // 2)], experiment="work")
        for rollout_id in ending:
            lightning.cancel(rollout_id)
        during.append(rss_kib(pid))

    with ThreadPoolExecutor(1) as pool:
        acted = pool.submit(act)
        claim_codes, done = asyncio.run(long_polls(url, ending, lasting, round_))
        acted.result(30)  # re-raises what went wrong in act()
    assert sorted(claim_codes) == [200] * (CLAIMS // 2) + [204] * (CLAIMS - CLAIMS // 2)
    assert done == [True] * (WAITS // 2) + [False] * (WAITS - WAITS // 2)
    return during


def test_rel_a_thousand_long_polls_are_served_in_bounded_memory(tmp_path: Path) -> None:
    server = ServerProc(tmp_path / "server.db", tmp_path / "server.log", lease_s=60.0).start()
    try:
        with connect(server.url) as lightning:
            before = rss_kib(server.pid)
            first = max(one_round(lightning, server.url, server.pid, 1))
            second = max(one_round(lightning, server.url, server.pid, 2))
            time.sleep(1.0)
            after = rss_kib(server.pid)
        print(
            f"server RSS (MiB): before {before / 1024:.1f}, during {first / 1024:.1f} then "
            f"{second / 1024:.1f}, after {after / 1024:.1f}"
        )
        assert (first - before) / 1024 < 100, "1000 long-polls took more than 100 MiB"
        # Bounded: a second round of 1000 reuses what the first one took.
        assert second - first < 15 * 1024
        assert after <= second + 10 * 1024
    finally:
        server.stop()
