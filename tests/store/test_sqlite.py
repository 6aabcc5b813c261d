"""What only the SQLite store promises: durability across restarts, schema versions, WAL, row encodings."""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING

import pytest

from otel_lightning.exceptions import ConfigError, OtelLightningError, OverloadedError, ValidationError
from otel_lightning.resources import PromptTemplate
from otel_lightning.spans.records import LogRecord, SpanKind, SpanRecord
from otel_lightning.store import rows
from otel_lightning.store.base import SpanQuery
from otel_lightning.store.rows import dumps, dumps_strict, loads, span_from_row, spans_to_rows
from otel_lightning.store.sqlite import SQLiteStore
from otel_lightning.store.sqlite_schema import MIGRATIONS, PAGE_SIZE, SCHEMA_VERSION, migrate, schema_version
from otel_lightning.types import AttemptStatus, Outcome, RolloutFilter, RolloutStatus, Task
from tests.store.legacy_rows import V1_SPAN_COLUMNS, v1_span_row

if TYPE_CHECKING:
    from conftest import FakeClock


def span(span_id: str, attempt_id: str) -> SpanRecord:
    return SpanRecord(
        trace_id="a" * 32,
        span_id=span_id * 16,
        parent_span_id=None,
        name="openai.chat",
        kind=SpanKind.CLIENT,
        start_ns=int(span_id, 16),
        end_ns=int(span_id, 16) + 1,
        attributes={"gen_ai.operation.name": "chat"},
        attempt_id=attempt_id,
    )


def test_reopen_keeps_everything_and_the_queue_resumes(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "store.db"
    store = SQLiteStore(path, clock=clock)
    store.publish("default", {"p": PromptTemplate("v1")})
    store.publish("default", {"p": PromptTemplate("v2")})
    store.enqueue([Task(input=i, rollout_id=f"r{i}") for i in range(4)])
    running = store.claim("w", "req-1", lease_s=60)
    done = store.claim("w", "req-2", lease_s=60)
    assert running is not None and done is not None
    store.complete(done.attempt.attempt_id, Outcome(AttemptStatus.SUCCEEDED, reward=1.0))
    store.add_spans([span("1", running.attempt.attempt_id), span("2", running.attempt.attempt_id)])
    store.add_logs([LogRecord(time_ns=1, observed_ns=2, trace_id=None, span_id=None, body="hello")])
    rollouts = store.list_rollouts(RolloutFilter())
    versions = store.list_versions("default")
    spans = store.get_spans(SpanQuery())
    logs = store.get_logs(SpanQuery())
    store.close()

    clock.advance(10)
    reopened = SQLiteStore(path, clock=clock)
    assert reopened.list_rollouts(RolloutFilter()) == rollouts
    assert reopened.list_versions("default") == versions
    assert reopened.get_spans(SpanQuery()) == spans
    assert reopened.get_logs(SpanQuery()) == logs
    assert reopened.get_attempt(running.attempt.attempt_id) == running.attempt
    # The queue goes on where it stopped: the running attempt lives on, claims continue in order, and a
    # retried claim from before the restart still answers with its attempt.
    assert reopened.heartbeat(running.attempt.attempt_id, lease_s=60).status is AttemptStatus.RUNNING
    assert reopened.claim("w", "req-1") == reopened.claim("w", "req-1")
    next_claim = reopened.claim("w", "req-3")
    assert next_claim is not None and next_claim.rollout.rollout_id == "r2"
    assert reopened.add_spans([span("1", running.attempt.attempt_id)]) == 0
    reopened.close()


def test_new_database_gets_the_current_schema_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    SQLiteStore(path).close()
    with sqlite3.connect(path) as conn:
        assert schema_version(conn) == SCHEMA_VERSION == len(MIGRATIONS)
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"rollouts", "attempts", "claims", "resource_versions", "spans", "logs"} <= tables
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA page_size").fetchone()[0] == PAGE_SIZE


