"""Store fixtures: every conformance test runs against each store in STORE_FACTORIES.

To run the suite against a new store, add its factory here (and to CONCURRENT_STORES if its connections run
in parallel, as a server's would). The PostgreSQL store runs in a fresh schema of one scratch database per
session (tests/store/pg_scratch.py), and is skipped where no server can be reached.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from otel_lightning.store.base import Store
from otel_lightning.store.sqlite import SQLiteStore
from tests.store.pg_scratch import SharedDatabase, require_postgres


class FakeClock:
    """A clock that stands still until told to move; pass it as a store's ``clock``."""

    def __init__(self, start_ns: int = 1_700_000_000_000_000_000) -> None:
        self.now_ns = start_ns

    def __call__(self) -> int:
        return self.now_ns

    def advance(self, seconds: float) -> int:
        """Move forward; return the new time."""
        self.now_ns += int(seconds * 1e9)
        return self.now_ns


StoreFactory = Callable[[Path, FakeClock], Store]
"""Builds a fresh, empty store from a private directory and a clock."""

POSTGRES = SharedDatabase()


def _postgres(tmp_path: Path, clock: FakeClock) -> Store:
    require_postgres()
    from otel_lightning.store.postgres import PostgresStore

    return PostgresStore(POSTGRES.fresh_schema(), clock=clock, pool_size=8)


STORE_FACTORIES: dict[str, StoreFactory] = {
    "sqlite-file": lambda tmp_path, clock: SQLiteStore(tmp_path / "store.db", clock=clock),
    "sqlite-memory": lambda tmp_path, clock: SQLiteStore(":memory:", clock=clock),
    "postgres": _postgres,
}

CONCURRENT_STORES = ("sqlite-file", "postgres")
"""Stores whose readers and writers really run in parallel: the concurrency tests use these."""


@pytest.fixture(scope="session", autouse=True)
def _drop_postgres_scratch() -> Iterator[None]:
    yield
    POSTGRES.drop()


@pytest.fixture
def postgres_url() -> str:
    """The URL of a fresh, empty schema in the session's scratch PostgreSQL database (skips without one)."""
    require_postgres()
    return POSTGRES.fresh_schema()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def _open(name: str, tmp_path: Path, clock: FakeClock) -> Iterator[Store]:
    store = STORE_FACTORIES[name](tmp_path, clock)
    try:
        yield store
    finally:
        store.close()


@pytest.fixture(params=list(STORE_FACTORIES))
def store(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock) -> Iterator[Store]:
    """A fresh store of each kind, driven by the ``clock`` fixture."""
    yield from _open(request.param, tmp_path, clock)


@pytest.fixture(params=CONCURRENT_STORES)
def concurrent_store(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock) -> Iterator[Store]:
    """A fresh store of each kind that serves many threads at once."""
    yield from _open(request.param, tmp_path, clock)
