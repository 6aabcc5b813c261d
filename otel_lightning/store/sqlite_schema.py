"""How the SQLite store's database is laid out and reached: schema, migrations, connections.

The schema version is ``PRAGMA user_version``. :data:`MIGRATIONS` is append-only: migration ``n`` (1-based)
takes a database from version ``n - 1`` to ``n``. Opening a database applies the missing migrations in one
transaction; a database written by newer code (a higher version than :data:`SCHEMA_VERSION`) is refused with
ConfigError rather than misread.

:class:`Connections` holds one write connection behind a lock (one ``BEGIN IMMEDIATE`` transaction per
store call), a pool of read connections (in WAL mode readers neither block nor wait for the writer, and each
read sees every committed write) and a checkpointer thread that copies the WAL back into the database file,
so that the writer, and whoever waits on its lock, does not.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from otel_lightning.exceptions import ConfigError, OtelLightningError, OverloadedError
from otel_lightning.store.rows import (
    ATTEMPT_COLUMNS,
    LEGACY_SPAN_COLUMNS,
    LOG_COLUMNS,
    ROLLOUT_COLUMNS,
    SPAN_COLUMNS,
    SPAN_READ_COLUMNS,
    VERSION_COLUMNS,
)

logger = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 10_000
"""How long a connection waits for another process's write lock before failing."""

PAGE_SIZE = 16384
"""Page size of new databases. Spans are rows of ~3 KiB: bigger pages mean fewer WAL frames, and so fewer
system calls, per span (16 KiB pages ingest ~1.5x faster than 4 KiB ones, for ~1.3x slower claims)."""

WRITER_CACHE_KIB = 32768
"""Page cache of the write connection, so that the indexes that every write touches stay in memory."""

CHECKPOINT_INTERVAL_S = 0.05
"""How often the checkpointer copies committed WAL frames into the database file."""

RESTART_FRAMES = 512
"""WAL length (in pages) past which the checkpointer briefly holds the write lock to let the WAL restart."""

BACKSTOP_CHECKPOINT_PAGES = 4096
"""WAL size at which the writer checkpoints by itself, should the checkpointer fall behind or fail."""

MAX_IDLE_READERS = 8
"""Read connections kept open between reads; more concurrent readers open (and later close) their own."""

Migration = Sequence[str]
"""The SQL statements of one migration, run in order inside the migrating transaction."""

_V1: Migration = (
    # seq is the insertion order: claims take the oldest queued rollout, and a requeued one keeps its place.
    # pinned_version is what the task asked for; resource_version is what a reader sees (the pinned version,
    # or once claimed, the latest attempt's).
    """CREATE TABLE rollouts (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        rollout_id TEXT NOT NULL UNIQUE,
        experiment TEXT NOT NULL,
        input TEXT NOT NULL,
        status TEXT NOT NULL,
        created_ns INTEGER NOT NULL,
        updated_ns INTEGER NOT NULL,
        max_attempts INTEGER NOT NULL,
        attempt_count INTEGER NOT NULL DEFAULT 0,
        pinned_version INTEGER,
        resource_version INTEGER,
        timeout_s REAL,
        metadata TEXT NOT NULL,
        attempt_id TEXT,
        reward REAL,
        error TEXT
    )""",
    # The oldest queued rollout, of any experiment or of one, is the first entry of an index.
    "CREATE INDEX rollouts_queued ON rollouts (seq) WHERE status = 'queued'",
    "CREATE INDEX rollouts_by_experiment ON rollouts (experiment, status, seq)",
    """CREATE TABLE attempts (
        attempt_id TEXT PRIMARY KEY,
        rollout_id TEXT NOT NULL REFERENCES rollouts (rollout_id),
        experiment TEXT NOT NULL,
        sequence INTEGER NOT NULL,
        status TEXT NOT NULL,
        worker_id TEXT NOT NULL,
        resource_version INTEGER NOT NULL,
        started_ns INTEGER NOT NULL,
        lease_expires_ns INTEGER NOT NULL,
        deadline_ns INTEGER,
        ended_ns INTEGER,
        reward REAL,
        error TEXT,
        span_count INTEGER,
        UNIQUE (rollout_id, sequence)
    )""",
    # Only running attempts can expire; there are about as many as workers, so the watchdog's scan is small.
    "CREATE INDEX attempts_running ON attempts (lease_expires_ns) WHERE status = 'running'",
    """CREATE TABLE claims (
        request_id TEXT PRIMARY KEY,
        attempt_id TEXT NOT NULL REFERENCES attempts (attempt_id),
        created_ns INTEGER NOT NULL
    )""",
    """CREATE TABLE resource_versions (
        experiment TEXT NOT NULL,
        version INTEGER NOT NULL,
        resources TEXT NOT NULL,
        created_ns INTEGER NOT NULL,
        metadata TEXT NOT NULL,
        PRIMARY KEY (experiment, version)
    )""",
    """CREATE TABLE spans (
        trace_id TEXT NOT NULL,
        span_id TEXT NOT NULL,
        parent_span_id TEXT,
        name TEXT NOT NULL,
        kind TEXT NOT NULL,
        start_ns INTEGER NOT NULL,
        end_ns INTEGER NOT NULL,
        status_code TEXT NOT NULL,
        status_message TEXT NOT NULL,
        rollout_id TEXT,
        attempt_id TEXT,
        experiment TEXT,
        scope_name TEXT NOT NULL,
        scope_version TEXT NOT NULL,
        attributes TEXT NOT NULL,
        events TEXT NOT NULL,
        links TEXT NOT NULL,
        resource TEXT NOT NULL,
        PRIMARY KEY (trace_id, span_id)
    )""",
    # Partial indexes: spans from outside any rollout cost no index writes.
    "CREATE INDEX spans_by_attempt ON spans (attempt_id, start_ns) WHERE attempt_id IS NOT NULL",
    "CREATE INDEX spans_by_rollout ON spans (rollout_id, start_ns) WHERE rollout_id IS NOT NULL",
    """CREATE TABLE logs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        time_ns INTEGER NOT NULL,
        observed_ns INTEGER NOT NULL,
        trace_id TEXT,
        span_id TEXT,
        severity_number INTEGER NOT NULL,
        severity_text TEXT NOT NULL,
        event_name TEXT NOT NULL,
        scope_name TEXT NOT NULL,
        rollout_id TEXT,
        attempt_id TEXT,
        experiment TEXT,
        body TEXT NOT NULL,
        attributes TEXT NOT NULL,
        resource TEXT NOT NULL
    )""",
    "CREATE INDEX logs_by_attempt ON logs (attempt_id, time_ns) WHERE attempt_id IS NOT NULL",
    "CREATE INDEX logs_by_rollout ON logs (rollout_id, time_ns) WHERE rollout_id IS NOT NULL",
    "CREATE INDEX logs_by_trace ON logs (trace_id, time_ns) WHERE trace_id IS NOT NULL",
)

