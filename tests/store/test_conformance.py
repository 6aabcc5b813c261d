"""The store contract of otel_lightning/store/base.py, checked against every store in STORE_FACTORIES."""

from __future__ import annotations

import contextlib
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import pytest

from otel_lightning.exceptions import ConflictError, NotFoundError, StaleAttemptError, ValidationError
from otel_lightning.resources import PromptTemplate, SamplingParams, WorkflowConfig
from otel_lightning.spans.records import LogRecord, SpanEvent, SpanKind, SpanLink, SpanRecord, StatusCode
from otel_lightning.store.base import SpanQuery, Store
from otel_lightning.types import AttemptStatus, Claim, Outcome, RolloutFilter, RolloutStatus, Task

if TYPE_CHECKING:
    from conftest import FakeClock

SUCCEEDED = Outcome(AttemptStatus.SUCCEEDED, reward=0.75, span_count=3)
FAILED = Outcome(AttemptStatus.FAILED, error="agent raised ValueError")


def claim(store: Store, request_id: str, experiments: Sequence[str] = (), lease_s: float = 30.0) -> Claim:
    result = store.claim("worker-1", request_id, experiments, lease_s)
    assert result is not None
    return result


def make_span(
    trace: str, span: str, start: int, attempt: str | None = "a1", rollout: str | None = "r1"
) -> SpanRecord:
    return SpanRecord(
        trace_id=trace * 32,
        span_id=span * 16,
        parent_span_id=None if span == "1" else "1" * 16,
        name=f"span-{span}",
        kind=SpanKind.CLIENT,
        start_ns=start,
        end_ns=start + 10,
        attributes={"gen_ai.operation.name": "chat", "n": 1, "ratio": 0.5, "tags": ["a", "b"], "ok": True},
        events=(SpanEvent("gen_ai.evaluation.result", start + 5, {"gen_ai.evaluation.score.value": 1.0}),),
        links=(SpanLink("f" * 32, "e" * 16, {"why": "retry"}),),
        status_code=StatusCode.ERROR,
        status_message="boom — ünïcode",
        resource={"service.name": "agent"},
        scope_name="opentelemetry.instrumentation.openai.v1",
        scope_version="0.62.4",
        rollout_id=rollout,
        attempt_id=attempt,
        experiment="default",
    )


# --- Enqueue ---------------------------------------------------------------------------------------------


def test_enqueue_creates_queued_rollouts(store: Store, clock: FakeClock) -> None:
    rollouts = store.enqueue(
        [
            Task(input={"q": "2+2"}, experiment="math", max_attempts=2, timeout_s=9.5, metadata={"k": 1}),
            Task(input=[1, 2], rollout_id="mine", resource_version=3),
        ]
    )
    first, second = rollouts
    assert len(first.rollout_id) == 32 and int(first.rollout_id, 16) >= 0
    assert (first.experiment, first.input, first.status) == ("math", {"q": "2+2"}, RolloutStatus.QUEUED)
    assert (first.max_attempts, first.timeout_s, first.metadata) == (2, 9.5, {"k": 1})
    assert (first.attempt_count, first.attempt_id, first.created_ns) == (0, None, clock.now_ns)
    assert (second.rollout_id, second.resource_version) == ("mine", 3)
    assert store.get_rollout(first.rollout_id) == first
    assert store.get_rollout("mine") == second


def test_enqueue_is_idempotent_by_rollout_id(store: Store, clock: FakeClock) -> None:
    (original,) = store.enqueue([Task(input="first", rollout_id="r1")])
    clock.advance(1)
    again = store.enqueue([Task(input="second", rollout_id="r1"), Task(input="third", rollout_id="r1")])
    assert again == [original, original]
    assert len(store.list_rollouts(RolloutFilter())) == 1


