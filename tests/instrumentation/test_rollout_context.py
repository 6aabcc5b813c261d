"""Rollout context: stamping, concurrency (asyncio tasks and threads), baggage across process boundaries."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate

from otel_lightning import semconv
from otel_lightning.instrumentation.context import (
    RolloutContext,
    RolloutSpanProcessor,
    current_rollout,
    rollout_scope,
)


def _index(span: Any) -> int:
    return int(span.name.rsplit("-", 1)[1])


def _assert_stamped_with_own_rollout(spans: Any) -> None:
    for span in spans:
        i = _index(span)
        assert span.attributes[semconv.ROLLOUT_ID] == f"ro-{i}", span.name
        assert span.attributes[semconv.ATTEMPT_ID] == f"at-{i}", span.name
        assert span.attributes[semconv.EXPERIMENT] == f"exp-{i % 3}", span.name
        assert span.attributes[semconv.RESOURCE_VERSION] == i, span.name


def test_concurrent_asyncio_rollouts_each_stamp_their_own_ids(tracing: Any) -> None:
    tracer = tracing.tracer()
    rollouts, steps = 50, 5

    async def child(i: int) -> None:
        await asyncio.sleep(0)
        tracer.start_span(f"child-{i}").end()

    async def rollout(i: int) -> None:
        ctx = RolloutContext(f"ro-{i}", f"at-{i}", f"exp-{i % 3}", resource_version=i)
        with rollout_scope(ctx), tracer.start_as_current_span(f"root-{i}"):
            for _ in range(steps):
                await asyncio.sleep(0)  # let the other rollouts run in between
                with tracer.start_as_current_span(f"step-{i}"):
                    await asyncio.sleep(0)
            await asyncio.create_task(child(i))  # a task created inside inherits the rollout
            assert current_rollout() == ctx
        assert current_rollout() is None

    async def main() -> None:
        await asyncio.gather(*(rollout(i) for i in range(rollouts)))

    asyncio.run(main())
    spans = tracing.exporter.get_finished_spans()
    assert len(spans) == rollouts * (steps + 2)
    _assert_stamped_with_own_rollout(spans)
    for i in range(rollouts):
        assert tracing.rollout.ended_spans(f"at-{i}") == steps + 2


def test_concurrent_threads_each_stamp_their_own_ids(tracing: Any) -> None:
    tracer = tracing.tracer()
    threads, rollouts_per_thread, spans_per_rollout = 16, 3, 200
    start = threading.Barrier(threads)
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            start.wait()
            for r in range(rollouts_per_thread):
                i = t * rollouts_per_thread + r
                with rollout_scope(RolloutContext(f"ro-{i}", f"at-{i}", f"exp-{i % 3}", resource_version=i)):
                    for _ in range(spans_per_rollout):
                        tracer.start_span(f"span-{i}").end()
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(30)
    assert not errors
    spans = tracing.exporter.get_finished_spans()
    assert len(spans) == threads * rollouts_per_thread * spans_per_rollout
    _assert_stamped_with_own_rollout(spans)
    for i in range(threads * rollouts_per_thread):
        assert tracing.rollout.ended_spans(f"at-{i}") == spans_per_rollout


def test_forget_pops_the_count(tracing: Any) -> None:
    tracer = tracing.tracer()
    with rollout_scope(RolloutContext("ro", "at")):
        for _ in range(3):
            tracer.start_span("s").end()
        open_span = tracer.start_span("still-open")
    assert tracing.rollout.ended_spans("at") == 3
    open_span.end()  # ended outside the scope: still counted under its attempt
    assert tracing.rollout.forget("at") == 4
    assert tracing.rollout.ended_spans("at") == 0
    assert tracing.rollout.forget("at") == 0
    assert tracing.rollout.forget("never-seen") == 0


def test_spans_outside_a_rollout_are_not_stamped(tracing: Any) -> None:
    tracing.tracer().start_span("free").end()
    (span,) = tracing.exporter.get_finished_spans()
    assert semconv.ROLLOUT_ID not in span.attributes
    assert current_rollout() is None


def test_attributes_already_set_are_kept(tracing: Any) -> None:
    with rollout_scope(RolloutContext("ro", "at", "exp")):
        tracing.tracer().start_span("s", attributes={semconv.ATTEMPT_ID: "explicit"}).end()
    (span,) = tracing.exporter.get_finished_spans()
    assert span.attributes[semconv.ATTEMPT_ID] == "explicit"
    assert span.attributes[semconv.ROLLOUT_ID] == "ro"
    assert semconv.RESOURCE_VERSION not in span.attributes  # unknown: not stamped
    assert tracing.rollout.ended_spans("explicit") == 1


def test_nested_scopes_restore_the_outer_rollout() -> None:
    outer, inner = RolloutContext("ro-a", "at-a"), RolloutContext("ro-b", "at-b", "exp-b")
    with rollout_scope(outer):
        with rollout_scope(inner):
            assert current_rollout() == inner
            assert current_rollout(otel_context.get_current()) == inner
        assert current_rollout() == outer
        assert current_rollout(otel_context.get_current()) == outer
    assert current_rollout() is None
    assert current_rollout(otel_context.get_current()) is None


def test_baggage_carries_the_rollout_to_a_tool_server(tracing: Any) -> None:
    """Inject as an instrumented HTTP client would; extract in a fresh context as a tool server would."""
    tracer = tracing.tracer()
    carrier: dict[str, str] = {}
    with (
        rollout_scope(RolloutContext("ro-7", "at-7", "exp tool/é", resource_version=4)),
        tracer.start_as_current_span("agent-7") as agent_span,
    ):
        propagate.inject(carrier)
    assert "baggage" in carrier and "traceparent" in carrier
    seen: dict[str, Any] = {}

    def tool_server() -> None:  # a new thread starts with an empty context, like another process
        seen["before"] = current_rollout()
        incoming = propagate.extract(carrier)
        seen["from_context"] = current_rollout(incoming)
        tracer.start_span("tool-explicit-7", context=incoming).end()
        token = otel_context.attach(incoming)
        try:
            seen["current"] = current_rollout()
            with tracer.start_as_current_span("tool-attached-7"):
                pass
        finally:
            otel_context.detach(token)

    server = threading.Thread(target=tool_server)
    server.start()
    server.join(10)
    expected = RolloutContext("ro-7", "at-7", "exp tool/é")  # the resource version stays in-process
    assert seen == {"before": None, "from_context": expected, "current": expected}
    tool_spans = [s for s in tracing.exporter.get_finished_spans() if s.name.startswith("tool")]
    assert len(tool_spans) == 2
    for span in tool_spans:
        assert span.attributes[semconv.ROLLOUT_ID] == "ro-7"
        assert span.attributes[semconv.ATTEMPT_ID] == "at-7"
        assert span.attributes[semconv.EXPERIMENT] == "exp tool/é"
        assert span.context.trace_id == agent_span.get_span_context().trace_id


def test_thread_pools_need_a_copied_context() -> None:
    with rollout_scope(RolloutContext("ro", "at")), ThreadPoolExecutor(1) as pool:
        copied = pool.submit(contextvars.copy_context().run, current_rollout).result()
        plain = pool.submit(current_rollout).result()
    assert copied == RolloutContext("ro", "at")
    assert plain is None


def test_processor_never_raises_on_odd_spans() -> None:
    processor = RolloutSpanProcessor()
    with rollout_scope(RolloutContext("ro", "at")):
        processor.on_start(object())  # type: ignore[arg-type]
    processor.on_end(object())  # type: ignore[arg-type]
    assert processor.force_flush() is True
    processor.shutdown()
