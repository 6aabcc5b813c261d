"""The worker: claim a rollout, fetch its resources, run the agent, flush its spans, report the outcome.

``Worker(agent, server=url, concurrency=N).run()`` runs N rollouts at a time in one process, as asyncio tasks
(an ``async def`` agent) or in threads (a plain function). Each attempt gets a root span and a rollout
context, so every span the agent makes (LLM calls through the openai instrumentation, tools, rewards) is
stamped with the rollout and attempt ids. While the agent runs, a heartbeat keeps the attempt's lease; if the
server says the attempt is no longer current (timed out, cancelled), the worker stops waiting for it and does
not report it. Before completing, the worker flushes the spans and reports how many it ended, so the server
knows when the trace is whole. The worker outlives server restarts: it retries with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import math
import os
import socket
import threading
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
from opentelemetry.trace import Status, StatusCode

from otel_lightning import semconv
from otel_lightning.client import calls
from otel_lightning.client.batching import BatchGroup
from otel_lightning.client.flush import FlushGroup
from otel_lightning.client.http import AsyncApiClient
from otel_lightning.config import ClientSettings
from otel_lightning.exceptions import (
    ConfigError,
    NotFoundError,
    OtelLightningError,
    OverloadedError,
    StaleAttemptError,
)
from otel_lightning.instrumentation.context import RolloutContext, rollout_scope
from otel_lightning.instrumentation.setup import Instrumentation, instrument
from otel_lightning.resources import ResourceVersion
from otel_lightning.types import Attempt, AttemptStatus, Claim, Outcome

logger = logging.getLogger(__name__)

T = TypeVar("T")

AgentFunction = Callable[[Any, ResourceVersion], "float | Awaitable[float | None] | None"]
"""``agent(task_input, resources) -> reward | None``, sync or async."""

_MAX_INPUT_ATTR = 64 * 1024
_BACKOFF_MAX_S = 5.0


@dataclass(frozen=True, slots=True)
class WorkerStats:
    """What a worker did."""

    succeeded: int
    failed: int
    abandoned: int
    """Attempts the server ended first (lease lost, cancelled): not reported."""


class _Slots:
    """The worker's free slots and counters (all on one event loop: no lock needed)."""

    def __init__(self, concurrency: int, max_rollouts: int | None) -> None:
        self.free = concurrency
        self.max_rollouts = max_rollouts
        self.started = 0
        self.succeeded = 0
        self.failed = 0
        self.abandoned = 0
        self.freed = asyncio.Event()
        """Set when a running attempt ends and gives its slot back."""

    def wanted(self) -> int:
        """How many rollouts to claim now: the free slots, within what is left of ``max_rollouts``."""
        if self.max_rollouts is None:
            return self.free
        return max(0, min(self.free, self.max_rollouts - self.started))

    def release(self, _: object = None) -> None:
        self.free += 1
        self.freed.set()