def test_bad_input_in_a_batch_writes_nothing(store: Store) -> None:
    with pytest.raises(ValidationError):
        store.enqueue([Task(input={"ok": 1}, rollout_id="good"), Task(input={"bad": object()})])
    with pytest.raises(ValidationError):
        store.enqueue([Task(input=1), Task(input=1, metadata={"x": {1, 2}})])
    assert store.list_rollouts(RolloutFilter()) == []
    with pytest.raises(NotFoundError):
        store.get_rollout("good")


# --- Claim -----------------------------------------------------------------------------------------------


def test_claim_takes_the_oldest_queued_rollout(store: Store, clock: FakeClock) -> None:
    ids = [r.rollout_id for r in store.enqueue([Task(input=i) for i in range(3)])]
    clock.advance(1)
    c = claim(store, "req-1", lease_s=10)
    assert c.rollout.rollout_id == ids[0]
    assert c.rollout.status is RolloutStatus.RUNNING
    assert (c.rollout.attempt_id, c.rollout.attempt_count) == (c.attempt.attempt_id, 1)
    assert (c.attempt.sequence, c.attempt.status, c.attempt.worker_id) == (
        1,
        AttemptStatus.RUNNING,
        "worker-1",
    )
    assert c.attempt.started_ns == clock.now_ns
    assert c.attempt.lease_expires_ns == clock.now_ns + 10 * 10**9
    assert store.get_rollout(ids[0]) == c.rollout
    assert store.get_attempt(c.attempt.attempt_id) == c.attempt
    assert [claim(store, f"req-{i}").rollout.rollout_id for i in (2, 3)] == ids[1:]
    assert store.claim("worker-1", "req-4") is None


def test_claim_filters_by_experiment(store: Store) -> None:
    store.enqueue(
        [Task(input=1, experiment="a"), Task(input=2, experiment="b"), Task(input=3, experiment="c")]
    )
    assert claim(store, "r1", experiments=["b"]).rollout.experiment == "b"
    assert store.claim("w", "r2", experiments=["b"]) is None
    assert claim(store, "r3", experiments=["c", "a"]).rollout.experiment == "a"
    assert claim(store, "r4").rollout.experiment == "c"


def test_claim_from_several_experiments_takes_the_oldest_of_them(store: Store) -> None:
    names = ["x", "y", "z", "y", "x", "z", "other"]
    store.enqueue([Task(input=i, experiment=name) for i, name in enumerate(names)])
    got = [claim(store, f"r{i}", experiments=["z", "y", "x"]).rollout.input for i in range(6)]
    assert got == [0, 1, 2, 3, 4, 5]
    assert store.claim("w", "r6", experiments=["z", "y", "x"]) is None


def test_claim_is_idempotent_by_request_id(store: Store, clock: FakeClock) -> None:
    store.enqueue([Task(input=1), Task(input=2)])
    first = claim(store, "req-1")
    assert claim(store, "req-1") == first
    assert len(store.list_attempts(first.rollout.rollout_id)) == 1
    clock.advance(1)
    ended = store.complete(first.attempt.attempt_id, SUCCEEDED)
    # The retried claim answers with the same attempt in its current state, and never starts another.
    replay = claim(store, "req-1")
    assert replay.attempt == ended
    assert replay.rollout.status is RolloutStatus.SUCCEEDED
    assert store.list_rollouts(RolloutFilter(statuses=(RolloutStatus.QUEUED,)))[0].input == 2


def test_claim_records_the_resource_version(store: Store) -> None:
    store.enqueue([Task(input="unpinned-before")])
    assert claim(store, "r0").attempt.resource_version == 0
    store.publish("default", {"p": PromptTemplate("v1 {x}")})
    store.publish("default", {"p": PromptTemplate("v2 {x}")})
    store.enqueue([Task(input="pinned", resource_version=1), Task(input="latest")])
    pinned, latest = claim(store, "r1"), claim(store, "r2")
    assert (pinned.attempt.resource_version, pinned.rollout.resource_version) == (1, 1)
    assert (latest.attempt.resource_version, latest.rollout.resource_version) == (2, 2)
    store.publish("other", {"p": PromptTemplate("other")})
    assert store.get_rollout(latest.rollout.rollout_id).resource_version == 2