_V2: Migration = (
    # Spans keep their OTLP message (spans/encoded.py): ingest no longer decodes attributes into JSON. Rows
    # written before stay as they are (read through the JSON columns, which newer rows leave empty).
    "ALTER TABLE spans ADD COLUMN otlp_span BLOB",
    "ALTER TABLE spans ADD COLUMN otlp_resource BLOB",
)

MIGRATIONS: tuple[Migration, ...] = (_V1, _V2)
"""Every migration in order; append new ones, never edit a released one."""

SCHEMA_VERSION = len(MIGRATIONS)
"""The schema version this code writes."""


# --- Statements the store runs against this schema ---------------------------------------------------


def columns(names: Sequence[str], prefix: str = "") -> str:
    """A comma-separated column list."""
    return ", ".join(prefix + c for c in names)


def marks(n: int) -> str:
    """``n`` comma-separated ``?`` placeholders."""
    return ", ".join("?" * n)


ROLLOUT_SELECT = f"SELECT {columns(ROLLOUT_COLUMNS)} FROM rollouts"
_QUEUED = f"SELECT seq, pinned_version, {columns(ROLLOUT_COLUMNS)} FROM rollouts WHERE status = 'queued'"
OLDEST_QUEUED = f"{_QUEUED} ORDER BY seq LIMIT 1"
"""The next rollout to claim: seq, pinned version, then the rollout columns."""
OLDEST_QUEUED_OF = f"{_QUEUED} AND experiment = ? ORDER BY seq LIMIT 1"
"""The next rollout of one experiment to claim, as :data:`OLDEST_QUEUED`."""
ROLLOUT_INSERT = (
    f"INSERT INTO rollouts ({columns(ROLLOUT_COLUMNS)}, pinned_version) "
    f"VALUES ({marks(len(ROLLOUT_COLUMNS) + 1)}) ON CONFLICT (rollout_id) DO NOTHING"
)
ATTEMPT_SELECT = f"SELECT {columns(ATTEMPT_COLUMNS)} FROM attempts"
ATTEMPT_INSERT = (
    f"INSERT INTO attempts ({columns(ATTEMPT_COLUMNS)}, deadline_ns) "
    f"VALUES ({marks(len(ATTEMPT_COLUMNS) + 1)})"
)
VERSION_SELECT = f"SELECT {columns(VERSION_COLUMNS)} FROM resource_versions"
VERSION_INSERT = (
    f"INSERT INTO resource_versions ({columns(VERSION_COLUMNS)}) VALUES ({marks(len(VERSION_COLUMNS))})"
)
SPAN_SELECT = f"SELECT {columns(SPAN_READ_COLUMNS)} FROM spans"
_EMPTY_LEGACY = ", ".join("''" for _ in LEGACY_SPAN_COLUMNS)
_SPAN_VALUES = f"({marks(len(SPAN_COLUMNS))}, {_EMPTY_LEGACY})"


