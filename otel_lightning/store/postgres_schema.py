"""How the PostgreSQL store's database is laid out: schema, migrations, and the statements run against it.

The schema version is the highest ``version`` in the ``otel_lightning_schema`` table (one row per applied
migration). :data:`MIGRATIONS` is append-only: migration ``n`` (1-based) takes a database from version
``n - 1`` to ``n``. :func:`migrate` applies the missing ones in one transaction under a transaction-level
advisory lock, so replicas that start together take turns and the later ones find nothing to do; a database
written by newer code is refused with ConfigError rather than misread.

Tables and columns are those of the SQLite store (:mod:`otel_lightning.store.sqlite_schema`), with the
row layouts of :mod:`otel_lightning.store.rows`: JSON is stored as the same compact text, times as BIGINT
nanoseconds. Ids are ``COLLATE "C"`` so that they sort bytewise, as in SQLite, whatever the database's
locale. Names are unqualified: the connection's ``search_path`` picks the schema.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from otel_lightning.exceptions import ConfigError
from otel_lightning.store.rows import (
    ATTEMPT_COLUMNS,
    LOG_COLUMNS,
    ROLLOUT_COLUMNS,
    SPAN_COLUMNS,
    SPAN_READ_COLUMNS,
    VERSION_COLUMNS,
)

logger = logging.getLogger(__name__)

MIN_SERVER_VERSION = 140000
"""PostgreSQL 14 or newer: lz4 column compression and ``LIKE ... INCLUDING COMPRESSION``."""

CHANNEL = "otel_lightning"
"""The LISTEN/NOTIFY channel; each notification's payload is a topic ("queue", "rollouts")."""

MIGRATION_LOCK = 0x6F746C6D  # "otlm"
"""Advisory lock key held by the migrating transaction."""

Migration = Sequence[str]
"""The SQL statements of one migration, run in order inside the migrating transaction."""


def _lz4(table: str, *names: str) -> str:
    """Compress the columns with lz4 where the server was built with it (Debian's and the official images
    are), else keep the default."""
    alter = ", ".join(f"ALTER COLUMN {name} SET COMPRESSION lz4" for name in names)
    return (
        f"DO $$ BEGIN ALTER TABLE {table} {alter}; "
        f"EXCEPTION WHEN feature_not_supported THEN RAISE NOTICE 'no lz4: {table} keeps pglz'; END $$"
    )