def test_claim_validates_its_arguments(store: Store) -> None:
    for bad in (0, -1, float("nan"), float("inf")):
        with pytest.raises(ValidationError):
            store.claim("w", "r", lease_s=bad)
    with pytest.raises(ValidationError):
        store.claim("w", "")


# --- Heartbeat, complete, expire -------------------------------------------------------------------------


def test_heartbeat_extends_the_lease(store: Store, clock: FakeClock) -> None:
    store.enqueue([Task(input=1)])
    c = claim(store, "r", lease_s=10)
    clock.advance(8)
    beat = store.heartbeat(c.attempt.attempt_id, lease_s=10)
    assert beat.lease_expires_ns == clock.now_ns + 10 * 10**9
    assert store.get_attempt(c.attempt.attempt_id) == beat
    clock.advance(8)  # past the first lease, within the extended one
    assert store.expire(clock.now_ns) == []
    assert store.get_attempt(c.attempt.attempt_id).status is AttemptStatus.RUNNING
    with pytest.raises(NotFoundError):
        store.heartbeat("no-such-attempt")


def test_complete_decides_the_rollout(store: Store, clock: FakeClock) -> None:
    store.enqueue([Task(input="good", rollout_id="good"), Task(input="bad", rollout_id="bad")])
    good, bad = claim(store, "r1"), claim(store, "r2")
    clock.advance(2)
    done = store.complete(good.attempt.attempt_id, SUCCEEDED)
    assert (done.status, done.reward, done.span_count, done.ended_ns) == (
        AttemptStatus.SUCCEEDED,
        0.75,
        3,
        clock.now_ns,
    )
    rollout = store.get_rollout("good")
    assert (rollout.status, rollout.reward, rollout.error) == (RolloutStatus.SUCCEEDED, 0.75, None)
    failed = store.complete(bad.attempt.attempt_id, FAILED)
    assert failed.error == "agent raised ValueError"
    rollout = store.get_rollout("bad")
    assert (rollout.status, rollout.error, rollout.attempt_count) == (
        RolloutStatus.FAILED,
        "agent raised ValueError",
        1,
    )
    # An agent's own failure is final: it is not retried.
    assert store.claim("w", "r3") is None
    with pytest.raises(NotFoundError):
        store.complete("no-such-attempt", SUCCEEDED)


def test_repeated_completion_is_idempotent(store: Store, clock: FakeClock) -> None:
    store.enqueue([Task(input=1)])
    c = claim(store, "r")
    done = store.complete(c.attempt.attempt_id, SUCCEEDED)
    rollout = store.get_rollout(c.rollout.rollout_id)
    clock.advance(5)
    assert store.complete(c.attempt.attempt_id, SUCCEEDED) == done
    with pytest.raises(StaleAttemptError):
        store.complete(c.attempt.attempt_id, FAILED)
    with pytest.raises(StaleAttemptError):
        store.heartbeat(c.attempt.attempt_id)
    assert store.get_rollout(c.rollout.rollout_id) == rollout


def test_claim_many_claims_in_order_until_the_queue_is_empty(store: Store) -> None:
    store.enqueue([Task(input=i) for i in range(3)])
    claims = store.claim_many("worker-1", ["b/0", "b/1", "b/2", "b/3"])
    assert [c.rollout.input for c in claims] == [0, 1, 2]
    assert all(c.attempt.status is AttemptStatus.RUNNING for c in claims)
    # Retried with the same request ids: the same attempts, and nothing more is claimed.
    store.enqueue([Task(input=3)])
    again = store.claim_many("worker-1", ["b/0", "b/1", "b/2"])
    assert [c.attempt.attempt_id for c in again] == [c.attempt.attempt_id for c in claims]
    assert store.list_rollouts(RolloutFilter(statuses=(RolloutStatus.QUEUED,)))[0].input == 3
    assert store.claim_many("worker-1", []) == []
    with pytest.raises(ValidationError):
        store.claim_many("worker-1", ["ok", ""])
    assert store.list_rollouts(RolloutFilter(statuses=(RolloutStatus.QUEUED,)))[0].input == 3


