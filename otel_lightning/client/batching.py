"""Coalescing of concurrent requests into batches, at most one batch in flight.

Many rollouts end at about the same time in one worker, and each must report its outcome. One HTTP request
per report costs the worker's event loop more than the server's work (connection-pool bookkeeping, JSON,
parsing). :class:`BatchGroup` sends the first item at once; items that arrive while a batch is in flight wait
and go together in the next one. There is no timer: an idle worker pays no added latency, and a busy one
sends as many items per request as arrived during the previous request.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

I = TypeVar("I")  # noqa: E741 - item, as in the class's parameters
R = TypeVar("R")

SendBatch = Callable[[list[I]], Awaitable[Sequence[R | Exception]]]
"""``send(items)``: one answer per item, in order; an exception stands for that item's own error."""


class BatchGroup(Generic[I, R]):
    """Serves concurrent ``await group(item)`` calls with as few ``send(items)`` calls as it can.

    Args:
        send: sends one batch; answers one result per item, in order, where an exception is the error of
            that item alone. If ``send`` raises, every item of the batch gets that error.
        max_batch: most items in one batch; a larger backlog goes in successive batches.
    """

    def __init__(self, send: SendBatch[I, R], max_batch: int) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._send = send
        self._max_batch = max_batch
        self._pending: deque[tuple[I, asyncio.Future[R]]] = deque()
        self._sender: asyncio.Task[None] | None = None

    async def __call__(self, item: I) -> R:
        """Send ``item`` in the next batch; its result, or its error raised."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._sender is None:
            self._sender = asyncio.create_task(self._drain())
        # A caller cancelled here cancels only its own future: the batch goes on for the others.
        return await future

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch = self._take()
                if batch:
                    await self._send_one(batch)
        except BaseException:
            # Cancelled (the loop is shutting down): nobody will send what is left.
            for _, future in self._pending:
                future.cancel()
            self._pending.clear()
            raise
        finally:
            self._sender = None

    def _take(self) -> list[tuple[I, asyncio.Future[R]]]:
        batch: list[tuple[I, asyncio.Future[R]]] = []
        while self._pending and len(batch) < self._max_batch:
            item, future = self._pending.popleft()
            if not future.done():  # a caller that gave up before its item left withdraws it
                batch.append((item, future))
        return batch

    async def _send_one(self, batch: list[tuple[I, asyncio.Future[R]]]) -> None:
        try:
            results = await self._send([item for item, _ in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"a batch of {len(batch)} items got {len(results)} answers")
        except asyncio.CancelledError:
            for _, future in batch:
                future.cancel()
            raise
        except Exception as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)