def span_insert(rows: int) -> str:
    """Insert ``rows`` :class:`~otel_lightning.spans.encoded.EncodedSpan` rows, their values flattened into
    one parameter list; a known (trace_id, span_id) is skipped."""
    values = ", ".join([_SPAN_VALUES] * rows)
    names = f"{columns(SPAN_COLUMNS)}, {columns(LEGACY_SPAN_COLUMNS)}"
    return f"INSERT OR IGNORE INTO spans ({names}) VALUES {values}"


SPAN_INSERT = span_insert(1)
"""Insert one span (a row of :data:`SPAN_COLUMNS`)."""
SPANS_PER_INSERT = 128
"""Spans one :data:`SPAN_INSERT_MANY` statement carries (2,048 parameters, well within SQLite's 32,766)."""
SPAN_INSERT_MANY = span_insert(SPANS_PER_INSERT)
"""Insert :data:`SPANS_PER_INSERT` spans in one statement. Each statement releases and takes back the GIL
once: row by row, a writer thread would wait for the GIL after every row while the event loop decodes the
next requests (~5 ms each time), and ingest would run no faster than decoding and writing in turn."""
LOG_SELECT = f"SELECT {columns(LOG_COLUMNS)} FROM logs"
LOG_INSERT = f"INSERT INTO logs ({columns(LOG_COLUMNS)}) VALUES ({marks(len(LOG_COLUMNS))})"
# Expiry needs the attempt, its deadline and its rollout's limits in one pass.
EXPIRY_SELECT = (
    f"SELECT {columns(ATTEMPT_COLUMNS, 'a.')}, a.deadline_ns, r.timeout_s, r.attempt_count, r.max_attempts, "
    "r.status, r.attempt_id FROM attempts AS a JOIN rollouts AS r ON r.rollout_id = a.rollout_id "
    "WHERE a.status = 'running' AND (a.lease_expires_ns < ? OR a.deadline_ns < ?) ORDER BY a.started_ns"
)


def schema_version(conn: sqlite3.Connection) -> int:
    """The database's schema version (0 for a new, empty database)."""
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def _refuse_newer(path: str, found: int, known: int) -> None:
    if found > known:
        raise ConfigError(
            f"SQLite database {path!r} has schema version {found}, newer than this otel-lightning knows "
            f"({known}); upgrade otel-lightning to open it"
        )


def migrate(conn: sqlite3.Connection, migrations: Sequence[Migration] = MIGRATIONS, path: str = "") -> int:
    """Bring the database up to ``len(migrations)`` in one transaction; return the version it had.

    ``conn`` must be in autocommit mode (``isolation_level=None``). Nothing is changed if any statement fails.
    """
    conn.execute("BEGIN IMMEDIATE")  # re-read the version under the write lock: another process may migrate
    try:
        found = schema_version(conn)
        _refuse_newer(path, found, len(migrations))
        for number in range(found + 1, len(migrations) + 1):
            for statement in migrations[number - 1]:
                conn.execute(statement)
        if found != len(migrations):
            conn.execute(f"PRAGMA user_version = {len(migrations):d}")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    if found != len(migrations):
        logger.info("migrated SQLite database %s from schema version %s to %s", path, found, len(migrations))
    return found


def _connect(path: str) -> sqlite3.Connection:
    try:
        # Autocommit mode: the store issues BEGIN IMMEDIATE / COMMIT itself. check_same_thread is off because
        # the store hands a connection from thread to thread, never to two threads at once.
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS:d}")
    except sqlite3.Error as exc:
        raise ConfigError(f"cannot open SQLite database {path!r}: {exc}") from None
    return conn