def test_complete_many_answers_each_item_on_its_own(store: Store, clock: FakeClock) -> None:
    store.enqueue([Task(input=i) for i in range(3)])
    first, second, third = (claim(store, f"r{i}") for i in range(3))
    store.cancel(second.rollout.rollout_id)
    clock.advance(1)
    results = store.complete_many(
        [
            (first.attempt.attempt_id, SUCCEEDED),
            (second.attempt.attempt_id, SUCCEEDED),  # cancelled meanwhile: stale
            ("no-such-attempt", SUCCEEDED),
            (third.attempt.attempt_id, FAILED),
        ]
    )
    assert [type(r).__name__ for r in results] == ["Attempt", "StaleAttemptError", "NotFoundError", "Attempt"]
    assert store.get_rollout(first.rollout.rollout_id).status is RolloutStatus.SUCCEEDED
    assert store.get_rollout(second.rollout.rollout_id).status is RolloutStatus.CANCELLED
    assert store.get_rollout(third.rollout.rollout_id).status is RolloutStatus.FAILED
    # A repeated batch is answered alike, and changes nothing.
    assert store.complete_many([(first.attempt.attempt_id, SUCCEEDED)]) == [results[0]]


def test_expire_requeues_until_max_attempts_then_fails(store: Store, clock: FakeClock) -> None:
    (rollout,) = store.enqueue([Task(input=1, max_attempts=2)])
    first = claim(store, "r1", lease_s=5)
    assert store.expire(clock.advance(4)) == []
    now = clock.advance(2)
    (ended,) = store.expire(now)
    assert (ended.attempt_id, ended.status, ended.error, ended.ended_ns) == (
        first.attempt.attempt_id,
        AttemptStatus.TIMED_OUT,
        "lease expired",
        now,
    )
    assert store.get_attempt(first.attempt.attempt_id) == ended
    requeued = store.get_rollout(rollout.rollout_id)
    assert (requeued.status, requeued.attempt_count) == (RolloutStatus.QUEUED, 1)
    assert store.expire(clock.advance(100)) == []  # nothing running: nothing to end

    second = claim(store, "r2", lease_s=5)
    assert (second.rollout.rollout_id, second.attempt.sequence) == (rollout.rollout_id, 2)
    (ended,) = store.expire(clock.advance(6))
    assert ended.attempt_id == second.attempt.attempt_id
    failed = store.get_rollout(rollout.rollout_id)
    assert (failed.status, failed.error) == (
        RolloutStatus.FAILED,
        "timed out after 2 attempts: lease expired",
    )
    assert store.claim("w", "r3") is None
    assert [a.sequence for a in store.list_attempts(rollout.rollout_id)] == [1, 2]


def test_expire_enforces_the_rollout_timeout(store: Store, clock: FakeClock) -> None:
    (rollout,) = store.enqueue([Task(input=1, timeout_s=5, max_attempts=1)])
    c = claim(store, "r", lease_s=60)
    clock.advance(4)
    store.heartbeat(c.attempt.attempt_id, lease_s=60)
    assert store.expire(clock.advance(0.5)) == []
    (ended,) = store.expire(clock.advance(1))
    assert ended.error == "attempt exceeded its timeout of 5 s"
    failed = store.get_rollout(rollout.rollout_id)
    assert (failed.status, failed.error) == (
        RolloutStatus.FAILED,
        "timed out after 1 attempts: attempt exceeded its timeout of 5 s",
    )


def test_requeued_rollout_keeps_its_place(store: Store, clock: FakeClock) -> None:
    old, new = store.enqueue([Task(input="old"), Task(input="new")])
    claim(store, "r1", lease_s=1)
    store.expire(clock.advance(2))
    assert claim(store, "r2").rollout.rollout_id == old.rollout_id
    assert claim(store, "r3").rollout.rollout_id == new.rollout_id