_V1: Migration = (
    # seq is the insertion order: claims take the oldest queued rollout, and a requeued one keeps its place.
    """CREATE TABLE rollouts (
        seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        rollout_id TEXT COLLATE "C" NOT NULL UNIQUE,
        experiment TEXT COLLATE "C" NOT NULL,
        input TEXT NOT NULL,
        status TEXT NOT NULL,
        created_ns BIGINT NOT NULL,
        updated_ns BIGINT NOT NULL,
        max_attempts BIGINT NOT NULL,
        attempt_count BIGINT NOT NULL DEFAULT 0,
        pinned_version BIGINT,
        resource_version BIGINT,
        timeout_s DOUBLE PRECISION,
        metadata TEXT NOT NULL,
        attempt_id TEXT COLLATE "C",
        reward DOUBLE PRECISION,
        error TEXT
    )""",
    "CREATE INDEX rollouts_queued ON rollouts (seq) WHERE status = 'queued'",
    "CREATE INDEX rollouts_queued_by_experiment ON rollouts (experiment, seq) WHERE status = 'queued'",
    "CREATE INDEX rollouts_by_experiment ON rollouts (experiment, status, seq)",
    """CREATE TABLE attempts (
        attempt_id TEXT COLLATE "C" PRIMARY KEY,
        rollout_id TEXT COLLATE "C" NOT NULL REFERENCES rollouts (rollout_id),
        experiment TEXT COLLATE "C" NOT NULL,
        sequence BIGINT NOT NULL,
        status TEXT NOT NULL,
        worker_id TEXT NOT NULL,
        resource_version BIGINT NOT NULL,
        started_ns BIGINT NOT NULL,
        lease_expires_ns BIGINT NOT NULL,
        deadline_ns BIGINT,
        ended_ns BIGINT,
        reward DOUBLE PRECISION,
        error TEXT,
        span_count BIGINT,
        UNIQUE (rollout_id, sequence)
    )""",
    # Only running attempts can expire; there are about as many as workers, so the watchdog's scan is small.
    "CREATE INDEX attempts_running ON attempts (lease_expires_ns) WHERE status = 'running'",
    # A claim first takes its request id, then picks a rollout and inserts the attempt: the reference is
    # checked at commit.
    """CREATE TABLE claims (
        request_id TEXT COLLATE "C" PRIMARY KEY,
        attempt_id TEXT COLLATE "C" NOT NULL
            REFERENCES attempts (attempt_id) DEFERRABLE INITIALLY DEFERRED,
        created_ns BIGINT NOT NULL
    )""",
    """CREATE TABLE resource_versions (
        experiment TEXT COLLATE "C" NOT NULL,
        version BIGINT NOT NULL,
        resources TEXT NOT NULL,
        created_ns BIGINT NOT NULL,
        metadata TEXT NOT NULL,
        PRIMARY KEY (experiment, version)
    )""",
    """CREATE TABLE spans (
        trace_id TEXT COLLATE "C" NOT NULL,
        span_id TEXT COLLATE "C" NOT NULL,
        parent_span_id TEXT COLLATE "C",
        name TEXT NOT NULL,
        kind TEXT NOT NULL,
        start_ns BIGINT NOT NULL,
        end_ns BIGINT NOT NULL,
        status_code TEXT NOT NULL,
        status_message TEXT NOT NULL,
        rollout_id TEXT COLLATE "C",
        attempt_id TEXT COLLATE "C",
        experiment TEXT COLLATE "C",
        scope_name TEXT NOT NULL,
        scope_version TEXT NOT NULL,
        attributes TEXT NOT NULL,
        events TEXT NOT NULL,
        links TEXT NOT NULL,
        resource TEXT NOT NULL,
        PRIMARY KEY (trace_id, span_id)
    )""",
    # A span row is ~3 KiB, over the 2 KiB at which PostgreSQL compresses: lz4 costs half of what the
    # default pglz does per span (measured: ~40k against ~20k spans per backend cpu-second).
    _lz4("spans", "attributes", "events"),
    "CREATE INDEX spans_by_attempt ON spans (attempt_id, start_ns) WHERE attempt_id IS NOT NULL",
    "CREATE INDEX spans_by_rollout ON spans (rollout_id, start_ns) WHERE rollout_id IS NOT NULL",
    """CREATE TABLE logs (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        time_ns BIGINT NOT NULL,
        observed_ns BIGINT NOT NULL,
        trace_id TEXT COLLATE "C",
        span_id TEXT COLLATE "C",
        severity_number BIGINT NOT NULL,
        severity_text TEXT NOT NULL,
        event_name TEXT NOT NULL,
        scope_name TEXT NOT NULL,
        rollout_id TEXT COLLATE "C",
        attempt_id TEXT COLLATE "C",
        experiment TEXT COLLATE "C",
        body TEXT NOT NULL,
        attributes TEXT NOT NULL,
        resource TEXT NOT NULL
    )""",
    _lz4("logs", "body", "attributes"),
    "CREATE INDEX logs_by_attempt ON logs (attempt_id, time_ns) WHERE attempt_id IS NOT NULL",
    "CREATE INDEX logs_by_rollout ON logs (rollout_id, time_ns) WHERE rollout_id IS NOT NULL",
    "CREATE INDEX logs_by_trace ON logs (trace_id, time_ns) WHERE trace_id IS NOT NULL",
)

_V2: Migration = (
    # Algorithms and exports read the rollouts of one resource version of an experiment.
    "CREATE INDEX rollouts_by_version ON rollouts (experiment, resource_version, seq)",
)