class Worker:
    """Runs an agent function over the rollouts a server hands out.

    Args:
        agent: ``agent(task_input, resources)`` returning a reward (float) or None; may be ``async``.
        server: base URL of the server (argument -> ``OTEL_LIGHTNING_SERVER`` -> default).
        concurrency: rollouts run at once in this process.
        experiments: claim only rollouts of these experiments (all when empty).
        worker_id: a name for this worker in the server's records (default: host-pid-random).
        lease_s: lease to ask for (server default when None); heartbeats renew it every third of it.
        claim_wait_s: how long one claim long-poll waits for work.
        instrumentation: an existing ``instrument()`` handle; by default ``instrument(server)`` is called.
        api_token: bearer token for a server that requires one.
    """

    def __init__(
        self,
        agent: AgentFunction,
        server: str | None = None,
        *,
        concurrency: int = 1,
        experiments: Sequence[str] = (),
        worker_id: str | None = None,
        lease_s: float | None = None,
        claim_wait_s: float = 10.0,
        instrumentation: Instrumentation | None = None,
        api_token: str | None = None,
    ) -> None:
        if not callable(agent):
            raise TypeError("agent must be callable as agent(task_input, resources)")
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.agent = agent
        self.settings = ClientSettings.resolve(server, api_token=api_token)
        self.concurrency = concurrency
        self.experiments = tuple(experiments)
        self.worker_id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.lease_s = lease_s
        self.claim_wait_s = claim_wait_s
        self._instrumentation = instrumentation
        self._is_async = inspect.iscoroutinefunction(agent)
        self._resources: dict[tuple[str, int], ResourceVersion] = {}
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_requested = threading.Event()

    def run(self, max_rollouts: int | None = None, idle_timeout_s: float | None = None) -> WorkerStats:
        """Work until ``stop()``, ``max_rollouts`` attempts, or ``idle_timeout_s`` without any work."""
        return asyncio.run(self.arun(max_rollouts, idle_timeout_s))

    def stop(self) -> None:
        """Ask the worker to finish its running rollouts and return; safe from any thread."""
        self._stop_requested.set()
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)

    async def arun(self, max_rollouts: int | None = None, idle_timeout_s: float | None = None) -> WorkerStats:
        """The asyncio form of :meth:`run`."""
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        if self._stop_requested.is_set():
            self._stop.set()
        instrumentation = self._instrumentation or instrument(
            self.settings.server_url, api_token=self.settings.api_token
        )
        if self._instrumentation is None and instrumentation.settings.server_url != self.settings.server_url:
            # instrument() is process-wide and keeps its first setup: the spans would go to another server
            # while the outcomes come here, and every trace would look incomplete.
            raise ConfigError(
                f"this process already exports spans to {instrumentation.settings.server_url}, but the "
                f"worker reports to {self.settings.server_url}: run workers of different servers in separate "
                "processes, or pass instrumentation= to say where spans go"
            )
        self._tracer = instrumentation.tracer("otel_lightning.worker")
        self._processor = instrumentation.rollout_processor
        self._flush = FlushGroup(instrumentation.force_flush)
        self._api = AsyncApiClient(self.settings)
        self._completions: BatchGroup[tuple[str, Outcome], Attempt] = BatchGroup(
            self._complete_batch, calls.MAX_COMPLETE_BATCH
        )
        slots = _Slots(self.concurrency, max_rollouts)
        running: set[asyncio.Task[None]] = set()
        try:
            await self._dispatch(slots, running, idle_timeout_s)
            if running:
                await asyncio.gather(*running)
        finally:
            await self._api.aclose()
        return WorkerStats(slots.succeeded, slots.failed, slots.abandoned)

    # --- claiming ------------------------------------------------------------------------------------------

    async def _dispatch(
        self, slots: _Slots, running: set[asyncio.Task[None]], idle_timeout_s: float | None
    ) -> None:
        """Claim as many rollouts as there are free slots, in one long-poll; start each in its own task."""
        assert self._stop is not None
        loop = asyncio.get_running_loop()
        idle_since = loop.time()
        while not self._stop.is_set():
            if slots.max_rollouts is not None and slots.started >= slots.max_rollouts:
                return
            wanted = slots.wanted()
            if wanted == 0:  # every slot is busy: wait for one to free up (or for stop)
                slots.freed.clear()
                await _first(slots.freed.wait(), self._stop.wait())
                continue
            claims = await self._claim(min(wanted, calls.MAX_CLAIM_BATCH))
            if not claims:
                if running:
                    idle_since = loop.time()
                elif idle_timeout_s is not None and loop.time() - idle_since >= idle_timeout_s:
                    return
                continue
            idle_since = loop.time()
            for claim in claims:
                slots.free -= 1
                slots.started += 1
                task = asyncio.create_task(self._run_guarded(claim, slots))
                running.add(task)
                task.add_done_callback(running.discard)
                task.add_done_callback(slots.release)

    async def _claim(self, count: int) -> list[Claim]:
        """One batch-claim long-poll; retried with the same request id (so never twice the claims) until
        answered."""
        request_id = uuid.uuid4().hex
        wait_s = self.claim_wait_s
        delay = 0.2
        assert self._stop is not None
        while not self._stop.is_set():
            call = calls.claim_batch(
                self.worker_id, request_id, count, self.experiments, wait_s, self.lease_s
            )
            try:
                return await self._api.call(call)
            except (httpx.TransportError, OverloadedError) as exc:
                logger.warning("claim failed (%s); retrying in %.1f s", exc, delay)
                await self._sleep(delay)
                delay = min(delay * 2, _BACKOFF_MAX_S)
                wait_s = 0.0  # a retried claim should answer at once with what the first one got
        return []

    async def _sleep(self, seconds: float) -> None:
        assert self._stop is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)

    async def _run_guarded(self, claim: Claim, slots: _Slots) -> None:
        """Run one attempt; a worker error (not the agent's) fails the attempt, not the whole worker."""
        try:
            await self._run_attempt(claim, slots)
        except Exception as exc:
            logger.exception("attempt %s could not run", claim.attempt.attempt_id)
            error = f"worker error: {type(exc).__name__}: {exc}"
            outcome = Outcome(status=AttemptStatus.FAILED, error=error, span_count=None)
            try:
                reported = await self._complete(claim.attempt.attempt_id, outcome)
            except OtelLightningError:
                logger.exception("attempt %s could not be reported", claim.attempt.attempt_id)
                reported = False
            if reported:
                slots.failed += 1
            else:
                slots.abandoned += 1

    async def _run_attempt(self, claim: Claim, slots: _Slots) -> None:
        attempt, rollout = claim.attempt, claim.rollout
        resources = await self._resources_for(attempt.experiment, attempt.resource_version)
        ctx = RolloutContext(
            rollout.rollout_id, attempt.attempt_id, attempt.experiment, attempt.resource_version
        )
        agent_task = asyncio.create_task(self._invoke(ctx, rollout.input, resources))
        lease_s = max((attempt.lease_expires_ns - attempt.started_ns) / 1e9, 0.3)
        heartbeat = asyncio.create_task(self._heartbeat(attempt.attempt_id, lease_s, agent_task))
        try:
            status, reward, error = await agent_task
        except asyncio.CancelledError:
            if not agent_task.cancelled():
                raise
            status, reward, error = None, None, None  # the heartbeat learnt the attempt is stale
        finally:
            heartbeat.cancel()
        await self._flush()
        span_count = self._processor.forget(attempt.attempt_id)
        if status is None:
            slots.abandoned += 1
            return
        outcome = Outcome(status=status, reward=reward, error=error, span_count=span_count)
        if await self._complete(attempt.attempt_id, outcome):
            if status is AttemptStatus.SUCCEEDED:
                slots.succeeded += 1
            else:
                slots.failed += 1
        else:
            slots.abandoned += 1

    async def _resources_for(self, experiment: str, version: int) -> ResourceVersion:
        key = (experiment, version)
        found = self._resources.get(key)
        if found is None:
            found = await self._retry_forever(
                lambda: self._api.call(calls.get_resources(experiment, version))
            )
            self._resources[key] = found
        return found

    async def _invoke(
        self, ctx: RolloutContext, task_input: Any, resources: ResourceVersion
    ) -> tuple[AttemptStatus, float | None, str | None]:
        attributes: dict[str, Any] = {
            semconv.ROLLOUT_ID: ctx.rollout_id,
            semconv.ATTEMPT_ID: ctx.attempt_id,
            semconv.EXPERIMENT: ctx.experiment,
            semconv.RESOURCE_VERSION: resources.version,
            semconv.ROLLOUT_INPUT: _truncated_json(task_input),
        }
        with (
            rollout_scope(ctx),
            self._tracer.start_as_current_span(
                semconv.ROLLOUT_SPAN,
                attributes=attributes,
                record_exception=False,
                set_status_on_exception=False,
            ) as span,
        ):
            try:
                if self._is_async:
                    result = await self.agent(task_input, resources)  # type: ignore[misc]
                else:
                    result = await asyncio.to_thread(self.agent, task_input, resources)
                    if inspect.isawaitable(result):
                        result = await result
                reward = _as_reward(result)
            except Exception as exc:
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
                logger.info("rollout %s failed: %s: %s", ctx.rollout_id, type(exc).__name__, exc)
                return AttemptStatus.FAILED, None, f"{type(exc).__name__}: {exc}"
            if reward is not None:
                span.set_attribute(semconv.ROLLOUT_FINAL_REWARD, reward)
            return AttemptStatus.SUCCEEDED, reward, None

    async def _heartbeat(self, attempt_id: str, lease_s: float, agent_task: asyncio.Task[Any]) -> None:
        while True:
            await asyncio.sleep(lease_s / 3)
            try:
                await self._api.call(calls.heartbeat(attempt_id, self.lease_s))
            except (StaleAttemptError, NotFoundError) as exc:
                logger.warning("attempt %s is no longer current (%s); abandoning it", attempt_id, exc)
                agent_task.cancel()
                return
            except (httpx.TransportError, OverloadedError) as exc:
                logger.warning("heartbeat for %s failed (%s); will retry", attempt_id, exc)

    async def _complete(self, attempt_id: str, outcome: Outcome) -> bool:
        """Report the outcome; False when the server had already ended the attempt.

        Completions that end while one batch request is in flight go together in the next one."""
        try:
            await self._completions((attempt_id, outcome))
        except StaleAttemptError as exc:
            logger.warning("completion of %s refused: %s", attempt_id, exc)
            return False
        return True

    async def _complete_batch(self, items: list[tuple[str, Outcome]]) -> list[Attempt | OtelLightningError]:
        return await self._retry_forever(lambda: self._api.call(calls.complete_batch(items)))

    async def _retry_forever(self, send: Callable[[], Awaitable[T]]) -> T:
        """Send until the server answers (it may be restarting); domain errors are raised."""
        delay = 0.2
        while True:
            try:
                return await send()
            except (httpx.TransportError, OverloadedError) as exc:
                logger.warning("server unreachable (%s); retrying in %.1f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, _BACKOFF_MAX_S)


async def _first(*waits: Awaitable[Any]) -> None:
    """Wait until the first of ``waits`` is done; cancel the rest."""
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()


def _as_reward(result: Any) -> float | None:
    if result is None:
        return None
    if isinstance(result, bool | int | float) and math.isfinite(float(result)):
        return float(result)
    raise TypeError(f"agent must return a finite number or None, not {result!r}")


def _truncated_json(value: Any) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        text = repr(value)
    return text[:_MAX_INPUT_ATTR]
