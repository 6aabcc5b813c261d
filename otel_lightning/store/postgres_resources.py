"""Resource versions in PostgreSQL: the :class:`~otel_lightning.store.base.ResourceStore` part of the store.

Versions are numbered 1, 2, ... per experiment under the primary key (experiment, version). Publishers of
one experiment take turns on a transaction-level advisory lock, on every replica, so that the
expected-version check (compare-and-swap) and the insert see the same latest version: a publisher that loses
the race gets ConflictError, never a duplicate version.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from otel_lightning.exceptions import ConflictError, NotFoundError
from otel_lightning.resources import JSON, Resource, ResourceVersion
from otel_lightning.store import postgres_schema as sql
from otel_lightning.store.base import ResourceStore
from otel_lightning.store.postgres_db import Connection, Database, UniqueViolation, one
from otel_lightning.store.rows import (
    int64,
    loads,
    prepare_publish,
    version_from_row,
)


class PostgresResourceStore(ResourceStore):
    """Resource versions in the database ``_db``; the PostgreSQL store inherits these methods."""

    _db: Database
    _clock: Callable[[], int]

    def publish(
        self,
        experiment: str,
        resources: Mapping[str, Resource],
        expected_version: int | None = None,
        metadata: Mapping[str, JSON] | None = None,
    ) -> ResourceVersion:
        text, decoded, meta_text = prepare_publish(experiment, resources, expected_version, metadata)

        def work(conn: Connection) -> ResourceVersion:
            # Publishers of one experiment take turns, on every replica: the check and the insert see the
            # same latest version. The primary key (experiment, version) stands behind it.
            conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", ("publish:" + experiment,))
            latest = latest_version(conn, experiment)
            if expected_version is not None and expected_version != latest:
                raise ConflictError(
                    f"experiment {experiment!r}: expected resource version {expected_version}, "
                    f"but the latest is {latest}"
                )
            now = self._clock()
            try:
                conn.execute(sql.VERSION_INSERT, (experiment, latest + 1, text, now, meta_text))
            except UniqueViolation:
                raise ConflictError(f"experiment {experiment!r}: version {latest + 1} exists") from None
            return ResourceVersion(experiment, latest + 1, decoded, now, loads(meta_text))

        return self._db.retrying(work)

    def get_resources(self, experiment: str, version: int | None = None) -> ResourceVersion:
        int64(version, "version")
        if version == 0:
            return ResourceVersion(experiment, 0, {})
        with self._db.transaction() as conn:
            if version is None:
                row = conn.execute(
                    sql.VERSION_SELECT + " WHERE experiment = %s ORDER BY version DESC LIMIT 1", (experiment,)
                ).fetchone()
                if row is None:
                    return ResourceVersion(experiment, 0, {})
            else:
                row = conn.execute(
                    sql.VERSION_SELECT + " WHERE experiment = %s AND version = %s", (experiment, version)
                ).fetchone()
                if row is None:
                    raise NotFoundError(f"experiment {experiment!r} has no resource version {version}")
        return version_from_row(row)

    def list_versions(self, experiment: str) -> list[ResourceVersion]:
        with self._db.transaction() as conn:
            rows = conn.execute(
                sql.VERSION_SELECT + " WHERE experiment = %s ORDER BY version", (experiment,)
            ).fetchall()
        return [version_from_row(r) for r in rows]


def latest_version(conn: Connection, experiment: str) -> int:
    """The experiment's latest resource version (0 before the first)."""
    row = one(
        conn, "SELECT COALESCE(MAX(version), 0) FROM resource_versions WHERE experiment = %s", (experiment,)
    )
    return int(row[0])