_V3: Migration = (
    # Spans keep their OTLP message (spans/encoded.py): ingest no longer decodes attributes into JSON. Rows
    # written before stay as they are (read through the JSON columns, which newer rows leave empty).
    "ALTER TABLE spans ADD COLUMN otlp_span BYTEA, ADD COLUMN otlp_resource BYTEA, "
    "ALTER COLUMN attributes SET DEFAULT '', ALTER COLUMN events SET DEFAULT '', "
    "ALTER COLUMN links SET DEFAULT '', ALTER COLUMN resource SET DEFAULT ''",
    _lz4("spans", "otlp_span"),
)

MIGRATIONS: tuple[Migration, ...] = (_V1, _V2, _V3)
"""Every migration in order; append new ones, never edit a released one."""

SCHEMA_VERSION = len(MIGRATIONS)
"""The schema version this code writes."""

_VERSION_TABLE = """CREATE TABLE IF NOT EXISTS otel_lightning_schema (
    version INTEGER PRIMARY KEY,
    applied_ns BIGINT NOT NULL
)"""


def schema_version(conn: Any) -> int:
    """The database's schema version (0 for a database without otel-lightning tables)."""
    found = conn.execute("SELECT to_regclass('otel_lightning_schema') IS NOT NULL").fetchone()[0]
    if not found:
        return 0
    return int(conn.execute("SELECT COALESCE(MAX(version), 0) FROM otel_lightning_schema").fetchone()[0])


def migrate(conn: Any, migrations: Sequence[Migration] = MIGRATIONS, where: str = "") -> int:
    """Bring the database up to ``len(migrations)`` in one transaction; return the version it had.

    ``conn`` is a psycopg connection with no transaction open; nothing is changed if any statement fails.
    Concurrent callers (replicas starting together) wait for each other on an advisory lock.

    Raises:
        ConfigError: The database's schema is newer than ``migrations``, or the server is older than 14.
    """
    if conn.info.server_version < MIN_SERVER_VERSION:
        raise ConfigError(
            f"PostgreSQL {where} is version {conn.info.server_version}; otel-lightning needs 14+"
        )
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        found = schema_version(conn)  # read under the lock: another replica may have just migrated
        if found > len(migrations):
            raise ConfigError(
                f"PostgreSQL database {where} has otel-lightning schema version {found}, newer than this "
                f"otel-lightning knows ({len(migrations)}); upgrade otel-lightning to use it"
            )
        if found == len(migrations):
            return found
        conn.execute(_VERSION_TABLE)
        for number in range(found + 1, len(migrations) + 1):
            for statement in migrations[number - 1]:
                conn.execute(statement)
            conn.execute(
                "INSERT INTO otel_lightning_schema (version, applied_ns) VALUES (%s, %s)",
                (number, time.time_ns()),
            )
    logger.info("migrated PostgreSQL database %s from schema version %s to %s", where, found, len(migrations))
    return found


# --- Statements the store runs against this schema ---------------------------------------------------


def columns(names: Sequence[str], prefix: str = "") -> str:
    """A comma-separated column list."""
    return ", ".join(prefix + c for c in names)


def marks(n: int) -> str:
    """``n`` comma-separated ``%s`` placeholders."""
    return ", ".join(["%s"] * n)


