"""Values PostgreSQL takes: range checks done before a transaction, and text it cannot store made storable.

The checks match the SQLite store's, so both refuse the same input with ValidationError rather than a
driver error.
"""

from __future__ import annotations

import math
import re

from otel_lightning.exceptions import ValidationError
from otel_lightning.store.rows import Row

_INT64_MAX = 2**63 - 1
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def int64(value: int | None, where: str) -> int | None:
    """``value`` if a BIGINT holds it; else ValidationError."""
    if value is not None and not -_INT64_MAX - 1 <= value <= _INT64_MAX:
        raise ValidationError(f"{where} is out of range")
    return value


def seconds_ns(seconds: float, where: str) -> int:
    """A positive duration of at most a week, in nanoseconds; else ValidationError."""
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise ValidationError(f"{where} must be a number of seconds")
    if not (math.isfinite(seconds) and 0 < seconds <= 7 * 86400):
        raise ValidationError(f"{where} must be positive and at most a week")
    return int(seconds * 1e9)


def clean_rows(rows: list[Row]) -> list[Row]:
    """The rows with NUL and lone surrogates in their text replaced by U+FFFD (PostgreSQL text holds
    neither; telemetry decoded from OTLP JSON may)."""
    return [tuple(_UNSTORABLE.sub("\ufffd", v) if isinstance(v, str) else v for v in row) for row in rows]
