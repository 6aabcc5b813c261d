"""Settings, resolved in one place: explicit argument -> environment variable -> default.

The server fails loudly on a bad setting (ConfigError); the client logs a warning and falls back to the
default, since instrumentation must never break the agent it runs in. The standard ``OTEL_SERVICE_NAME`` and
``OTEL_EXPORTER_OTLP_*`` variables are honoured on the client.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar
from urllib.parse import unquote

from otel_lightning.exceptions import ConfigError

logger = logging.getLogger(__name__)

DEFAULT_PORT = 8318
"""Default server port. Not 4318, so that an OpenTelemetry Collector can hold the standard port in front."""
DEFAULT_SERVER_URL = f"http://127.0.0.1:{DEFAULT_PORT}"
DEFAULT_SERVICE_NAME = "otel-lightning-agent"

ENV_PREFIX = "OTEL_LIGHTNING_"

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """How the server runs. Each field can be set by ``OTEL_LIGHTNING_<FIELD>`` (upper case)."""

    db: str = "otel-lightning.db"
    """SQLite file path (``:memory:`` for a throw-away store), or a ``postgresql://`` URL."""
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    max_body_bytes: int = 20 * 1024 * 1024
    """Largest request body accepted, measured after decompression (larger -> 413)."""
    ingest_queue_spans: int = 200_000
    """Spans waiting to be written before OTLP requests get 503 + Retry-After."""
    lease_s: float = 30.0
    """How long a claimed attempt lives without a heartbeat."""
    watchdog_interval_s: float = 1.0
    """How often expired leases are looked for."""
    max_wait_s: float = 60.0
    """Longest long-poll a client may ask for."""
    completeness_grace_s: float = 5.0
    """How long after completion a trace with missing spans is still expected to fill in."""
    api_token: str | None = None
    """If set, every /api request needs ``Authorization: Bearer <token>``."""

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port {self.port} is outside 0..65535")
        for name in ("max_body_bytes", "ingest_queue_spans"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be positive")
        for name in ("lease_s", "watchdog_interval_s", "max_wait_s"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive")
        if self.completeness_grace_s < 0:
            raise ConfigError("completeness_grace_s must not be negative")

    @classmethod
    def resolve(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> ServerSettings:
        """Build settings from explicit values (``None`` means unset), then the environment, then defaults."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            if overrides.get(f.name) is not None:
                values[f.name] = overrides[f.name]
                continue
            raw = env.get(ENV_PREFIX + f.name.upper())
            if raw is None:
                continue
            values[f.name] = _parse(raw, f.type, ENV_PREFIX + f.name.upper())
        unknown = set(overrides) - {f.name for f in fields(cls)}
        if unknown:
            raise ConfigError(f"unknown server settings: {sorted(unknown)}")
        return cls(**values)


def _parse(raw: str, type_name: Any, where: str) -> Any:
    kind = str(type_name)
    try:
        if kind.startswith("int"):
            return int(raw)
        if kind.startswith("float"):
            return float(raw)
    except ValueError:
        raise ConfigError(f"{where}={raw!r} is not a number") from None
    return raw


@dataclass(frozen=True, slots=True)
class ClientSettings:
    """Where an instrumented agent or worker sends its data."""

    server_url: str = DEFAULT_SERVER_URL
    """Base URL of the otel-lightning server (REST API and, unless overridden, OTLP)."""
    traces_endpoint: str = ""
    """Full OTLP/HTTP traces URL; defaults to ``<server_url>/v1/traces``."""
    logs_endpoint: str = ""
    """Full OTLP/HTTP logs URL; defaults to ``<server_url>/v1/logs``."""
    service_name: str = DEFAULT_SERVICE_NAME
    headers: Mapping[str, str] = field(default_factory=dict)
    """Extra headers on every OTLP and REST request (``OTEL_EXPORTER_OTLP_HEADERS``)."""
    api_token: str | None = None

    @classmethod
    def resolve(
        cls,
        server_url: str | None = None,
        service_name: str | None = None,
        api_token: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> ClientSettings:
        """Resolve the client's settings; bad environment values are logged and ignored."""
        env = os.environ if env is None else env
        url = _first(
            server_url,
            env.get(ENV_PREFIX + "SERVER"),
            env.get("OTEL_EXPORTER_OTLP_ENDPOINT"),
            default=DEFAULT_SERVER_URL,
            check=_is_http_url,
            what="server URL",
        ).rstrip("/")
        traces = _first(
            env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
            default=f"{url}/v1/traces",
            check=_is_http_url,
            what="OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        )
        logs = _first(
            env.get("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT"),
            default=f"{url}/v1/logs",
            check=_is_http_url,
            what="OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
        )
        name = _first(
            service_name,
            env.get("OTEL_SERVICE_NAME"),
            default=DEFAULT_SERVICE_NAME,
            check=bool,
            what="service name",
        )
        token = api_token or env.get(ENV_PREFIX + "API_TOKEN") or None
        headers = _parse_headers(env.get("OTEL_EXPORTER_OTLP_HEADERS", ""))
        if token:
            headers.setdefault("authorization", f"Bearer {token}")
        return cls(
            server_url=url,
            traces_endpoint=traces,
            logs_endpoint=logs,
            service_name=name,
            headers=headers,
            api_token=token,
        )


def _first(*candidates: str | None, default: str, check: Callable[[str], bool], what: str) -> str:
    for value in candidates:
        if value is None or value == "":
            continue
        if check(value):
            return value
        logger.warning("ignoring invalid %s %r; using %r", what, value, default)
        return default
    return default


def _is_http_url(value: str) -> bool:
    return value.startswith(("http://", "https://"))


def _parse_headers(raw: str) -> dict[str, str]:
    """Parse ``OTEL_EXPORTER_OTLP_HEADERS`` (``k1=v1,k2=v2``, values URL-encoded), skipping bad entries."""
    headers: dict[str, str] = {}
    for item in raw.split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            logger.warning("ignoring malformed OTEL_EXPORTER_OTLP_HEADERS entry %r", item)
            continue
        headers[key.strip().lower()] = unquote(value.strip())
    return headers
