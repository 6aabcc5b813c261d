"""Text PostgreSQL cannot store (NUL, lone surrogates), made storable. Range checks shared with SQLite are in
rows.py."""

from __future__ import annotations

import re
from collections.abc import Sequence

from otel_lightning.store.rows import Row

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def clean_rows(rows: Sequence[Row]) -> list[Row]:
    """The rows with NUL and lone surrogates in their text replaced by U+FFFD (PostgreSQL text holds
    neither; telemetry decoded from OTLP JSON may)."""
    return [tuple(_UNSTORABLE.sub("\ufffd", v) if isinstance(v, str) else v for v in row) for row in rows]
