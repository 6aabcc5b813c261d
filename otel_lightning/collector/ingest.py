"""The ingest queue: a bounded buffer of decoded spans and logs, written by one thread with group commit.

Each OTLP request hands its records to :meth:`IngestQueue.put` and awaits the result: the answer is sent only
after the records are committed. The writer thread takes everything that is waiting (up to
``max_group_records``) and writes it in one transaction per signal, so many concurrent requests share one
commit. When more than ``max_pending`` records are waiting, ``put`` raises OverloadedError at once (the OTLP
route answers 503 + Retry-After, which every exporter retries), so memory stays bounded under any load.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from otel_lightning.exceptions import OverloadedError
from otel_lightning.spans.encoded import EncodedSpan
from otel_lightning.spans.records import LogRecord
from otel_lightning.store.base import SpanStore

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class _Job:
    spans: Sequence[EncodedSpan]
    logs: Sequence[LogRecord]
    future: asyncio.Future[None]
    loop: asyncio.AbstractEventLoop

    @property
    def size(self) -> int:
        return len(self.spans) + len(self.logs)


_STOP = object()


class IngestQueue:
    """Bounded, group-committing writer of spans and logs into a store."""

    def __init__(self, store: SpanStore, max_pending: int = 200_000, max_group_records: int = 20_000) -> None:
        self._store = store
        self._max_pending = max_pending
        self._max_group = max_group_records
        self._jobs: queue.SimpleQueue[_Job | object] = queue.SimpleQueue()
        self._pending = 0
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.spans_written = 0
        """Spans committed so far (new or duplicate)."""

    @property
    def pending(self) -> int:
        """Records accepted but not yet committed."""
        return self._pending

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="otel-lightning-ingest", daemon=True)
            self._thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Write what is queued, then stop the writer thread."""
        if self._thread is not None:
            self._jobs.put(_STOP)
            self._thread.join(timeout_s)
            self._thread = None

    async def put(self, spans: Sequence[EncodedSpan] = (), logs: Sequence[LogRecord] = ()) -> None:
        """Queue records and return once they are committed; OverloadedError if the queue is full."""
        size = len(spans) + len(logs)
        if size == 0:
            return
        with self._lock:
            # A single request larger than the whole queue is still taken when the queue is empty.
            if self._pending and self._pending + size > self._max_pending:
                raise OverloadedError(f"ingest queue full ({self._pending} records waiting); retry later")
            self._pending += size
        loop = asyncio.get_running_loop()
        job = _Job(spans, logs, loop.create_future(), loop)
        self._jobs.put(job)
        await job.future

    def _run(self) -> None:
        while True:
            first = self._jobs.get()
            if first is _STOP:
                return
            assert isinstance(first, _Job)
            group = [first]
            size = first.size
            stop_after = False
            while size < self._max_group:
                try:
                    job = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if job is _STOP:
                    stop_after = True
                    break
                assert isinstance(job, _Job)
                group.append(job)
                size += job.size
            self._write(group, size)
            if stop_after:
                return

    def _write(self, group: list[_Job], size: int) -> None:
        error = self._store_group(group)
        errors = [error] * len(group)
        if error is not None and len(group) > 1:
            # One bad request must not fail the others it was grouped with: write each on its own, so that
            # only the requests that fail alone are refused.
            errors = [self._store_group([job]) for job in group]
        with self._lock:
            self._pending -= size
        for job, job_error in zip(group, errors, strict=True):
            job.loop.call_soon_threadsafe(_resolve, job.future, job_error)

    def _store_group(self, group: list[_Job]) -> BaseException | None:
        """Write the group's records in one transaction per signal; the error to answer with, if any."""
        spans = [s for job in group for s in job.spans]
        logs = [lg for job in group for lg in job.logs]
        try:
            if spans:
                self._store.add_encoded_spans(spans)
                self.spans_written += len(spans)
            if logs:
                self._store.add_logs(logs)
        except Exception as exc:  # the requests get 503 and their exporters retry
            logger.exception("writing %d spans and %d logs failed", len(spans), len(logs))
            return OverloadedError(f"storage error: {type(exc).__name__}; retry later")
        return None


def _resolve(future: asyncio.Future[None], error: BaseException | None) -> None:
    if future.done():  # the request was cancelled (client went away); the records are written anyway
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)
