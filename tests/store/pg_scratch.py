"""Scratch PostgreSQL databases and schemas for tests, created with random names and dropped afterwards.

The server is the one at ``$OTEL_LIGHTNING_TEST_POSTGRES_URL`` (default: the local one, database ``test``,
which is only used to create and drop databases). Where it cannot be reached, or psycopg is not installed,
:func:`require_postgres` skips the test and says why.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from urllib.parse import urlsplit

import pytest

ADMIN_URL = os.environ.get("OTEL_LIGHTNING_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
PREFIX = "otel_lightning_test_"


@cache
def unavailable_reason() -> str | None:
    """Why PostgreSQL tests cannot run here, or None when they can."""
    try:
        import psycopg
        import psycopg_pool  # noqa: F401
    except ImportError as exc:
        return f"the postgres extra is not installed ({exc})"
    try:
        with psycopg.connect(ADMIN_URL, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return f"no PostgreSQL at {urlsplit(ADMIN_URL).netloc}: {str(exc).strip()}"
    return None


def require_postgres() -> None:
    """Skip the calling test unless a PostgreSQL server is reachable."""
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(reason)


def database_url(name: str) -> str:
    """The admin URL with another database name."""
    return urlsplit(ADMIN_URL)._replace(path="/" + name).geturl()


def with_schema(url: str, schema: str) -> str:
    """``url`` with ``search_path`` set to ``schema`` for every connection."""
    return f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}"


def _admin(statement: str) -> None:
    import psycopg

    with psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
        conn.execute(statement)


def create_database() -> str:
    """A new empty database with a random name; its URL. Drop it with :func:`drop_database`."""
    require_postgres()
    name = PREFIX + uuid.uuid4().hex[:12]
    _admin(f'CREATE DATABASE "{name}"')
    return database_url(name)


def drop_database(url: str) -> None:
    """Drop a database made by :func:`create_database`, closing its connections."""
    name = urlsplit(url).path.lstrip("/")
    assert name.startswith(PREFIX), name  # never anything else
    _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def scratch_database() -> Iterator[str]:
    """A database for the block, dropped after it."""
    url = create_database()
    try:
        yield url
    finally:
        drop_database(url)


class SharedDatabase:
    """One scratch database for a test session, created on first use, holding a fresh schema per test."""

    def __init__(self) -> None:
        self.url: str | None = None

    def fresh_schema(self) -> str:
        """The URL of a new, empty schema (tables of different tests never meet)."""
        import psycopg

        if self.url is None:
            self.url = create_database()
        schema = "s_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
        return with_schema(self.url, schema)

    def drop(self) -> None:
        if self.url is not None:
            drop_database(self.url)
            self.url = None
