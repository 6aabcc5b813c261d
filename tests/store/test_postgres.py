"""What only the PostgreSQL store promises: migrations in place and in turn, several stores (replicas) on one
database keeping the contract together, the change feed, and both ways of writing spans.

The store-agnostic contract runs against PostgreSQL in test_conformance.py (the "postgres" store)."""

from __future__ import annotations

import queue
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from otel_lightning.exceptions import ConfigError, ConflictError
from otel_lightning.resources import PromptTemplate
from otel_lightning.spans.records import SpanKind, SpanRecord
from otel_lightning.store.base import SpanQuery
from otel_lightning.store.open import open_store
from otel_lightning.store.rows import resources_json, rollout_to_row
from otel_lightning.store.sqlite import SQLiteStore
from otel_lightning.types import Claim, Rollout, RolloutFilter, RolloutStatus, Task
from tests.conftest import free_port
from tests.store.legacy_rows import V1_SPAN_COLUMNS, v1_span_row

if TYPE_CHECKING:
    from conftest import FakeClock

psycopg = pytest.importorskip("psycopg", reason="the postgres extra is not installed")
pytest.importorskip("psycopg_pool", reason="the postgres extra is not installed")

from otel_lightning.store import postgres_schema  # noqa: E402
from otel_lightning.store.postgres import PostgresStore  # noqa: E402


@pytest.fixture
def replicas(postgres_url: str, clock: FakeClock) -> Iterator[tuple[PostgresStore, PostgresStore]]:
    """Two stores on one database, as two server replicas hold them."""
    a = PostgresStore(postgres_url, clock=clock, pool_size=6)
    b = PostgresStore(postgres_url, clock=clock, pool_size=6)
    yield a, b
    a.close()
    b.close()


def run_threads(count: int, target: Callable[[int], None]) -> None:
    errors: list[BaseException] = []

    def guarded(i: int) -> None:
        try:
            target(i)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert not any(t.is_alive() for t in threads)


def span(trace: int, i: int, name: str = "step", attributes: dict[str, Any] | None = None) -> SpanRecord:
    return SpanRecord(
        trace_id=f"{trace:032x}",
        span_id=f"{i + 1:016x}",
        parent_span_id=None,
        name=name,
        kind=SpanKind.INTERNAL,
        start_ns=1_000 + i,
        end_ns=2_000 + i,
        attributes=attributes or {"i": i},
        rollout_id="r1",
        attempt_id="a1",
        experiment="default",
    )


# --- Migrations ------------------------------------------------------------------------------------------


def test_pg_upgrades_a_version_1_database_in_place(postgres_url: str) -> None:
    """A database written by the first schema (its data written as that code wrote it) is migrated when a
    store opens it, keeping its data."""
    old = Rollout("old", "exp", {"q": 1}, RolloutStatus.QUEUED, 5, 5, 3, 0, None)
    prompt = resources_json({"p": PromptTemplate("v1 {x}")})
    old_spans = [span(1, 0), replace(span(1, 1), resource={"service.name": "old"}, status_message="x")]
    with psycopg.connect(postgres_url) as conn:
        assert postgres_schema.migrate(conn, postgres_schema.MIGRATIONS[:1]) == 0
        with conn.transaction():
            conn.execute(postgres_schema.ROLLOUT_INSERT, (*rollout_to_row(old), None))
            conn.execute(postgres_schema.VERSION_INSERT, ("exp", 1, prompt, 7, "{}"))
        with conn.cursor() as cur, cur.copy(f"COPY spans ({', '.join(V1_SPAN_COLUMNS)}) FROM STDIN") as copy:
            for record in old_spans:
                copy.write_row(v1_span_row(record))
        conn.commit()
        assert postgres_schema.schema_version(conn) == 1
        assert conn.execute("SELECT to_regclass('rollouts_by_version')").fetchone() == (None,)

    with PostgresStore(postgres_url) as store:
        assert store.get_rollout("old") == old
        assert store.get_resources("exp").prompt("p").template == "v1 {x}"
        assert store.get_spans(SpanQuery(attempt_id="a1")) == old_spans  # read through the JSON columns
        new = span(1, 2, attributes={"new": True})
        assert store.add_spans([new, old_spans[0]]) == 1  # dedup holds across both kinds of rows
        assert store.get_spans(SpanQuery(attempt_id="a1")) == [*old_spans, new]
        claimed = store.claim("w", "req", ["exp"])
        assert claimed is not None and claimed.attempt.resource_version == 1

    with psycopg.connect(postgres_url) as conn:
        assert postgres_schema.schema_version(conn) == postgres_schema.SCHEMA_VERSION == 3
        assert conn.execute("SELECT to_regclass('rollouts_by_version')").fetchone() != (None,)
        versions = conn.execute("SELECT version FROM otel_lightning_schema ORDER BY version").fetchall()
        assert versions == [(1,), (2,), (3,)]


