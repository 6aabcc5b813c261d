"""BatchGroup: concurrent items coalesce into few requests, each caller gets its own answer; the worker's
batched completions survive transport failures and 503s."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from otel_lightning.client import calls
from otel_lightning.client.batching import BatchGroup
from otel_lightning.client.http import AsyncApiClient, RetryPolicy
from otel_lightning.client.worker import Worker
from otel_lightning.exceptions import NotFoundError, StaleAttemptError
from otel_lightning.types import AttemptStatus, Outcome


class Recorder:
    """A ``send`` that records each batch and answers ``item * 10``, or the item itself if an exception."""

    def __init__(self, delay_s: float = 0.01) -> None:
        self.batches: list[list[Any]] = []
        self.delay_s = delay_s

    async def __call__(self, items: list[Any]) -> list[Any]:
        self.batches.append(items)
        await asyncio.sleep(self.delay_s)
        return [item if isinstance(item, Exception) else item * 10 for item in items]


def test_items_arriving_while_a_batch_is_in_flight_go_together_in_the_next() -> None:
    send = Recorder(delay_s=0.05)

    async def main() -> list[int]:
        group: BatchGroup[int, int] = BatchGroup(send, max_batch=100)
        first = asyncio.create_task(group(0))
        await asyncio.sleep(0.01)  # the first batch is in flight now
        rest = [asyncio.create_task(group(i)) for i in range(1, 41)]
        return await asyncio.gather(first, *rest)

    assert asyncio.run(main()) == [i * 10 for i in range(41)]
    assert send.batches == [[0], list(range(1, 41))]


def test_a_lone_item_is_sent_at_once() -> None:
    send = Recorder(delay_s=0.0)

    async def main() -> float:
        group: BatchGroup[int, int] = BatchGroup(send, max_batch=8)
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert await group(1) == 10
        assert await group(2) == 20
        return loop.time() - started

    assert asyncio.run(main()) < 0.05
    assert send.batches == [[1], [2]]


def test_a_backlog_goes_in_batches_of_at_most_max_batch() -> None:
    send = Recorder()

    async def main() -> list[int]:
        group: BatchGroup[int, int] = BatchGroup(send, max_batch=4)
        return await asyncio.gather(*(group(i) for i in range(10)))

    assert asyncio.run(main()) == [i * 10 for i in range(10)]
    assert [len(b) for b in send.batches] == [4, 4, 2]


def test_each_caller_gets_its_own_error() -> None:
    send = Recorder()
    stale = StaleAttemptError("attempt 2 is cancelled")

    async def main() -> list[Any]:
        group: BatchGroup[Any, Any] = BatchGroup(send, max_batch=8)
        return await asyncio.gather(group(1), group(stale), group(3), return_exceptions=True)

    assert asyncio.run(main()) == [10, stale, 30]
    assert len(send.batches) == 1


def test_a_failed_send_fails_its_batch_only() -> None:
    batches: list[list[int]] = []

    async def send(items: list[int]) -> list[int]:
        batches.append(items)
        await asyncio.sleep(0.01)
        if len(batches) == 1:
            raise RuntimeError("boom")
        return items

    async def main() -> tuple[list[Any], list[Any]]:
        group: BatchGroup[int, int] = BatchGroup(send, max_batch=8)
        first = [asyncio.create_task(group(i)) for i in range(2)]
        await asyncio.sleep(0.005)
        second = [asyncio.create_task(group(i)) for i in range(2, 4)]
        return (
            await asyncio.gather(*first, return_exceptions=True),
            await asyncio.gather(*second, return_exceptions=True),
        )

    failed, answered = asyncio.run(main())
    assert all(isinstance(r, RuntimeError) for r in failed)
    assert answered == [2, 3]


def test_a_cancelled_caller_does_not_cancel_the_others() -> None:
    send = Recorder(delay_s=0.05)

    async def main() -> list[Any]:
        group: BatchGroup[int, int] = BatchGroup(send, max_batch=8)
        tasks = [asyncio.create_task(group(i)) for i in range(3)]
        await asyncio.sleep(0.01)
        tasks[1].cancel()
        return await asyncio.gather(*tasks, return_exceptions=True)

    results = asyncio.run(main())
    assert results[0] == 0 and results[2] == 20
    assert isinstance(results[1], asyncio.CancelledError)


def test_a_caller_that_gives_up_before_its_batch_leaves_withdraws_its_item() -> None:
    send = Recorder(delay_s=0.05)

    async def main() -> None:
        group: BatchGroup[int, int] = BatchGroup(send, max_batch=8)
        first = asyncio.create_task(group(1))
        await asyncio.sleep(0.01)
        waiting = [asyncio.create_task(group(i)) for i in (2, 3)]
        await asyncio.sleep(0)
        waiting[0].cancel()
        assert await first == 10 and await waiting[1] == 30

    asyncio.run(main())
    assert send.batches == [[1], [3]]


# --- the worker's batched completions ----------------------------------------------------------------------


def _answer(request: httpx.Request) -> httpx.Response:
    results = []
    for item in json.loads(request.content)["completions"]:
        attempt_id = item["attempt_id"]
        if attempt_id.startswith("stale"):
            problem = {"type": "stale-attempt", "title": "stale attempt", "status": 409, "detail": "ended"}
            results.append({"error": problem})
        elif attempt_id.startswith("gone"):
            problem = {"type": "not-found", "title": "not found", "status": 404, "detail": "no such attempt"}
            results.append({"error": problem})
        else:
            attempt = {
                "attempt_id": attempt_id,
                "rollout_id": "r",
                "experiment": "default",
                "sequence": 1,
                "status": item["outcome"]["status"],
                "worker_id": "w",
                "resource_version": 0,
                "started_ns": 1,
                "lease_expires_ns": 2,
                "ended_ns": 3,
            }
            results.append({"attempt": attempt})
    return httpx.Response(200, json={"results": results})


def test_worker_completions_are_batched_and_retried_until_the_server_answers() -> None:
    requests: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/api/v1/attempts/complete"
        requests.append(len(json.loads(request.content)["completions"]))
        if len(requests) == 1:
            raise httpx.ConnectError("server restarting")
        if len(requests) == 2:
            problem = {"type": "overloaded", "title": "overloaded", "status": 503, "detail": "busy"}
            return httpx.Response(503, json=problem, headers={"retry-after": "0"})
        return _answer(request)

    async def main() -> list[Any]:
        worker = Worker(lambda task, resources: 1.0, "http://127.0.0.1:9")
        api = AsyncApiClient(worker.settings, retry=RetryPolicy(attempts=1))
        api._http = httpx.AsyncClient(base_url="http://127.0.0.1:9", transport=httpx.MockTransport(handler))
        worker._api = api
        worker._completions = BatchGroup(worker._complete_batch, calls.MAX_COMPLETE_BATCH)
        outcome = Outcome(AttemptStatus.SUCCEEDED, reward=1.0, span_count=0)
        try:
            ids = ["a-1", "stale-2", "a-3", "gone-4"]
            return await asyncio.gather(*(worker._complete(i, outcome) for i in ids), return_exceptions=True)
        finally:
            await api.aclose()

    ok, stale, ok_too, gone = asyncio.run(main())
    assert (ok, stale, ok_too) == (True, False, True)
    assert isinstance(gone, NotFoundError)
    assert requests == [4, 4, 4], "one batch, sent again after a transport error and after a 503"


@pytest.mark.parametrize("count", [1, calls.MAX_COMPLETE_BATCH + 1])
def test_worker_batches_never_exceed_the_servers_limit(count: int) -> None:
    sizes: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sizes.append(len(json.loads(request.content)["completions"]))
        return _answer(request)

    async def main() -> list[bool]:
        worker = Worker(lambda task, resources: 1.0, "http://127.0.0.1:9")
        api = AsyncApiClient(worker.settings)
        api._http = httpx.AsyncClient(base_url="http://127.0.0.1:9", transport=httpx.MockTransport(handler))
        worker._api = api
        worker._completions = BatchGroup(worker._complete_batch, calls.MAX_COMPLETE_BATCH)
        outcome = Outcome(AttemptStatus.FAILED, error="x")
        try:
            return await asyncio.gather(*(worker._complete(f"a-{i}", outcome) for i in range(count)))
        finally:
            await api.aclose()

    assert all(asyncio.run(main()))
    assert sum(sizes) == count and max(sizes) <= calls.MAX_COMPLETE_BATCH
