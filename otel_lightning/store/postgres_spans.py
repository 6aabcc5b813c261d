"""Spans and log records in PostgreSQL: the :class:`~otel_lightning.store.base.SpanStore` half of the store.

Spans are deduplicated on (trace_id, span_id) by the primary key. Two ways to write them, chosen by the
store's ``span_write``: ``"copy"`` streams the rows with COPY into a per-connection temporary table and moves
them with one ``INSERT ... SELECT ... ON CONFLICT DO NOTHING``; ``"pipeline"`` sends one INSERT per span in
libpq pipeline mode. Both insert in key order, so that writers of overlapping batches (a retried OTLP
request reaching two replicas) wait for each other instead of deadlocking. bench/bench_store_postgres.py
measures both.
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import itemgetter
from typing import Literal

from otel_lightning.spans.encoded import EncodedSpan
from otel_lightning.spans.records import LogRecord, SpanRecord
from otel_lightning.store import postgres_schema as sql
from otel_lightning.store.base import SpanQuery, SpanStore
from otel_lightning.store.postgres_db import Connection, Database, DataError, one
from otel_lightning.store.postgres_values import clean_rows
from otel_lightning.store.rows import Row, log_from_row, logs_to_rows, span_from_row

SpanWrite = Literal["copy", "pipeline"]
"""How spans are written: COPY into a staging table then one INSERT ... SELECT, or pipelined INSERTs."""

_BY_KEY = itemgetter(0, 1)  # (trace_id, span_id) of a span row


class PostgresSpanStore(SpanStore):
    """Spans and logs in the database ``_db``; the PostgreSQL store inherits these methods."""

    _db: Database
    _span_write: SpanWrite

    def add_encoded_spans(self, spans: Sequence[EncodedSpan]) -> int:
        if not spans:
            return 0
        try:
            return self._db.retrying(lambda conn: self._write_spans(conn, spans))
        except (UnicodeEncodeError, DataError):
            # Text from OTLP JSON may hold lone surrogates or NUL, which PostgreSQL text cannot: store them
            # replaced rather than lose the batch (the failed transaction was rolled back).
            clean = clean_rows(spans)
            return self._db.retrying(lambda conn: self._write_spans(conn, clean))

    def _write_spans(self, conn: Connection, rows: Sequence[Row]) -> int:
        with conn.cursor() as cur:
            if self._span_write == "copy":
                with cur.copy(sql.SPAN_COPY) as copy:
                    copy.set_types(sql.SPAN_COPY_TYPES)
                    for row in rows:
                        copy.write_row(row)
                cur.execute(sql.SPAN_FROM_STAGE)
            else:
                cur.executemany(sql.SPAN_INSERT, sorted(rows, key=_BY_KEY))
            return max(cur.rowcount, 0)

    def add_logs(self, logs: Sequence[LogRecord]) -> int:
        if not logs:
            return 0
        rows = logs_to_rows(logs)
        try:
            return self._write_logs(rows)
        except (UnicodeEncodeError, DataError):
            return self._write_logs(clean_rows(rows))

    def _write_logs(self, rows: list[Row]) -> int:
        with self._db.transaction() as conn, conn.cursor() as cur, cur.copy(sql.LOG_COPY) as copy:
            for row in rows:
                copy.write_row(row)
        return len(rows)

    def get_spans(self, query: SpanQuery) -> list[SpanRecord]:
        where, params = _span_filter(query)
        with self._db.transaction() as conn:
            rows = conn.execute(
                f"{sql.SPAN_SELECT}{where} ORDER BY start_ns, span_id LIMIT %s",
                (*params, max(query.limit, 0)),
            ).fetchall()
        return [span_from_row(r) for r in rows]

    def get_logs(self, query: SpanQuery) -> list[LogRecord]:
        where, params = _span_filter(query)
        with self._db.transaction() as conn:
            rows = conn.execute(
                f"{sql.LOG_SELECT}{where} ORDER BY time_ns, id LIMIT %s", (*params, max(query.limit, 0))
            ).fetchall()
        return [log_from_row(r) for r in rows]

    def count_spans(self, attempt_id: str) -> int:
        with self._db.transaction() as conn:
            return int(one(conn, "SELECT COUNT(*) FROM spans WHERE attempt_id = %s", (attempt_id,))[0])


def _span_filter(query: SpanQuery) -> tuple[str, tuple[str, ...]]:
    clauses: list[str] = []
    params: list[str] = []
    for column in ("rollout_id", "attempt_id", "trace_id"):
        value = getattr(query, column)
        if value is not None:
            clauses.append(f"{column} = %s")
            params.append(value)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), tuple(params)