def test_timed_out_attempt_is_fenced(store: Store, clock: FakeClock) -> None:
    store.enqueue([Task(input=1)])
    stale = claim(store, "r1", lease_s=1)
    store.expire(clock.advance(2))
    current = claim(store, "r2", lease_s=30)
    before = store.get_rollout(current.rollout.rollout_id)
    with pytest.raises(StaleAttemptError):
        store.heartbeat(stale.attempt.attempt_id)
    for outcome in (SUCCEEDED, FAILED):
        with pytest.raises(StaleAttemptError):
            store.complete(stale.attempt.attempt_id, outcome)
    assert store.get_rollout(current.rollout.rollout_id) == before
    assert store.get_attempt(stale.attempt.attempt_id).status is AttemptStatus.TIMED_OUT
    assert store.complete(current.attempt.attempt_id, SUCCEEDED).status is AttemptStatus.SUCCEEDED


def test_cancel(store: Store, clock: FakeClock) -> None:
    queued, running, done = store.enqueue([Task(input=i) for i in range(3)])
    assert store.cancel(queued.rollout_id).status is RolloutStatus.CANCELLED
    c1, c2 = claim(store, "r1"), claim(store, "r2")
    assert (c1.rollout.rollout_id, c2.rollout.rollout_id) == (running.rollout_id, done.rollout_id)
    store.complete(c2.attempt.attempt_id, SUCCEEDED)
    clock.advance(1)
    cancelled = store.cancel(running.rollout_id)
    assert (cancelled.status, cancelled.updated_ns) == (RolloutStatus.CANCELLED, clock.now_ns)
    assert store.get_rollout(running.rollout_id) == cancelled
    attempt = store.get_attempt(c1.attempt.attempt_id)
    assert (attempt.status, attempt.ended_ns) == (AttemptStatus.CANCELLED, clock.now_ns)
    # The cancelled attempt's worker is fenced off; an ended rollout is left as it is.
    with pytest.raises(StaleAttemptError):
        store.heartbeat(c1.attempt.attempt_id)
    with pytest.raises(StaleAttemptError):
        store.complete(c1.attempt.attempt_id, SUCCEEDED)
    assert store.get_rollout(running.rollout_id) == cancelled
    finished = store.get_rollout(done.rollout_id)
    assert store.cancel(done.rollout_id) == finished
    assert store.claim("w", "r3") is None
    assert store.expire(clock.advance(3600)) == []
    with pytest.raises(NotFoundError):
        store.cancel("no-such-rollout")


# --- Ledger ----------------------------------------------------------------------------------------------


def test_list_rollouts_filters(store: Store) -> None:
    store.publish("a", {"s": SamplingParams(temperature=0.1)})
    rollouts = store.enqueue(
        [Task(input=i, experiment="a" if i % 2 else "b", rollout_id=f"r{i}") for i in range(6)]
    )
    claim(store, "c1", experiments=["a"])  # r1 runs with version 1
    ids = [r.rollout_id for r in rollouts]
    assert [r.rollout_id for r in store.list_rollouts(RolloutFilter())] == ids
    assert [r.rollout_id for r in store.list_rollouts(RolloutFilter(experiment="a"))] == ["r1", "r3", "r5"]
    running = store.list_rollouts(RolloutFilter(statuses=(RolloutStatus.RUNNING,)))
    assert [r.rollout_id for r in running] == ["r1"]
    both = RolloutFilter(statuses=(RolloutStatus.RUNNING, RolloutStatus.QUEUED), experiment="a")
    assert [r.rollout_id for r in store.list_rollouts(both)] == ["r1", "r3", "r5"]
    assert [r.rollout_id for r in store.list_rollouts(RolloutFilter(resource_version=1))] == ["r1"]
    picked = RolloutFilter(rollout_ids=("r4", "r0", "missing"))
    assert [r.rollout_id for r in store.list_rollouts(picked)] == ["r0", "r4"]
    page = RolloutFilter(limit=2, offset=3)
    assert [r.rollout_id for r in store.list_rollouts(page)] == ["r3", "r4"]


