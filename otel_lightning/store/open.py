"""Open the store a database string names: a PostgreSQL URL, or else a SQLite file."""

from __future__ import annotations

from typing import Any

from otel_lightning.store.base import Store

POSTGRES_SCHEMES = ("postgresql://", "postgres://")
"""URL prefixes that name a PostgreSQL database."""


def is_postgres(db: str) -> bool:
    """Whether ``db`` is a PostgreSQL URL."""
    return db.lower().startswith(POSTGRES_SCHEMES)


def open_store(db: str, **options: Any) -> Store:
    """A :class:`~otel_lightning.store.postgres.PostgresStore` for a ``postgresql://`` or ``postgres://``
    URL, else a :class:`~otel_lightning.store.sqlite.SQLiteStore` at the path (``":memory:"`` included).

    ``options`` go to the store's constructor (``clock``; ``pool_size`` and ``span_write`` for PostgreSQL).

    Raises:
        ConfigError: The database cannot be opened or migrated.
        ImportError: A PostgreSQL URL without the ``postgres`` extra installed.
    """
    if is_postgres(db):
        from otel_lightning.store.postgres import PostgresStore  # psycopg is an optional dependency

        return PostgresStore(db, **options)
    from otel_lightning.store.sqlite import SQLiteStore

    return SQLiteStore(db, **options)