def test_pg_refuses_a_newer_schema(postgres_url: str) -> None:
    PostgresStore(postgres_url).close()
    with psycopg.connect(postgres_url) as conn:
        conn.execute(
            "INSERT INTO otel_lightning_schema VALUES (%s, 0)", (postgres_schema.SCHEMA_VERSION + 1,)
        )
    with pytest.raises(ConfigError, match="newer"):
        PostgresStore(postgres_url)


def test_pg_replicas_starting_together_migrate_once(postgres_url: str) -> None:
    stores: list[PostgresStore] = []
    run_threads(4, lambda i: stores.append(PostgresStore(postgres_url, pool_size=1)))
    for store in stores:
        store.close()
    with psycopg.connect(postgres_url) as conn:
        versions = conn.execute("SELECT version FROM otel_lightning_schema ORDER BY version").fetchall()
    assert versions == [(n,) for n in range(1, postgres_schema.SCHEMA_VERSION + 1)]


def test_pg_unreachable_server_is_a_config_error() -> None:
    start = time.monotonic()
    with pytest.raises(ConfigError, match=r"cannot use PostgreSQL database 127\.0\.0\.1"):
        PostgresStore(f"postgresql://postgres@127.0.0.1:{free_port()}/nothing")
    assert time.monotonic() - start < 10


def test_open_store_picks_the_backend(postgres_url: str, tmp_path: Path) -> None:
    for url in (postgres_url, postgres_url.replace("postgresql://", "postgres://", 1)):
        store = open_store(url, pool_size=2)
        assert isinstance(store, PostgresStore)
        store.close()
    store = open_store(str(tmp_path / "x.db"))
    assert isinstance(store, SQLiteStore)
    store.close()


# --- Replicas on one database ----------------------------------------------------------------------------


def test_pg_claims_are_idempotent_across_replicas(replicas: tuple[PostgresStore, PostgresStore]) -> None:
    a, b = replicas
    a.enqueue([Task(input=i) for i in range(40)])
    results: list[tuple[str, Claim | None]] = []
    lock = threading.Lock()

    def worker(i: int) -> None:
        # Every thread sends every request id, to either replica: each is a retry of the others.
        order = [f"req-{k}" for k in range(48)]
        random.Random(i).shuffle(order)
        for n, request_id in enumerate(order):
            got = (a if (i + n) % 2 else b).claim(f"w{i}", request_id)
            with lock:
                results.append((request_id, got))

    run_threads(8, worker)
    by_request: dict[str, set[str]] = {}
    for request_id, got in results:
        if got is not None:
            by_request.setdefault(request_id, set()).add(got.attempt.attempt_id)
    assert all(len(ids) == 1 for ids in by_request.values()), by_request
    rollouts = a.list_rollouts(RolloutFilter())
    assert len(by_request) == sum(r.status is RolloutStatus.RUNNING for r in rollouts)
    assert all(len(a.list_attempts(r.rollout_id)) == r.attempt_count <= 1 for r in rollouts)


def test_pg_publish_compare_and_swap_across_replicas(replicas: tuple[PostgresStore, PostgresStore]) -> None:
    a, b = replicas
    wins: list[int] = []
    conflicts = Counter[int]()

    def publisher(i: int) -> None:
        store = a if i % 2 else b
        while (latest := store.get_resources("exp").version) < 15:
            try:
                won = store.publish("exp", {"p": PromptTemplate(f"by {i}")}, expected_version=latest)
                wins.append(won.version)
            except ConflictError:
                conflicts[i] += 1

    run_threads(6, publisher)
    assert sorted(wins) == list(range(1, 16))  # every version won once, none twice
    assert [v.version for v in b.list_versions("exp")] == list(range(1, 16))
    assert a.publish("exp", {}).version == 16  # without an expected version, publishing never conflicts