def test_unknown_records_are_not_found(store: Store) -> None:
    with pytest.raises(NotFoundError):
        store.get_rollout("nope")
    with pytest.raises(NotFoundError):
        store.get_attempt("nope")
    with pytest.raises(NotFoundError):
        store.list_attempts("nope")
    (rollout,) = store.enqueue([Task(input=1)])
    assert store.list_attempts(rollout.rollout_id) == []


# --- Resources -------------------------------------------------------------------------------------------


def test_publish_numbers_immutable_versions(store: Store, clock: FakeClock) -> None:
    v1 = store.publish("exp", {"p": PromptTemplate("one {x}")}, metadata={"by": "test"})
    clock.advance(1)
    v2 = store.publish("exp", {"p": PromptTemplate("two {x}"), "cfg": WorkflowConfig({"steps": 2})})
    assert (v1.version, v2.version) == (1, 2)
    assert (v1.metadata, v2.created_ns) == ({"by": "test"}, clock.now_ns)
    assert store.get_resources("exp", 1) == v1
    assert store.get_resources("exp") == v2
    assert store.get_resources("exp").prompt("p").template == "two {x}"
    assert store.list_versions("exp") == [v1, v2]
    assert store.publish("other", {}).version == 1  # numbered per experiment


def test_publish_compare_and_swap(store: Store) -> None:
    assert store.publish("exp", {"p": PromptTemplate("a")}, expected_version=0).version == 1
    store.publish("exp", {"p": PromptTemplate("b")}, expected_version=1)
    with pytest.raises(ConflictError) as info:
        store.publish("exp", {"p": PromptTemplate("c")}, expected_version=1)
    assert "1" in str(info.value) and "2" in str(info.value)
    assert [v.version for v in store.list_versions("exp")] == [1, 2]
    assert store.get_resources("exp").prompt("p").template == "b"


def test_resource_version_zero_and_unknown_versions(store: Store) -> None:
    empty = store.get_resources("fresh")
    assert (empty.experiment, empty.version, dict(empty.resources)) == ("fresh", 0, {})
    assert store.get_resources("fresh", 0).version == 0
    assert store.list_versions("fresh") == []
    with pytest.raises(NotFoundError):
        store.get_resources("fresh", 1)
    store.publish("fresh", {})
    with pytest.raises(NotFoundError):
        store.get_resources("fresh", 2)


# --- Spans and logs --------------------------------------------------------------------------------------


def test_add_spans_deduplicates_and_reads_back(store: Store) -> None:
    spans = [make_span("a", "1", 30), make_span("a", "3", 10), make_span("a", "2", 20)]
    assert store.add_spans(spans) == 3
    assert store.add_spans([spans[0], make_span("b", "1", 5, attempt="a2", rollout="r2")]) == 1
    assert store.add_spans([]) == 0
    got = store.get_spans(SpanQuery(attempt_id="a1"))
    assert got == sorted(spans, key=lambda s: s.start_ns)  # every field survives the round trip
    assert store.count_spans("a1") == 3
    assert store.count_spans("a2") == 1
    assert store.count_spans("none") == 0
    assert [s.span_id for s in store.get_spans(SpanQuery(rollout_id="r2"))] == ["1" * 16]
    assert [s.start_ns for s in store.get_spans(SpanQuery(trace_id="a" * 32))] == [10, 20, 30]
    assert [s.start_ns for s in store.get_spans(SpanQuery())] == [5, 10, 20, 30]
    assert len(store.get_spans(SpanQuery(attempt_id="a1", limit=2))) == 2
    assert store.get_spans(SpanQuery(attempt_id="a1", trace_id="b" * 32)) == []


def test_spans_outside_any_rollout_are_kept(store: Store) -> None:
    orphan = make_span("c", "1", 1, attempt=None, rollout=None)
    assert store.add_spans([orphan]) == 1
    assert store.get_spans(SpanQuery(trace_id="c" * 32)) == [orphan]


