"""A worker with more free slots than one batch claim may take asks for at most the server's limit."""

from __future__ import annotations

import asyncio
import json

import httpx

from otel_lightning.client import calls
from otel_lightning.client.http import AsyncApiClient
from otel_lightning.client.worker import Worker, _Slots


def test_a_batch_claim_never_asks_for_more_than_the_server_allows() -> None:
    asked: list[int] = []
    worker = Worker(lambda task, resources: 1.0, "http://127.0.0.1:9", concurrency=calls.MAX_CLAIM_BATCH + 44)

    async def main() -> None:
        stop = worker._stop = asyncio.Event()

        def handler(request: httpx.Request) -> httpx.Response:
            asked.append(json.loads(request.content)["max_claims"])
            stop.set()
            return httpx.Response(200, json={"claims": []})

        api = AsyncApiClient(worker.settings)
        api._http = httpx.AsyncClient(base_url="http://127.0.0.1:9", transport=httpx.MockTransport(handler))
        worker._api = api
        try:
            await worker._dispatch(_Slots(worker.concurrency, None), set(), None)
        finally:
            await api.aclose()

    asyncio.run(main())
    assert asked == [calls.MAX_CLAIM_BATCH]
