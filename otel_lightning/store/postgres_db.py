"""The PostgreSQL store's connections: a migrated database, a connection pool, transactions, a change feed.

Each store call runs in one transaction on a pooled connection (:meth:`Database.transaction`); a transaction
that PostgreSQL rolled back to break a deadlock runs again (:meth:`Database.retrying`). Lost connections and
an exhausted pool become OverloadedError (HTTP 503), which clients retry where a call may be retried.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from otel_lightning.exceptions import ConfigError, OverloadedError
from otel_lightning.store import postgres_schema as sql
from otel_lightning.store.changes import ChangeFeed
from otel_lightning.store.rows import Row

try:
    import psycopg
    from psycopg import errors as pg_errors
    from psycopg.conninfo import conninfo_to_dict
    from psycopg_pool import ConnectionPool, PoolTimeout
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "the PostgreSQL store needs the postgres extra: pip install 'otel-lightning[postgres]'"
    ) from exc

logger = logging.getLogger(__name__)

Connection = psycopg.Connection[Any]
T = TypeVar("T")

TOPICS = ("queue", "rollouts")
"""The change topics (the values of ``collector.notify.Topic``, which the store does not import)."""

_RETRIES = 3

DataError = psycopg.DataError
"""Raised for values PostgreSQL cannot store (NUL in text, say)."""
UniqueViolation = pg_errors.UniqueViolation


class Database:
    """One PostgreSQL database, migrated on open, reached through a pool of ``pool_size`` connections.

    Raises:
        ConfigError: The server cannot be reached, is older than 14, or holds a newer schema.
    """

    def __init__(self, url: str, pool_size: int) -> None:
        if pool_size < 1:
            raise ConfigError("pool_size must be at least 1")
        self.url = url
        self.where = describe(url)
        try:
            with psycopg.connect(url, connect_timeout=10) as conn:
                sql.migrate(conn, where=self.where)
        except psycopg.Error as exc:
            raise ConfigError(f"cannot use PostgreSQL database {self.where}: {exc}") from None
        self._pool: ConnectionPool[Connection] = ConnectionPool(
            url,
            min_size=min(2, pool_size),
            max_size=pool_size,
            configure=_configure,
            check=ConnectionPool.check_connection,  # a connection broken while idle is replaced, not used
            timeout=10.0,
            name=f"otel-lightning {self.where}",
            open=True,
        )
        self.feed = ChangeFeed(self._listener, sql.CHANNEL, TOPICS)

    def close(self) -> None:
        """Stop the change feed and close every connection; safe to call twice."""
        self.feed.close()
        self._pool.close()

    def _listener(self) -> Connection:
        return psycopg.connect(self.url, autocommit=True, connect_timeout=10)

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A pooled connection in a transaction: committed if the block returns, rolled back if it raises."""
        try:
            with self._pool.connection() as conn:
                yield conn
        except PoolTimeout:
            raise OverloadedError(f"no connection to PostgreSQL {self.where} came free in time") from None
        except pg_errors.TransactionRollback:
            raise  # a deadlock or serialization failure: the whole transaction may run again
        except psycopg.OperationalError as exc:
            raise OverloadedError(f"PostgreSQL {self.where} is unavailable: {exc}") from None

    def retrying(self, work: Callable[[Connection], T]) -> T:
        """``work(conn)`` in a transaction, run again if PostgreSQL rolled it back to break a deadlock."""
        for attempt in range(_RETRIES):
            try:
                with self.transaction() as conn:
                    return work(conn)
            except pg_errors.TransactionRollback:
                if attempt == _RETRIES - 1:
                    raise OverloadedError(
                        f"PostgreSQL {self.where}: the transaction kept conflicting"
                    ) from None
                logger.debug("transaction rolled back by PostgreSQL; running it again", exc_info=True)
        raise AssertionError("unreachable")


def _configure(conn: Connection) -> None:
    """Prepare a new pooled connection: its span staging table."""
    conn.execute(sql.SPAN_STAGE_CREATE)
    conn.commit()


def notify(conn: Connection, *topics: str) -> None:
    """Tell every replica's change feed about the topics when this transaction commits (not if it rolls
    back)."""
    for topic in topics:
        conn.execute(f"NOTIFY {sql.CHANNEL}, '{topic}'")


def one(conn: Connection, query: str, params: Sequence[Any]) -> Row:
    """The first row of a query that always returns one."""
    row = conn.execute(query, params).fetchone()
    assert row is not None, query
    return tuple(row)


def describe(url: str) -> str:
    """``host:port/dbname`` of a connection URL, for messages (never the password)."""
    try:
        info = conninfo_to_dict(url)
    except psycopg.ProgrammingError:  # a malformed URL: psycopg.connect reports it in full
        return "(unparsable URL)"
    host = info.get("host") or "localhost"
    return f"{host}:{info.get('port') or 5432}/{info.get('dbname') or info.get('user') or ''}"
