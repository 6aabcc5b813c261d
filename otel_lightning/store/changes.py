"""A change feed over PostgreSQL LISTEN/NOTIFY: what other server replicas changed, as topics.

Every write of the PostgreSQL store that matters to a long-poll sends ``NOTIFY otel_lightning, '<topic>'``
in its own transaction, so the notification goes out exactly when the change is committed. A
:class:`ChangeFeed` holds one connection that LISTENs, on a thread of its own, and calls its subscribers
with each topic. The feed is a wake-up hint, not a log: after a lost connection it reconnects and calls every
subscriber with every topic, since changes may have been missed meanwhile; waiters also recheck on a timer.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

logger = logging.getLogger(__name__)

Subscriber = Callable[[str], None]
"""Called with a topic name, on the feed's thread; it must return quickly and not raise."""

_POLL_S = 0.25
"""How often the listening thread looks up from waiting to see whether it should stop."""


class ChangeFeed:
    """Subscribers to a NOTIFY channel, served by one listening connection while there is any.

    Args:
        connect: Opens a new autocommit psycopg connection.
        channel: The channel to LISTEN on.
        topics: Every topic, sent to each subscriber after a reconnection.
    """

    def __init__(self, connect: Callable[[], Any], channel: str, topics: Sequence[str]) -> None:
        self._connect = connect
        self._channel = channel
        self._topics = tuple(topics)
        self._lock = threading.Lock()
        self._subscribers: dict[int, Subscriber] = {}
        self._next_key = 0
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call ``callback(topic)`` on every notification until the returned function is called."""
        with self._lock:
            key = self._next_key
            self._next_key += 1
            self._subscribers[key] = callback
            if self._thread is None:
                self._stopping = threading.Event()
                self._thread = threading.Thread(
                    target=self._run, args=(self._stopping,), name="otel-lightning-changes", daemon=True
                )
                self._thread.start()

        def unsubscribe() -> None:
            with self._lock:
                self._subscribers.pop(key, None)
                thread = self._thread if not self._subscribers else None
                if thread is not None:
                    self._stopping.set()
                    self._thread = None
            if thread is not None and thread is not threading.current_thread():
                thread.join()

        return unsubscribe

    def close(self) -> None:
        """Drop every subscriber and stop listening; safe to call twice."""
        with self._lock:
            self._subscribers.clear()
            thread, self._thread = self._thread, None
            self._stopping.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _publish(self, topic: str) -> None:
        with self._lock:
            subscribers = list(self._subscribers.values())
        for callback in subscribers:
            try:
                callback(topic)
            except Exception:  # one subscriber's failure must not stop the feed for the others
                logger.exception("change feed subscriber failed on topic %s", topic)

    def _run(self, stopping: threading.Event) -> None:
        delay = 0.1
        reconnected = False
        while not stopping.is_set():
            try:
                conn = self._connect()
            except Exception as exc:
                logger.warning("change feed cannot connect (%s); retrying in %.1f s", exc, delay)
                stopping.wait(delay)
                delay = min(delay * 2, 5.0)
                continue
            try:
                conn.execute(f"LISTEN {self._channel}")
                delay = 0.1
                if reconnected:  # changes made while we were away were not heard: wake everyone
                    for topic in self._topics:
                        self._publish(topic)
                reconnected = True
                while not stopping.is_set():
                    for note in conn.notifies(timeout=_POLL_S):
                        self._publish(note.payload)
            except Exception as exc:
                if not stopping.is_set():
                    logger.warning("change feed connection lost (%s); reconnecting", exc)
            finally:
                conn.close()
