"""The scale-out store: PostgreSQL shared by any number of server replicas.

Each call is one transaction on a pooled connection. Correctness across replicas rests on the database, not
on any lock in this process: claims pick with ``FOR UPDATE SKIP LOCKED`` and take their request id under a
unique key first; every change to an attempt locks its rollout first (one lock order, so no deadlocks);
expiry locks what it ends and re-reads it. Writes that long-polls wait for send ``NOTIFY`` in their
transaction; :meth:`PostgresStore.watch` listens for them (:mod:`otel_lightning.store.changes`).

This module holds the queue, control and ledger. Resource versions are in
:mod:`~otel_lightning.store.postgres_resources`, spans and logs in
:mod:`~otel_lightning.store.postgres_spans`, connections in :mod:`~otel_lightning.store.postgres_db`, the
schema and its migrations in :mod:`~otel_lightning.store.postgres_schema`; rows follow
:mod:`otel_lightning.store.rows`.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from otel_lightning.exceptions import (
    ConfigError,
    NotFoundError,
    OtelLightningError,
    StaleAttemptError,
)
from otel_lightning.store import postgres_schema as sql
from otel_lightning.store.base import Store
from otel_lightning.store.postgres_db import Connection, Database, notify, one
from otel_lightning.store.postgres_resources import PostgresResourceStore, latest_version
from otel_lightning.store.postgres_spans import PostgresSpanStore, SpanWrite
from otel_lightning.store.rows import (
    attempt_from_row,
    attempt_to_row,
    int64,
    prepare_claims,
    prepare_enqueue,
    rollout_from_row,
    seconds_ns,
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


class _NothingQueued(Exception):
    """No rollout left to claim (rolls back the claim's savepoint)."""


class PostgresStore(PostgresResourceStore, PostgresSpanStore, Store):
    """A :class:`~otel_lightning.store.base.Store` in a PostgreSQL (14+) database.

    Args:
        url: A libpq connection URL (``postgresql://user@host:5432/db``); ``?options=-csearch_path%3DNAME``
            selects a schema other than ``public``.
        clock: Current time in integer nanoseconds; tests pass a fake clock to drive leases.
        pool_size: Most connections this store opens at once (a change feed adds one).
        span_write: How :meth:`add_encoded_spans` writes (see :data:`SpanWrite`).

    Raises:
        ConfigError: The server cannot be reached, is older than 14, or holds a newer schema.
    """

    def __init__(
        self,
        url: str,
        *,
        clock: Callable[[], int] = time.time_ns,
        pool_size: int = 10,
        span_write: SpanWrite = "copy",
    ) -> None:
        if span_write not in ("copy", "pipeline"):
            raise ConfigError(f"span_write must be 'copy' or 'pipeline', not {span_write!r}")
        self.url = url
        self._clock = clock
        self._span_write = span_write
        self._db = Database(url, pool_size)

    def __enter__(self) -> PostgresStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the change feed and close every connection; safe to call twice."""
        self._db.close()

    def watch(self, callback: Callable[[str], None]) -> Callable[[], None]:
        """Call ``callback(topic)`` (on a feed thread) whenever any store on this database commits a change
        of the topic ("queue": a rollout became claimable; "rollouts": one changed status); returns the
        function that stops it. After a lost connection every topic is sent once, as changes may be missed.
        """
        return self._db.feed.subscribe(callback)

    # --- Queue -------------------------------------------------------------------------------------------

    def enqueue(self, tasks: Sequence[Task]) -> list[Rollout]:
        now = self._clock()
        prepared = prepare_enqueue(tasks, now)
        if not prepared:
            return []

        def work(conn: Connection) -> list[Rollout]:
            with conn.cursor() as cur:
                cur.executemany(
                    sql.ROLLOUT_INSERT, [(*row, r.resource_version) for r, row in prepared], returning=True
                )
                inserted: list[bool] = []
                while True:
                    inserted.append(cur.fetchone() is not None)
                    if not cur.nextset():
                        break
            known = [r.rollout_id for (r, _), new in zip(prepared, inserted, strict=True) if not new]
            existing: dict[str, Rollout] = {}
            if known:
                rows = conn.execute(sql.ROLLOUT_SELECT + " WHERE rollout_id = ANY(%s)", (known,)).fetchall()
                existing = {row[0]: rollout_from_row(row) for row in rows}
            if any(inserted):
                notify(conn, "queue", "rollouts")
            return [
                r if new else existing[r.rollout_id] for (r, _), new in zip(prepared, inserted, strict=True)
            ]

        return self._db.retrying(work)

    def claim_many(
        self,
        worker_id: str,
        request_ids: Sequence[str],
        experiments: Sequence[str] = (),
        lease_s: float = 30.0,
    ) -> list[Claim]:
        lease_ns, wanted = prepare_claims(worker_id, request_ids, experiments, lease_s)

        def work(conn: Connection) -> list[Claim]:
            # One transaction for the batch (one commit), a savepoint for each claim.
            claims: list[Claim] = []
            for request_id in request_ids:
                try:
                    with conn.transaction():
                        claims.append(self._claim_in(conn, worker_id, request_id, wanted, lease_ns))
                except _NothingQueued:
                    break
            if claims:
                notify(conn, "rollouts")
            return claims

        return self._db.retrying(work)

    def _claim_in(
        self, conn: Connection, worker_id: str, request_id: str, wanted: Sequence[str], lease_ns: int
    ) -> Claim:
        """One claim inside a savepoint; _NothingQueued (which rolls the savepoint back) when none is left."""
        now = self._clock()
        attempt_id = uuid.uuid4().hex
        # The request id first: a retry of this claim, here or on another replica, waits for this
        # transaction and then finds the claim it made, instead of claiming a second rollout.
        taken = conn.execute(
            "INSERT INTO claims (request_id, attempt_id, created_ns) VALUES (%s, %s, %s) "
            "ON CONFLICT (request_id) DO NOTHING",
            (request_id, attempt_id, now),
        ).rowcount
        if taken == 0:
            (known,) = one(conn, "SELECT attempt_id FROM claims WHERE request_id = %s", (request_id,))
            attempt = _attempt(conn, known)
            return Claim(_rollout(conn, attempt.rollout_id), attempt)
        if wanted:
            picked = conn.execute(sql.OLDEST_QUEUED_OF, (list(wanted),)).fetchone()  # a list is an array
        else:
            picked = conn.execute(sql.OLDEST_QUEUED).fetchone()
        if picked is None:
            raise _NothingQueued  # the savepoint is rolled back: the request id stays free for its retry
        rollout, pinned = rollout_from_row(picked[1:]), picked[0]
        attempt = Attempt(
            attempt_id=attempt_id,
            rollout_id=rollout.rollout_id,
            experiment=rollout.experiment,
            sequence=rollout.attempt_count + 1,
            status=AttemptStatus.RUNNING,
            worker_id=worker_id,
            resource_version=pinned if pinned is not None else latest_version(conn, rollout.experiment),
            started_ns=now,
            lease_expires_ns=now + lease_ns,
        )
        deadline = now + int(rollout.timeout_s * 1e9) if rollout.timeout_s is not None else None
        conn.execute(sql.ATTEMPT_INSERT, (*attempt_to_row(attempt), deadline))
        conn.execute(
            "UPDATE rollouts SET status = 'running', attempt_id = %s, attempt_count = %s, "
            "resource_version = %s, updated_ns = %s WHERE rollout_id = %s",
            (attempt.attempt_id, attempt.sequence, attempt.resource_version, now, rollout.rollout_id),
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

    def heartbeat(self, attempt_id: str, lease_s: float = 30.0) -> Attempt:
        lease_ns = seconds_ns(lease_s, "lease_s")
        with self._db.transaction() as conn:
            row = conn.execute(
                "UPDATE attempts SET lease_expires_ns = %s WHERE attempt_id = %s AND status = 'running'"
                + sql.ATTEMPT_RETURNING,
                (self._clock() + lease_ns, attempt_id),
            ).fetchone()
            if row is None:
                attempt = _attempt(conn, attempt_id)
                raise StaleAttemptError(f"attempt {attempt_id} is {attempt.status.value}, not running")
        return attempt_from_row(row)

    def complete(self, attempt_id: str, outcome: Outcome) -> Attempt:
        int64(outcome.span_count, "outcome.span_count")

        def work(conn: Connection) -> Attempt:
            ended = self._complete_in(conn, attempt_id, outcome)
            notify(conn, "rollouts")
            return ended

        return self._db.retrying(work)

    def complete_many(self, items: Sequence[tuple[str, Outcome]]) -> list[Attempt | OtelLightningError]:
        for _, outcome in items:
            int64(outcome.span_count, "outcome.span_count")

        def work(conn: Connection) -> list[Attempt | OtelLightningError]:
            # One transaction for the batch (one commit); a refused item rolls back only its savepoint.
            results: list[Attempt | OtelLightningError] = []
            for attempt_id, outcome in items:
                try:
                    with conn.transaction():
                        results.append(self._complete_in(conn, attempt_id, outcome))
                except (StaleAttemptError, NotFoundError) as exc:
                    results.append(exc)
            notify(conn, "rollouts")
            return results

        return self._db.retrying(work)

    def _complete_in(self, conn: Connection, attempt_id: str, outcome: Outcome) -> Attempt:
        error = outcome.error.replace("\x00", "\ufffd") if outcome.error else outcome.error
        # The rollout first, as every change to an attempt does; then the attempt cannot change under us
        # (a heartbeat only moves its lease).
        current = conn.execute(
            "SELECT status, attempt_id FROM rollouts "
            "WHERE rollout_id = (SELECT rollout_id FROM attempts WHERE attempt_id = %s) FOR UPDATE",
            (attempt_id,),
        ).fetchone()
        attempt = _attempt(conn, attempt_id)
        if attempt.status is not AttemptStatus.RUNNING:
            # Only a completion ends an attempt as succeeded or failed: the same status is a retry.
            if attempt.status is outcome.status:
                return attempt
            raise StaleAttemptError(f"attempt {attempt_id} is {attempt.status.value}, not running")
        if current != (RolloutStatus.RUNNING.value, attempt_id):
            raise StaleAttemptError(f"attempt {attempt_id} is no longer its rollout's current attempt")
        now = self._clock()
        ended = replace(
            attempt,
            status=outcome.status,
            ended_ns=now,
            reward=outcome.reward,
            error=error,
            span_count=outcome.span_count,
        )
        conn.execute(
            "UPDATE attempts SET status = %s, ended_ns = %s, reward = %s, error = %s, span_count = %s "
            "WHERE attempt_id = %s",
            (ended.status.value, now, ended.reward, ended.error, ended.span_count, attempt_id),
        )
        conn.execute(
            "UPDATE rollouts SET status = %s, reward = %s, error = %s, updated_ns = %s WHERE rollout_id = %s",
            (outcome.status.value, outcome.reward, error, now, attempt.rollout_id),
        )
        return ended

    # --- Control -----------------------------------------------------------------------------------------

    def cancel(self, rollout_id: str) -> Rollout:
        def work(conn: Connection) -> Rollout:
            rollout = _rollout(conn, rollout_id, lock=True)
            if rollout.status.is_final:
                return rollout
            now = self._clock()
            if rollout.status is RolloutStatus.RUNNING and rollout.attempt_id is not None:
                conn.execute(
                    "UPDATE attempts SET status = 'cancelled', ended_ns = %s, error = 'rollout cancelled' "
                    "WHERE attempt_id = %s AND status = 'running'",
                    (now, rollout.attempt_id),
                )
            conn.execute(
                "UPDATE rollouts SET status = 'cancelled', updated_ns = %s WHERE rollout_id = %s",
                (now, rollout_id),
            )
            notify(conn, "rollouts")
            return replace(rollout, status=RolloutStatus.CANCELLED, updated_ns=now)

        return self._db.retrying(work)

    def expire(self, now_ns: int) -> list[Attempt]:
        int64(now_ns, "now_ns")

        def work(conn: Connection) -> list[Attempt]:
            params: dict[str, Any] = {"now": now_ns}
            params["ids"] = [r[0] for r in conn.execute(sql.EXPIRED_ROLLOUTS, params).fetchall()]
            if not params["ids"]:
                return []
            # Rollouts that another replica's watchdog (or a completion) holds are skipped: it decides them.
            rollouts = {r[0]: r[1:] for r in conn.execute(sql.LOCK_ROLLOUTS, params).fetchall()}
            if not rollouts:
                return []
            params["ids"] = list(rollouts)
            ended: list[Attempt] = []
            attempt_updates: list[tuple[Any, ...]] = []
            requeued: list[tuple[Any, ...]] = []
            failed: list[tuple[Any, ...]] = []
            for row in conn.execute(sql.EXPIRED_ATTEMPTS, params).fetchall():
                attempt, deadline = attempt_from_row(row[:-1]), row[-1]
                status, current, attempt_count, max_attempts, timeout_s = rollouts[attempt.rollout_id]
                if deadline is not None and deadline < now_ns:
                    reason = f"attempt exceeded its timeout of {timeout_s:g} s"
                else:
                    reason = "lease expired"
                attempt_updates.append((reason, now_ns, attempt.attempt_id))
                ended.append(replace(attempt, status=AttemptStatus.TIMED_OUT, error=reason, ended_ns=now_ns))
                if (status, current) != (RolloutStatus.RUNNING.value, attempt.attempt_id):
                    continue  # not the rollout's current attempt: it has nothing to decide
                if attempt_count < max_attempts:
                    requeued.append((now_ns, attempt.rollout_id))  # keeps its seq, so its place by age
                else:
                    why = f"timed out after {attempt_count} attempts: {reason}"
                    failed.append((why, now_ns, attempt.rollout_id))
            with conn.cursor() as cur:
                cur.executemany(
                    sql.TIME_OUT_ATTEMPT,
                    attempt_updates,
                )
                if requeued:
                    cur.executemany(
                        "UPDATE rollouts SET status = 'queued', updated_ns = %s WHERE rollout_id = %s",
                        requeued,
                    )
                if failed:
                    cur.executemany(
                        sql.FAIL_ROLLOUT,
                        failed,
                    )
            if ended:
                notify(conn, *(("queue", "rollouts") if requeued else ("rollouts",)))
            return ended

        result: list[Attempt] = self._db.retrying(work)
        if result:
            logger.info("timed out %d attempts", len(result))
        return result

    # --- Ledger ------------------------------------------------------------------------------------------

    def get_rollout(self, rollout_id: str) -> Rollout:
        with self._db.transaction() as conn:
            return _rollout(conn, rollout_id)

    def get_attempt(self, attempt_id: str) -> Attempt:
        with self._db.transaction() as conn:
            return _attempt(conn, attempt_id)

    def list_rollouts(self, where: RolloutFilter) -> list[Rollout]:
        clauses: list[str] = []
        params: list[object] = []
        if where.experiment is not None:
            clauses.append("experiment = %s")
            params.append(where.experiment)
        if where.statuses:
            clauses.append("status = ANY(%s)")
            params.append([RolloutStatus(s).value for s in where.statuses])
        if where.resource_version is not None:
            clauses.append("resource_version = %s")
            params.append(int64(where.resource_version, "resource_version"))
        if where.rollout_ids:
            clauses.append("rollout_id = ANY(%s)")
            params.append(list(where.rollout_ids))
        query = sql.ROLLOUT_SELECT + (" WHERE " + " AND ".join(clauses) if clauses else "")
        query += " ORDER BY seq LIMIT %s OFFSET %s"
        params.extend((min(max(where.limit, 0), 2**63 - 1), min(max(where.offset, 0), 2**63 - 1)))
        with self._db.transaction() as conn:
            rows = conn.execute(query, params).fetchall()
        return [rollout_from_row(r) for r in rows]

    def list_attempts(self, rollout_id: str) -> list[Attempt]:
        with self._db.transaction() as conn:
            _rollout(conn, rollout_id)
            rows = conn.execute(
                sql.ATTEMPT_SELECT + " WHERE rollout_id = %s ORDER BY sequence", (rollout_id,)
            ).fetchall()
        return [attempt_from_row(r) for r in rows]


def _rollout(conn: Connection, rollout_id: str, lock: bool = False) -> Rollout:
    suffix = " FOR UPDATE" if lock else ""
    row = conn.execute(sql.ROLLOUT_SELECT + " WHERE rollout_id = %s" + suffix, (rollout_id,)).fetchone()
    if row is None:
        raise NotFoundError(f"no rollout {rollout_id!r}")
    return rollout_from_row(row)


def _attempt(conn: Connection, attempt_id: str) -> Attempt:
    row = conn.execute(sql.ATTEMPT_SELECT + " WHERE attempt_id = %s", (attempt_id,)).fetchone()
    if row is None:
        raise NotFoundError(f"no attempt {attempt_id!r}")
    return attempt_from_row(row)
