"""The embedded store: one SQLite file in WAL mode, zero setup.

Every write is one ``BEGIN IMMEDIATE`` transaction on the single write connection, so that a claim, an
expiry and a completion never interleave; reads run on their own connections and see every committed write
(see :class:`~otel_lightning.store.sqlite_schema.Connections`). Record <-> row conversion lives in
:mod:`otel_lightning.store.rows`, the schema and its migrations in :mod:`otel_lightning.store.sqlite_schema`.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from itertools import chain

from otel_lightning.exceptions import ConflictError, NotFoundError, OtelLightningError, StaleAttemptError
from otel_lightning.resources import JSON, Resource, ResourceVersion
from otel_lightning.spans.encoded import EncodedSpan
from otel_lightning.spans.records import LogRecord, SpanRecord
from otel_lightning.store.base import SpanQuery, Store
from otel_lightning.store.rows import (
    Row,
    attempt_from_row,
    attempt_to_row,
    int64,
    loads,
    log_from_row,
    logs_to_rows,
    prepare_claims,
    prepare_enqueue,
    prepare_publish,
    rollout_from_row,
    scrub,
    seconds_ns,
    span_from_row,
    version_from_row,
)
from otel_lightning.store.sqlite_schema import (
    ATTEMPT_INSERT,
    ATTEMPT_SELECT,
    EXPIRY_SELECT,
    LOG_INSERT,
    LOG_SELECT,
    OLDEST_QUEUED,
    OLDEST_QUEUED_OF,
    ROLLOUT_INSERT,
    ROLLOUT_SELECT,
    SPAN_INSERT,
    SPAN_INSERT_MANY,
    SPAN_SELECT,
    SPANS_PER_INSERT,
    VERSION_INSERT,
    VERSION_SELECT,
    Connections,
    marks,
)
from otel_lightning.types import (
    Attempt,
    AttemptStatus,
    Claim,
    Outcome,
    Rollout,
    RolloutFilter,
    RolloutStatus,
    Task,
)

logger = logging.getLogger(__name__)


_INT64_MAX = 2**63 - 1


class SQLiteStore(Store):
    """A :class:`~otel_lightning.store.base.Store` in one SQLite file (or ``":memory:"``).

    Args:
        path: The database file; created with its schema if missing, migrated if older.
        clock: Current time in integer nanoseconds; tests pass a fake clock to drive leases.

    Raises:
        ConfigError: The file cannot be opened, or was written by a newer otel-lightning.
    """

    def __init__(self, path: str | os.PathLike[str], *, clock: Callable[[], int] = time.time_ns) -> None:
        self.path = os.fspath(path)
        self._clock = clock
        self._db = Connections(self.path)

    def __enter__(self) -> SQLiteStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close every connection; safe to call twice."""
        self._db.close()

    # --- Queue -------------------------------------------------------------------------------------------

    def enqueue(self, tasks: Sequence[Task]) -> list[Rollout]:
        now = self._clock()
        prepared = prepare_enqueue(tasks, now)
        out: list[Rollout] = []
        with self._db.write() as conn:
            for rollout, row in prepared:
                if conn.execute(ROLLOUT_INSERT, (*row, rollout.resource_version)).rowcount == 1:
                    out.append(rollout)
                else:
                    out.append(self._rollout(conn, rollout.rollout_id))
        return out

    def claim_many(
        self,
        worker_id: str,
        request_ids: Sequence[str],
        experiments: Sequence[str] = (),
        lease_s: float = 30.0,
    ) -> list[Claim]:
        lease_ns, wanted = prepare_claims(worker_id, request_ids, experiments, lease_s)
        claims: list[Claim] = []
        with self._db.write() as conn:  # one transaction for them all: one commit, not one per claim
            for request_id in request_ids:
                found = self._claim_in(conn, worker_id, request_id, wanted, lease_ns)
                if found is None:
                    break
                claims.append(found)
        return claims

    def _claim_in(
        self,
        conn: sqlite3.Connection,
        worker_id: str,
        request_id: str,
        experiments: Sequence[str],
        lease_ns: int,
    ) -> Claim | None:
        known = conn.execute("SELECT attempt_id FROM claims WHERE request_id = ?", (request_id,)).fetchone()
        if known is not None:
            attempt = self._attempt(conn, known[0])
            return Claim(self._rollout(conn, attempt.rollout_id), attempt)
        picked = self._oldest_queued(conn, experiments)
        if picked is None:
            return None
        rollout, pinned = rollout_from_row(picked[2:]), picked[1]
        now = self._clock()
        attempt = Attempt(
            attempt_id=uuid.uuid4().hex,
            rollout_id=rollout.rollout_id,
            experiment=rollout.experiment,
            sequence=rollout.attempt_count + 1,
            status=AttemptStatus.RUNNING,
            worker_id=worker_id,
            resource_version=pinned if pinned is not None else self._latest_version(conn, rollout.experiment),
            started_ns=now,
            lease_expires_ns=now + lease_ns,
        )
        deadline = now + int(rollout.timeout_s * 1e9) if rollout.timeout_s is not None else None
        conn.execute(ATTEMPT_INSERT, (*attempt_to_row(attempt), deadline))
        conn.execute(
            "UPDATE rollouts SET status = 'running', attempt_id = ?, attempt_count = ?, "
            "resource_version = ?, updated_ns = ? WHERE rollout_id = ?",
            (attempt.attempt_id, attempt.sequence, attempt.resource_version, now, rollout.rollout_id),
        )
        conn.execute(
            "INSERT INTO claims (request_id, attempt_id, created_ns) VALUES (?, ?, ?)",
            (request_id, attempt.attempt_id, now),
        )
        rollout = replace(
            rollout,
            status=RolloutStatus.RUNNING,
            attempt_id=attempt.attempt_id,
            attempt_count=attempt.sequence,
            resource_version=attempt.resource_version,
            updated_ns=now,
        )
        return Claim(rollout, attempt)

    @staticmethod
    def _oldest_queued(conn: sqlite3.Connection, experiments: Sequence[str]) -> Row | None:
        if not experiments:
            return conn.execute(OLDEST_QUEUED).fetchone()
        # One index probe per experiment, rather than sorting every queued rollout of them all.
        heads = [conn.execute(OLDEST_QUEUED_OF, (e,)).fetchone() for e in set(experiments)]
        return min((h for h in heads if h is not None), key=lambda h: h[0], default=None)

    def heartbeat(self, attempt_id: str, lease_s: float = 30.0) -> Attempt:
        lease_ns = seconds_ns(lease_s, "lease_s")
        with self._db.write() as conn:
            attempt = self._attempt(conn, attempt_id)
            if attempt.status is not AttemptStatus.RUNNING:
                raise StaleAttemptError(f"attempt {attempt_id} is {attempt.status.value}, not running")
            expires = self._clock() + lease_ns
            conn.execute(
                "UPDATE attempts SET lease_expires_ns = ? WHERE attempt_id = ?", (expires, attempt_id)
            )
        return replace(attempt, lease_expires_ns=expires)

    def complete(self, attempt_id: str, outcome: Outcome) -> Attempt:
        int64(outcome.span_count, "outcome.span_count")
        with self._db.write() as conn:
            return self._complete_in(conn, attempt_id, outcome)

    def complete_many(self, items: Sequence[tuple[str, Outcome]]) -> list[Attempt | OtelLightningError]:
        for _, outcome in items:
            int64(outcome.span_count, "outcome.span_count")
        results: list[Attempt | OtelLightningError] = []
        with self._db.write() as conn:  # one transaction for them all: one commit, not one per completion
            for attempt_id, outcome in items:
                try:  # _complete_in checks before it writes: a refused item has changed nothing
                    results.append(self._complete_in(conn, attempt_id, outcome))
                except (StaleAttemptError, NotFoundError) as exc:
                    results.append(exc)
        return results

    def _complete_in(self, conn: sqlite3.Connection, attempt_id: str, outcome: Outcome) -> Attempt:
        attempt = self._attempt(conn, attempt_id)
        if attempt.status is not AttemptStatus.RUNNING:
            # Only a completion ends an attempt as succeeded or failed: the same status is a retry.
            if attempt.status is outcome.status:
                return attempt
            raise StaleAttemptError(f"attempt {attempt_id} is {attempt.status.value}, not running")
        current = conn.execute(
            "SELECT status, attempt_id FROM rollouts WHERE rollout_id = ?", (attempt.rollout_id,)
        ).fetchone()
        if current != (RolloutStatus.RUNNING.value, attempt_id):
            raise StaleAttemptError(f"attempt {attempt_id} is no longer its rollout's current attempt")
        now = self._clock()
        ended = replace(
            attempt,
            status=outcome.status,
            ended_ns=now,
            reward=outcome.reward,
            error=outcome.error,
            span_count=outcome.span_count,
        )
        conn.execute(
            "UPDATE attempts SET status = ?, ended_ns = ?, reward = ?, error = ?, span_count = ? "
            "WHERE attempt_id = ?",
            (ended.status.value, now, ended.reward, ended.error, ended.span_count, attempt_id),
        )
        conn.execute(
            "UPDATE rollouts SET status = ?, reward = ?, error = ?, updated_ns = ? WHERE rollout_id = ?",
            (outcome.status.value, outcome.reward, outcome.error, now, attempt.rollout_id),
        )
        return ended

    # --- Control -----------------------------------------------------------------------------------------

    def cancel(self, rollout_id: str) -> Rollout:
        with self._db.write() as conn:
            rollout = self._rollout(conn, rollout_id)
            if rollout.status.is_final:
                return rollout
            now = self._clock()
            if rollout.status is RolloutStatus.RUNNING and rollout.attempt_id is not None:
                conn.execute(
                    "UPDATE attempts SET status = 'cancelled', ended_ns = ?, error = 'rollout cancelled' "
                    "WHERE attempt_id = ? AND status = 'running'",
                    (now, rollout.attempt_id),
                )
            conn.execute(
                "UPDATE rollouts SET status = 'cancelled', updated_ns = ? WHERE rollout_id = ?",
                (now, rollout_id),
            )
        return replace(rollout, status=RolloutStatus.CANCELLED, updated_ns=now)

    def expire(self, now_ns: int) -> list[Attempt]:
        ended: list[Attempt] = []
        with self._db.write() as conn:
            for row in conn.execute(EXPIRY_SELECT, (now_ns, now_ns)).fetchall():
                attempt = attempt_from_row(row[:13])
                deadline, timeout_s, attempt_count, max_attempts, status, current = row[13:]
                if deadline is not None and deadline < now_ns:
                    reason = f"attempt exceeded its timeout of {timeout_s:g} s"
                else:
                    reason = "lease expired"
                conn.execute(
                    "UPDATE attempts SET status = 'timed_out', error = ?, ended_ns = ? WHERE attempt_id = ?",
                    (reason, now_ns, attempt.attempt_id),
                )
                ended.append(replace(attempt, status=AttemptStatus.TIMED_OUT, error=reason, ended_ns=now_ns))
                if (status, current) != (RolloutStatus.RUNNING.value, attempt.attempt_id):
                    continue  # not the rollout's current attempt: it has nothing to decide
                if attempt_count < max_attempts:
                    # Requeued with its original seq, so it keeps its place by age.
                    conn.execute(
                        "UPDATE rollouts SET status = 'queued', updated_ns = ? WHERE rollout_id = ?",
                        (now_ns, attempt.rollout_id),
                    )
                else:
                    conn.execute(
                        "UPDATE rollouts SET status = 'failed', error = ?, updated_ns = ? "
                        "WHERE rollout_id = ?",
                        (f"timed out after {attempt_count} attempts: {reason}", now_ns, attempt.rollout_id),
                    )
        if ended:
            logger.info("timed out %d attempts", len(ended))
        return ended

    # --- Ledger ------------------------------------------------------------------------------------------

    def get_rollout(self, rollout_id: str) -> Rollout:
        with self._db.read() as conn:
            return self._rollout(conn, rollout_id)

    def get_attempt(self, attempt_id: str) -> Attempt:
        with self._db.read() as conn:
            return self._attempt(conn, attempt_id)

    def list_rollouts(self, where: RolloutFilter) -> list[Rollout]:
        clauses: list[str] = []
        params: list[object] = []
        if where.experiment is not None:
            clauses.append("experiment = ?")
            params.append(where.experiment)
        if where.statuses:
            clauses.append(f"status IN ({marks(len(where.statuses))})")
            params.extend(RolloutStatus(s).value for s in where.statuses)
        if where.resource_version is not None:
            clauses.append("resource_version = ?")
            params.append(int64(where.resource_version, "resource_version"))
        if where.rollout_ids:
            clauses.append(f"rollout_id IN ({marks(len(where.rollout_ids))})")
            params.extend(where.rollout_ids)
        sql = ROLLOUT_SELECT + (" WHERE " + " AND ".join(clauses) if clauses else "")
        sql += " ORDER BY seq LIMIT ? OFFSET ?"
        params.extend((min(max(where.limit, 0), _INT64_MAX), min(max(where.offset, 0), _INT64_MAX)))
        with self._db.read() as conn:
            rows = conn.execute(sql, params).fetchall()
        return [rollout_from_row(r) for r in rows]

    def list_attempts(self, rollout_id: str) -> list[Attempt]:
        with self._db.read() as conn:
            self._rollout(conn, rollout_id)
            rows = conn.execute(
                ATTEMPT_SELECT + " WHERE rollout_id = ? ORDER BY sequence", (rollout_id,)
            ).fetchall()
        return [attempt_from_row(r) for r in rows]

    @staticmethod
    def _rollout(conn: sqlite3.Connection, rollout_id: str) -> Rollout:
        row = conn.execute(ROLLOUT_SELECT + " WHERE rollout_id = ?", (rollout_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"no rollout {rollout_id!r}")
        return rollout_from_row(row)

    @staticmethod
    def _attempt(conn: sqlite3.Connection, attempt_id: str) -> Attempt:
        row = conn.execute(ATTEMPT_SELECT + " WHERE attempt_id = ?", (attempt_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"no attempt {attempt_id!r}")
        return attempt_from_row(row)

    # --- Resources ---------------------------------------------------------------------------------------

    def publish(
        self,
        experiment: str,
        resources: Mapping[str, Resource],
        expected_version: int | None = None,
        metadata: Mapping[str, JSON] | None = None,
    ) -> ResourceVersion:
        text, decoded, meta_text = prepare_publish(experiment, resources, expected_version, metadata)
        with self._db.write() as conn:
            latest = self._latest_version(conn, experiment)
            if expected_version is not None and expected_version != latest:
                raise ConflictError(
                    f"experiment {experiment!r}: expected resource version {expected_version}, "
                    f"but the latest is {latest}"
                )
            now = self._clock()
            conn.execute(VERSION_INSERT, (experiment, latest + 1, text, now, meta_text))
        return ResourceVersion(experiment, latest + 1, decoded, now, loads(meta_text))

    def get_resources(self, experiment: str, version: int | None = None) -> ResourceVersion:
        int64(version, "version")
        if version == 0:
            return ResourceVersion(experiment, 0, {})
        with self._db.read() as conn:
            if version is None:
                row = conn.execute(
                    VERSION_SELECT + " WHERE experiment = ? ORDER BY version DESC LIMIT 1", (experiment,)
                ).fetchone()
                if row is None:
                    return ResourceVersion(experiment, 0, {})
            else:
                row = conn.execute(
                    VERSION_SELECT + " WHERE experiment = ? AND version = ?", (experiment, version)
                ).fetchone()
                if row is None:
                    raise NotFoundError(f"experiment {experiment!r} has no resource version {version}")
        return version_from_row(row)

    def list_versions(self, experiment: str) -> list[ResourceVersion]:
        with self._db.read() as conn:
            rows = conn.execute(
                VERSION_SELECT + " WHERE experiment = ? ORDER BY version", (experiment,)
            ).fetchall()
        return [version_from_row(r) for r in rows]

    @staticmethod
    def _latest_version(conn: sqlite3.Connection, experiment: str) -> int:
        row = conn.execute(
            "SELECT COALESCE(MAX(version), 0) FROM resource_versions WHERE experiment = ?", (experiment,)
        ).fetchone()
        return int(row[0])

    # --- Spans and logs ----------------------------------------------------------------------------------

    def add_encoded_spans(self, spans: Sequence[EncodedSpan]) -> int:
        if not spans:
            return 0
        try:
            return self._insert_spans(spans)
        except UnicodeEncodeError:
            # Text from OTLP JSON may hold lone surrogates, which SQLite cannot take (encode_span replaces
            # them; a caller's own rows may not): store them replaced rather than lose the batch.
            return self._insert_spans([scrub(r) for r in spans])

    def _insert_spans(self, spans: Sequence[Row]) -> int:
        n = SPANS_PER_INSERT
        whole = len(spans) - len(spans) % n
        chunks = [list(chain.from_iterable(spans[i : i + n])) for i in range(0, whole, n)]
        with self._db.write() as conn:
            before = conn.total_changes
            if chunks:
                conn.executemany(SPAN_INSERT_MANY, chunks)
            conn.executemany(SPAN_INSERT, spans[whole:])
            return conn.total_changes - before

    def add_logs(self, logs: Sequence[LogRecord]) -> int:
        if not logs:
            return 0
        rows = logs_to_rows(logs)
        try:
            return self._insert(LOG_INSERT, rows)
        except UnicodeEncodeError:
            return self._insert(LOG_INSERT, [scrub(r) for r in rows])

    def _insert(self, sql: str, rows: Sequence[Row]) -> int:
        with self._db.write() as conn:
            before = conn.total_changes
            conn.executemany(sql, rows)
            return conn.total_changes - before

    def get_spans(self, query: SpanQuery) -> list[SpanRecord]:
        where, params = _span_filter(query)
        with self._db.read() as conn:
            rows = conn.execute(
                f"{SPAN_SELECT}{where} ORDER BY start_ns, span_id LIMIT ?", (*params, max(query.limit, 0))
            ).fetchall()
        return [span_from_row(r) for r in rows]

    def get_logs(self, query: SpanQuery) -> list[LogRecord]:
        where, params = _span_filter(query)
        with self._db.read() as conn:
            rows = conn.execute(
                f"{LOG_SELECT}{where} ORDER BY time_ns, id LIMIT ?", (*params, max(query.limit, 0))
            ).fetchall()
        return [log_from_row(r) for r in rows]

    def count_spans(self, attempt_id: str) -> int:
        with self._db.read() as conn:
            return int(
                conn.execute("SELECT COUNT(*) FROM spans WHERE attempt_id = ?", (attempt_id,)).fetchone()[0]
            )


def _span_filter(query: SpanQuery) -> tuple[str, tuple[str, ...]]:
    clauses: list[str] = []
    params: list[str] = []
    for column in ("rollout_id", "attempt_id", "trace_id"):
        value = getattr(query, column)
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(value)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), tuple(params)
