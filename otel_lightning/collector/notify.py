"""Wake-ups for long-polls: a claim waits for work, a wait for rollouts to end.

Writers call :meth:`Notifier.notify` after a change is committed; long-polls take a :meth:`Notifier.ticket`
*before* they look at the store and then wait on it, so a change between the look and the wait is never
missed. Changes that other server replicas commit arrive through the store's change feed where it has one
(PostgreSQL LISTEN/NOTIFY: :func:`forward_changes`); waiters also wake every ``recheck_s``, as the fallback
for a feed that missed something.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from otel_lightning.store.base import Store


class Topic(StrEnum):
    """What changed."""

    QUEUE = "queue"
    """A rollout became claimable (enqueued, requeued)."""
    ROLLOUTS = "rollouts"
    """A rollout changed status (claimed, ended, cancelled)."""


class Notifier:
    """In-process change notification, one generation counter per topic. Use from the event loop only."""

    def __init__(self, recheck_s: float = 1.0) -> None:
        self.recheck_s = recheck_s
        self._events: dict[Topic, asyncio.Event] = {}

    def ticket(self, topic: Topic) -> asyncio.Event:
        """The event that the next change of ``topic`` sets."""
        event = self._events.get(topic)
        if event is None:
            event = self._events[topic] = asyncio.Event()
        return event

    def notify(self, *topics: Topic) -> None:
        """Wake every waiter on the topics."""
        for topic in topics:
            event = self._events.pop(topic, None)
            if event is not None:
                event.set()

    async def wait(self, ticket: asyncio.Event, timeout_s: float) -> None:
        """Wait until the ticket's topic changes, ``timeout_s`` passes, or the recheck interval passes."""
        if timeout_s <= 0:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ticket.wait(), min(timeout_s, self.recheck_s))


def forward_changes(store: Store, notifier: Notifier) -> Callable[[], None]:
    """Wake ``notifier``'s waiters whenever ``store`` reports a committed change, from any replica.

    Uses the store's ``watch(callback) -> stop`` change feed (its callback runs on another thread; SQLite's
    is a no-op: one server per database). Call from the event loop; returns the function that stops
    forwarding.
    """
    loop = asyncio.get_running_loop()

    def changed(topic: str) -> None:
        try:
            known = Topic(topic)
        except ValueError:  # a topic of a newer replica: the periodic recheck covers it
            return
        with contextlib.suppress(RuntimeError):  # the loop has closed while the feed was stopping
            loop.call_soon_threadsafe(notifier.notify, known)

    return store.watch(changed)