def test_add_logs_and_read_them_by_time(store: Store) -> None:
    def log(t: int, attempt: str | None, body: object) -> LogRecord:
        return LogRecord(
            time_ns=t,
            observed_ns=t + 1,
            trace_id="a" * 32,
            span_id="1" * 16,
            severity_number=9,
            severity_text="INFO",
            body=body,
            attributes={"gen_ai.system": "openai"},
            event_name="gen_ai.client.inference.operation.details",
            resource={"service.name": "agent"},
            scope_name="scope",
            rollout_id="r1" if attempt else None,
            attempt_id=attempt,
            experiment="default",
        )

    logs = [log(20, "a1", {"messages": [{"role": "user"}]}), log(10, "a1", "text"), log(30, None, None)]
    assert store.add_logs(logs) == 3
    assert store.add_logs(logs[:1]) == 1  # log records have no identity: a repeat is a new record
    assert store.add_logs([]) == 0
    got = store.get_logs(SpanQuery(attempt_id="a1"))
    assert [g.time_ns for g in got] == [10, 20, 20]
    assert got[0] == logs[1] and got[1] == logs[0]
    assert len(store.get_logs(SpanQuery(rollout_id="r1"))) == 3
    assert [g.body for g in store.get_logs(SpanQuery(trace_id="a" * 32, limit=10))][-1] is None
    assert [g.time_ns for g in store.get_logs(SpanQuery())] == [10, 20, 20, 30]


# --- Concurrency -----------------------------------------------------------------------------------------


def _run_threads(count: int, target: Callable[[int], None]) -> None:
    errors: list[BaseException] = []

    def guarded(i: int) -> None:
        try:
            target(i)
        except BaseException as exc:  # surfaced to the test below
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert not any(t.is_alive() for t in threads)


def test_concurrent_claims_take_each_rollout_once(concurrent_store: Store) -> None:
    store = concurrent_store
    store.enqueue([Task(input=i) for i in range(400)])
    claimed: list[list[str]] = [[] for _ in range(8)]

    def worker(i: int) -> None:
        n = 0
        while (c := store.claim(f"worker-{i}", f"w{i}-{n}")) is not None:
            claimed[i].append(c.rollout.rollout_id)
            store.get_rollout(c.rollout.rollout_id)  # reads interleave with the other threads' writes
            n += 1

    _run_threads(8, worker)
    counts = Counter(r for ids in claimed for r in ids)
    assert len(counts) == 400 and set(counts.values()) == {1}
    assert len(store.list_rollouts(RolloutFilter(statuses=(RolloutStatus.RUNNING,)))) == 400


def test_expiry_racing_completions_ends_each_attempt_once(concurrent_store: Store, clock: FakeClock) -> None:
    store = concurrent_store
    store.enqueue([Task(input=i, max_attempts=1) for i in range(120)])
    # Leases end 10 ms apart, so that expiry ends a few at a time while the completions run.
    attempts = [claim(store, f"c{i}", lease_s=1 + i / 100).attempt for i in range(120)]
    start = clock.now_ns
    completed: list[str] = []
    expired: list[str] = []

    def work(i: int) -> None:
        if i == 0:
            for j in range(121):
                expired.extend(a.attempt_id for a in store.expire(start + 10**9 + j * 10**7 + 5 * 10**6))
            return
        for attempt in attempts[i - 1 :: 3]:
            with contextlib.suppress(StaleAttemptError):  # expiry got there first
                completed.append(store.complete(attempt.attempt_id, SUCCEEDED).attempt_id)

    _run_threads(4, work)
    # Every attempt ended exactly once, by completion or by expiry, and its rollout agrees.
    assert sorted(completed + expired) == sorted(a.attempt_id for a in attempts)
    for attempt in attempts:
        rollout = store.get_rollout(attempt.rollout_id)
        expected = RolloutStatus.SUCCEEDED if attempt.attempt_id in completed else RolloutStatus.FAILED
        assert rollout.status is expected
