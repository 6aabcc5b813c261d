"""Schemathesis against the REST API's own OpenAPI document (served at /api/v1/openapi.json): generated
requests to every operation never get a 500. The OTLP decoder is fuzzed in tests/spans/test_otlp.py."""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402

from otel_lightning.collector.app import create_app  # noqa: E402
from otel_lightning.config import ServerSettings  # noqa: E402
from otel_lightning.store.sqlite import SQLiteStore  # noqa: E402

# Long-polls are capped at 0.05 s so that generated waits (any timeout_s) stay fast.
SETTINGS = ServerSettings.resolve(env={}, db=":memory:", max_wait_s=0.05)
APP = create_app(SQLiteStore(":memory:"), SETTINGS)  # the store outlives lifespans: not closed
schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", APP)


@schema.parametrize()
@settings(max_examples=100, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_rel_generated_requests_get_no_server_error(case) -> None:  # type: ignore[no-untyped-def]
    case.call_and_validate(checks=[not_a_server_error])