def test_pg_expiry_from_two_replicas_ends_each_attempt_once(
    replicas: tuple[PostgresStore, PostgresStore], clock: FakeClock
) -> None:
    a, b = replicas
    a.enqueue([Task(input=i, max_attempts=2) for i in range(60)])
    attempts = [claim.attempt for i in range(60) if (claim := b.claim("w", f"c{i}", lease_s=1)) is not None]
    now = clock.advance(2)
    ended: list[str] = []

    def watchdog(i: int) -> None:
        for _ in range(5):
            ended.extend(x.attempt_id for x in (a if i % 2 else b).expire(now))

    run_threads(6, watchdog)
    assert sorted(ended) == sorted(x.attempt_id for x in attempts)
    for rollout in a.list_rollouts(RolloutFilter()):
        assert (rollout.status, rollout.attempt_count) == (RolloutStatus.QUEUED, 1)


def test_pg_change_feed_tells_one_replica_what_another_did(
    replicas: tuple[PostgresStore, PostgresStore],
) -> None:
    a, b = replicas
    heard: queue.Queue[str] = queue.Queue()
    stop = b.watch(heard.put)
    time.sleep(0.5)  # the feed's connection is listening

    def next_topic() -> str:
        return heard.get(timeout=5)

    (rollout,) = a.enqueue([Task(input=1)])
    assert {next_topic(), next_topic()} == {"queue", "rollouts"}
    assert a.claim("w", "nothing-for-this", ["other-experiment"]) is None  # rolled back: says nothing
    claimed = a.claim("w", "r1")
    assert claimed is not None and next_topic() == "rollouts"
    a.cancel(rollout.rollout_id)
    assert next_topic() == "rollouts"
    assert heard.empty()
    stop()
    a.enqueue([Task(input=2)])
    time.sleep(0.5)
    assert heard.empty()


# --- Spans -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("span_write", ["copy", "pipeline"])
def test_pg_span_writes_deduplicate(postgres_url: str, span_write: Any) -> None:
    with PostgresStore(postgres_url, span_write=span_write, pool_size=2) as store:
        first = [span(1, i) for i in range(5)]
        assert store.add_spans(first + first[:2]) == 5  # duplicates inside one batch, too
        assert store.add_spans([span(1, 3), span(1, 4), span(1, 5)]) == 1
        assert store.count_spans("a1") == 6
        assert store.get_spans(SpanQuery(attempt_id="a1"))[:5] == first


def test_pg_text_postgresql_cannot_hold_is_replaced_not_lost(postgres_url: str) -> None:
    with PostgresStore(postgres_url, pool_size=2) as store:
        odd = span(2, 0, name="nul\x00here", attributes={"lone": "\ud800!"})
        assert store.add_spans([odd, span(2, 1)]) == 2
        got = store.get_spans(SpanQuery(trace_id=odd.trace_id))
        # The span's message (bytea) keeps the NUL; only the text column it is also indexed by replaces it.
        assert [s.name for s in got] == ["nul\x00here", "step"]
        assert got[0].attributes == {"lone": "\ufffd!"}  # UTF-8 has no lone surrogates: replaced
        with store._db.transaction() as conn:
            column = conn.execute("SELECT name FROM spans ORDER BY span_id LIMIT 1").fetchone()
        assert column == ("nul\ufffdhere",)


def test_pg_overlapping_span_batches_from_two_replicas(replicas: tuple[PostgresStore, PostgresStore]) -> None:
    a, b = replicas
    every = [span(trace, i) for trace in range(6) for i in range(50)]
    new: list[int] = []

    def writer(i: int) -> None:
        # Overlapping batches in different orders: the writers must wait for each other, not deadlock.
        batch = random.Random(i).sample(every, 200)
        new.append((a if i % 2 else b).add_spans(batch))

    run_threads(8, writer)
    stored = a.get_spans(SpanQuery())
    assert len(stored) == len({(s.trace_id, s.span_id) for s in stored}) == sum(new)
