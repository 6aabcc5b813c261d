"""Fixtures of the replica tests: a scratch PostgreSQL database per test (skipped where there is none)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.store.pg_scratch import require_postgres, scratch_database


@pytest.fixture
def pg_database() -> Iterator[str]:
    """The URL of a new, empty database, dropped after the test."""
    require_postgres()
    with scratch_database() as url:
        yield url
