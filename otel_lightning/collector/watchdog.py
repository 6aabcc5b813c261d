"""The lease watchdog: on a timer, time out attempts whose lease or time limit has passed.

It runs as a task of the server's event loop, independent of requests, so a rollout whose worker died is
requeued (or failed after its last attempt) even when nobody calls the API.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import anyio.to_thread

from otel_lightning.collector.notify import Notifier, Topic
from otel_lightning.store.base import RolloutControl

logger = logging.getLogger(__name__)


class Watchdog:
    """Calls ``store.expire`` every ``interval_s`` seconds and wakes the long-polls it affects."""

    def __init__(self, store: RolloutControl, notifier: Notifier, interval_s: float) -> None:
        self._store = store
        self._notifier = notifier
        self._interval_s = interval_s
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="otel-lightning-watchdog")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def sweep(self) -> int:
        """Expire what is due now; returns how many attempts it ended."""
        ended = await anyio.to_thread.run_sync(self._store.expire, time.time_ns())
        if ended:
            for attempt in ended:
                logger.info(
                    "attempt %s of rollout %s timed out: %s",
                    attempt.attempt_id,
                    attempt.rollout_id,
                    attempt.error,
                )
            self._notifier.notify(Topic.QUEUE, Topic.ROLLOUTS)
        return len(ended)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                await self.sweep()
            except Exception:  # a failed sweep is retried at the next tick
                logger.exception("lease watchdog sweep failed")