def test_the_wal_is_copied_back_in_the_background(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    store = SQLiteStore(path)
    size_before = path.stat().st_size
    store.add_spans([span(f"{i:x}", "a1") for i in range(1, 200)])
    deadline = time.monotonic() + 10
    while path.stat().st_size == size_before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert path.stat().st_size > size_before  # checkpointed while the store stays open
    assert any(t.name == f"sqlite-checkpoint {path}" for t in threading.enumerate())
    store.close()
    assert not any(t.name == f"sqlite-checkpoint {path}" for t in threading.enumerate())


def test_migrations_run_in_order_from_an_older_version(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "db", isolation_level=None)
    assert migrate(conn) == 0
    conn.execute("INSERT INTO claims VALUES ('kept', 'x', 1)")  # foreign keys are off on this connection
    newer = (*MIGRATIONS, ("CREATE TABLE extra (x INTEGER)", "INSERT INTO extra VALUES (7)"))
    assert migrate(conn, newer) == SCHEMA_VERSION
    assert schema_version(conn) == SCHEMA_VERSION + 1
    assert conn.execute("SELECT x FROM extra").fetchone() == (7,)
    assert conn.execute("SELECT request_id FROM claims").fetchone() == ("kept",)
    assert migrate(conn, newer) == SCHEMA_VERSION + 1  # nothing left to do


def test_a_version_1_database_is_upgraded_in_place(tmp_path: Path) -> None:
    """Spans written by schema 1 (JSON columns) are still read after the upgrade, beside new ones."""
    path = tmp_path / "v1.db"
    old = [span("1", "a1"), replace(span("2", "a1"), resource={"service.name": "old"}, status_message="x")]
    with sqlite3.connect(path, isolation_level=None) as conn:
        assert migrate(conn, MIGRATIONS[:1]) == 0
        conn.executemany(
            f"INSERT INTO spans ({', '.join(V1_SPAN_COLUMNS)}) VALUES ({', '.join('?' * 18)})",
            [v1_span_row(s) for s in old],
        )
    store = SQLiteStore(path)
    assert store.get_spans(SpanQuery(attempt_id="a1")) == old
    new = span("3", "a1")
    assert store.add_spans([new, old[0]]) == 1  # dedup holds across both kinds of rows
    assert store.get_spans(SpanQuery(attempt_id="a1")) == [*old, new]
    store.close()
    with sqlite3.connect(path) as conn:
        assert schema_version(conn) == SCHEMA_VERSION


def test_a_failing_migration_changes_nothing(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "db", isolation_level=None)
    broken = (*MIGRATIONS, ("CREATE TABLE half (x INTEGER)", "THIS IS NOT SQL"))
    with pytest.raises(sqlite3.OperationalError):
        migrate(conn, broken)
    assert schema_version(conn) == 0
    assert conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone() == (0,)


def test_a_newer_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(ConfigError, match=f"schema version {SCHEMA_VERSION + 1}, newer"):
        SQLiteStore(path)
    with sqlite3.connect(path) as conn:
        assert schema_version(conn) == SCHEMA_VERSION + 1
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # left as it was


def test_an_unusable_path_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="missing"):
        SQLiteStore(tmp_path / "missing" / "store.db")
    not_a_db = tmp_path / "text.db"
    not_a_db.write_text("this is not a database, just some text long enough to fill a header" * 10)
    with pytest.raises(ConfigError):
        SQLiteStore(not_a_db)