def open_writer(path: str, migrations: Sequence[Migration] = MIGRATIONS) -> sqlite3.Connection:
    """Open the database's write connection: WAL, synchronous=NORMAL, foreign keys, schema migrated."""
    conn = _connect(path)
    try:
        # Refuse a newer database before changing anything in it (even its journal mode).
        _refuse_newer(path, schema_version(conn), len(migrations))
        if conn.execute("PRAGMA page_count").fetchone()[0] == 0:  # only a new database can pick its page size
            conn.execute(f"PRAGMA page_size = {PAGE_SIZE:d}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode != "wal" and path not in ("", ":memory:"):
            logger.warning("SQLite database %s runs in journal mode %s, not WAL", path, mode)
        # In WAL mode NORMAL loses no committed transaction on a process crash, only on power loss.
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute(f"PRAGMA cache_size = -{WRITER_CACHE_KIB:d}")
        conn.execute("PRAGMA journal_size_limit = 67108864")  # a burst's large WAL shrinks back after it
        migrate(conn, migrations, path)
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise ConfigError(f"cannot use SQLite database {path!r}: {exc}") from None
    except BaseException:
        conn.close()
        raise
    return conn


def open_reader(path: str) -> sqlite3.Connection:
    """Open a read-only connection to a database the writer has already prepared."""
    conn = _connect(path)
    conn.execute("PRAGMA query_only = ON")
    return conn


class Connections:
    """The connections of one database: a locked writer and pooled readers.

    A reading thread holds a read connection of its own for the length of one read, taken from an idle pool
    so that reads never share a connection and a pool of server threads reuses a few. ``":memory:"`` (or
    ``""``) names a private database per connection, so there the writer serves reads too, under the lock.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._shared = path in ("", ":memory:")
        self._lock = threading.Lock()
        self._pool_lock = threading.Lock()
        self._idle: list[sqlite3.Connection] = []
        self._closed = False
        self._writer = open_writer(path)
        self._checkpointer: _Checkpointer | None = None
        if not self._shared:
            self._writer.execute(f"PRAGMA wal_autocheckpoint = {BACKSTOP_CHECKPOINT_PAGES:d}")
            self._checkpointer = _Checkpointer(path, self._lock)
            self._checkpointer.start()

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: committed if the block returns, rolled back if it raises."""
        with self._lock:
            if self._closed:
                raise OtelLightningError("the SQLite store is closed")
            conn = self._writer
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:  # another process held the lock past busy_timeout
                raise OverloadedError(f"the SQLite database is busy: {exc}") from None
            try:
                yield conn
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A connection for reading (autocommit: each statement sees the latest commit)."""
        if self._shared:
            with self._lock:
                if self._closed:
                    raise OtelLightningError("the SQLite store is closed")
                yield self._writer
            return
        with self._pool_lock:
            if self._closed:
                raise OtelLightningError("the SQLite store is closed")
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            conn = open_reader(self.path)
        try:
            yield conn
        finally:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            with self._pool_lock:
                keep = not self._closed and len(self._idle) < MAX_IDLE_READERS
                if keep:
                    self._idle.append(conn)
            if not keep:
                conn.close()

    def close(self) -> None:
        """Close every connection; safe to call twice. An in-flight read closes its own when it ends."""
        with self._lock, self._pool_lock:
            if self._closed:
                return
            self._closed = True
            idle, self._idle = self._idle, []
        if self._checkpointer is not None:
            self._checkpointer.stop()
        for conn in idle:
            conn.close()
        try:
            # Keeps the planner's statistics useful; the limit bounds the work on a large database.
            self._writer.execute("PRAGMA analysis_limit = 400")
            self._writer.execute("PRAGMA optimize")
        except sqlite3.Error:
            logger.debug("PRAGMA optimize failed on %s", self.path, exc_info=True)
        self._writer.close()


class _Checkpointer(threading.Thread):
    """Copies the WAL into the database file on its own connection, in the background.

    SQLite's default makes the transaction that crosses the WAL threshold copy it, under the write lock: a
    claim would wait behind megabytes of span pages. Here the copy runs beside the writer (SQLite releases
    the GIL); once the WAL is long, a short final pass under the write lock lets the next write start it
    afresh.
    """

    def __init__(self, path: str, write_lock: threading.Lock) -> None:
        super().__init__(name=f"sqlite-checkpoint {path}", daemon=True)
        self._path = path
        self._write_lock = write_lock
        self._stopping = threading.Event()

    def run(self) -> None:
        conn = _connect(self._path)
        conn.execute("PRAGMA synchronous = NORMAL")
        try:
            while not self._stopping.wait(CHECKPOINT_INTERVAL_S):
                try:
                    _, frames, _ = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    if frames >= RESTART_FRAMES:
                        # Under steady writes the copy never reaches the WAL's end, and SQLite only starts
                        # the WAL afresh once it has: copy the last frames while no writer runs.
                        with self._write_lock:
                            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                except sqlite3.Error:
                    logger.warning("checkpoint of %s failed; retrying", self._path, exc_info=True)
        finally:
            conn.close()

    def stop(self) -> None:
        """Stop after the checkpoint in progress, if any."""
        self._stopping.set()
        self.join()