ROLLOUT_SELECT = f"SELECT {columns(ROLLOUT_COLUMNS)} FROM rollouts"
ROLLOUT_INSERT = (
    f"INSERT INTO rollouts ({columns(ROLLOUT_COLUMNS)}, pinned_version) "
    f"VALUES ({marks(len(ROLLOUT_COLUMNS) + 1)}) ON CONFLICT (rollout_id) DO NOTHING RETURNING seq"
)
_QUEUED = f"SELECT pinned_version, {columns(ROLLOUT_COLUMNS)} FROM rollouts WHERE status = 'queued'"
_CLAIMABLE = " ORDER BY seq LIMIT 1 FOR UPDATE SKIP LOCKED"
OLDEST_QUEUED = _QUEUED + _CLAIMABLE
"""The next rollout to claim, locked (rollouts that other claims hold are skipped): pinned version, then
the rollout columns."""
OLDEST_QUEUED_OF = _QUEUED + " AND experiment = ANY(%s)" + _CLAIMABLE
"""The next rollout of some experiments to claim, as :data:`OLDEST_QUEUED`."""
ATTEMPT_SELECT = f"SELECT {columns(ATTEMPT_COLUMNS)} FROM attempts"
ATTEMPT_INSERT = (
    f"INSERT INTO attempts ({columns(ATTEMPT_COLUMNS)}, deadline_ns) "
    f"VALUES ({marks(len(ATTEMPT_COLUMNS) + 1)})"
)
ATTEMPT_RETURNING = f" RETURNING {columns(ATTEMPT_COLUMNS)}"
VERSION_SELECT = f"SELECT {columns(VERSION_COLUMNS)} FROM resource_versions"
VERSION_INSERT = (
    f"INSERT INTO resource_versions ({columns(VERSION_COLUMNS)}) VALUES ({marks(len(VERSION_COLUMNS))})"
)
SPAN_SELECT = f"SELECT {columns(SPAN_READ_COLUMNS)} FROM spans"
LOG_SELECT = f"SELECT {columns(LOG_COLUMNS)} FROM logs"
# Expiry first finds the rollouts with an expired attempt, locks those that no one else holds, and only
# then locks and re-reads their expired attempts: a heartbeat or another replica's expiry in between is seen.
EXPIRED_ROLLOUTS = (
    "SELECT DISTINCT rollout_id FROM attempts "
    "WHERE status = 'running' AND (lease_expires_ns < %(now)s OR deadline_ns < %(now)s)"
)
LOCK_ROLLOUTS = (
    "SELECT rollout_id, status, attempt_id, attempt_count, max_attempts, timeout_s FROM rollouts "
    "WHERE rollout_id = ANY(%(ids)s) ORDER BY rollout_id FOR UPDATE SKIP LOCKED"
)
EXPIRED_ATTEMPTS = (
    f"SELECT {columns(ATTEMPT_COLUMNS)}, deadline_ns FROM attempts "
    "WHERE rollout_id = ANY(%(ids)s) AND status = 'running' "
    "AND (lease_expires_ns < %(now)s OR deadline_ns < %(now)s) ORDER BY started_ns FOR UPDATE"
)
TIME_OUT_ATTEMPT = "UPDATE attempts SET status = 'timed_out', error = %s, ended_ns = %s WHERE attempt_id = %s"
FAIL_ROLLOUT = "UPDATE rollouts SET status = 'failed', error = %s, updated_ns = %s WHERE rollout_id = %s"

# Spans: COPY into a per-connection temporary table, then one INSERT ... SELECT that skips known spans.
# The stage compresses as the table does, so the insert copies compressed values without recompressing;
# inserting in key order means two writers of overlapping batches wait for each other, never deadlock.
SPAN_STAGE = "pg_temp.otel_lightning_spans_stage"
SPAN_STAGE_CREATE = (
    f"CREATE TEMPORARY TABLE IF NOT EXISTS {SPAN_STAGE} "
    "(LIKE spans INCLUDING COMPRESSION INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
)
SPAN_COPY = f"COPY {SPAN_STAGE} ({columns(SPAN_COLUMNS)}) FROM STDIN (FORMAT BINARY)"
"""Binary COPY: the span messages go as raw bytes (text COPY would send bytea as hex, twice the size)."""
SPAN_COPY_TYPES = tuple(
    "int8" if name.endswith("_ns") else "bytea" if name.startswith("otlp_") else "text"
    for name in SPAN_COLUMNS
)
"""The PostgreSQL type of each column of :data:`SPAN_COPY`, which binary COPY needs to be told."""
SPAN_FROM_STAGE = (
    f"INSERT INTO spans ({columns(SPAN_COLUMNS)}) SELECT {columns(SPAN_COLUMNS)} FROM {SPAN_STAGE} "
    "ORDER BY trace_id, span_id ON CONFLICT (trace_id, span_id) DO NOTHING"
)
SPAN_INSERT = (
    f"INSERT INTO spans ({columns(SPAN_COLUMNS)}) VALUES ({marks(len(SPAN_COLUMNS))}) "
    "ON CONFLICT (trace_id, span_id) DO NOTHING"
)
LOG_COPY = f"COPY logs ({columns(LOG_COLUMNS)}) FROM STDIN"