def test_reads_go_on_while_another_process_writes(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    store = SQLiteStore(path)
    (rollout,) = store.enqueue([Task(input=1)])
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("PRAGMA busy_timeout = 0")
    other.execute("BEGIN IMMEDIATE")  # holds the write lock, as a second server process might
    other.execute("UPDATE rollouts SET input = '2'")
    assert store.get_rollout(rollout.rollout_id).input == 1  # WAL: readers neither block nor see it yet
    other.execute("COMMIT")
    assert store.get_rollout(rollout.rollout_id).input == 2  # and see it once committed
    store.close()
    other.close()


def test_a_busy_database_is_an_overload(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("otel_lightning.store.sqlite_schema.BUSY_TIMEOUT_MS", 50)
    path = tmp_path / "store.db"
    store = SQLiteStore(path)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    with pytest.raises(OverloadedError):
        store.enqueue([Task(input=1)])
    other.execute("ROLLBACK")
    assert len(store.enqueue([Task(input=1)])) == 1
    store.close()
    other.close()


def test_memory_store_is_shared_between_threads() -> None:
    store = SQLiteStore(":memory:")
    written: list[str] = []
    thread = threading.Thread(target=lambda: written.append(store.enqueue([Task(input=1)])[0].rollout_id))
    thread.start()
    thread.join()
    assert store.get_rollout(written[0]).status is RolloutStatus.QUEUED
    store.close()


def test_close_is_idempotent_and_final(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "store.db")
    store.get_resources("x")  # opens a read connection
    store.close()
    store.close()
    with pytest.raises(OtelLightningError, match="closed"):
        store.enqueue([Task(input=1)])
    with pytest.raises(OtelLightningError, match="closed"):
        store.get_rollout("x")


ENCODERS = {"stdlib": rows._encode_stdlib, "orjson": rows._encode_orjson}


def test_odd_span_values_are_stored_not_refused() -> None:
    """Values OTLP has no type for are converted on the way into the span's message, never refused."""
    odd = SpanRecord(
        trace_id="a" * 32,
        span_id="b" * 16,
        parent_span_id=None,
        name="odd",
        kind=SpanKind.INTERNAL,
        start_ns=1,
        end_ns=2,
        attributes={
            "bytes": b"\x00\xff",
            "tuple": (1, 2),
            "set": frozenset({3}),
            "text": 'ü "q"',
            "float": 1.5,
            "nan": float("nan"),
            "huge": 2**70,
            "nested": MappingProxyType({1: "int key"}),
        },
    )
    assert span_from_row(spans_to_rows([odd])[0]).attributes == {
        "bytes": "AP8=",  # bytes values read back as base64, as OTLP JSON writes them
        "tuple": [1, 2],
        "set": [3],
        "text": 'ü "q"',
        "float": 1.5,
        "nan": "NaN",  # non-finite doubles read as strings, so that records stay valid JSON
        "huge": str(2**70),  # past int64: kept exactly, as a decimal string
        "nested": {"1": "int key"},
    }


@pytest.mark.parametrize("encoder", list(ENCODERS))
def test_telemetry_json_is_compact_and_never_refused(encoder: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if encoder == "orjson" and rows._orjson is None:
        pytest.skip("orjson is not installed")
    monkeypatch.setattr(rows, "_encode_lenient", ENCODERS[encoder])
    text = dumps({"text": 'ü "q"', "t": (1, 2), "b": b"\x00\xff"})
    assert text == '{"text":"ü \\"q\\"","t":[1,2],"b":"AP8="}'
    assert dumps({"k": [1, 2]}) == '{"k":[1,2]}'
    assert loads(dumps_strict({"k": "ü"}, "x")) == {"k": "ü"}
    for bad in ({"k": b"x"}, {"k": float("nan")}, {"k": object()}):
        with pytest.raises(ValidationError):
            dumps_strict(bad, "x")


def test_text_sqlite_cannot_encode_is_stored_replaced(store: SQLiteStore) -> None:
    bad = SpanRecord(
        trace_id="a" * 32,
        span_id="b" * 16,
        parent_span_id=None,
        name="lone \ud800 surrogate",
        kind=SpanKind.INTERNAL,
        start_ns=1,
        end_ns=2,
        attributes={"text": "x\udfff"},
    )
    good = span("1", "a1")
    assert store.add_spans([good, bad]) == 2
    stored = {s.span_id: s for s in store.get_spans(SpanQuery())}
    assert stored["b" * 16].name == "lone \ufffd surrogate"
    assert stored["b" * 16].attributes == {"text": "x\ufffd"}
    assert stored["1" * 16] == good
    log = LogRecord(time_ns=1, observed_ns=1, trace_id=None, span_id=None, body="\ud800")
    assert store.add_logs([log, log]) == 2
    assert [r.body for r in store.get_logs(SpanQuery())] == ["\ufffd", "\ufffd"]
