"""Coalescing of concurrent force-flushes.

Many rollouts end at about the same time in one worker; each must know its spans were exported before it
reports its outcome. A flush exports everything queued when it starts, so one flush that starts after a
request serves that request. :class:`FlushGroup` runs at most one flush at a time, and every request
made while one runs shares the single next flush: N concurrent requests cost at most two flushes, not N.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class FlushGroup:
    """Serves concurrent ``await group()`` calls with as few runs of a blocking ``flush()`` as is correct."""

    def __init__(self, flush: Callable[[], bool]) -> None:
        self._flush = flush
        self._running: asyncio.Task[bool] | None = None
        self._next: asyncio.Task[bool] | None = None

    async def __call__(self) -> bool:
        """Wait for a flush that started after this call; its result (True if everything was exported)."""
        if self._next is None:
            self._next = asyncio.create_task(self._after(self._running))
        # shield: one caller being cancelled must not cancel the flush the others wait for.
        return await asyncio.shield(self._next)

    async def _after(self, previous: asyncio.Task[bool] | None) -> bool:
        if previous is not None:
            await asyncio.wait([previous])
        self._running, self._next = asyncio.current_task(), None
        try:
            return await asyncio.to_thread(self._flush)
        finally:
            if self._running is asyncio.current_task():
                self._running = None
