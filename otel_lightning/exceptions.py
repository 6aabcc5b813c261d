"""Errors raised by otel-lightning.

Every error derives from :class:`OtelLightningError`, so ``except OtelLightningError`` catches all of them::

    OtelLightningError
    ├── ConfigError            a setting has a value that cannot work
    ├── ValidationError        a request or record is malformed (HTTP 400/422)
    │   ├── DecodeError        an OTLP body cannot be decoded (HTTP 400)
    │   └── ResourceError      a resource is invalid, or a template cannot be rendered
    ├── PayloadTooLargeError   a body is over the size cap after decompression (HTTP 413)
    ├── UnsupportedMediaError  an unknown content type or encoding (HTTP 415)
    ├── NotFoundError          no such rollout, attempt or resource version (HTTP 404)
    ├── ConflictError          an expected resource version did not match (HTTP 409)
    ├── StaleAttemptError      a call from an attempt that is no longer current (HTTP 409)
    ├── OverloadedError        the server's ingest queue is full; retry later (HTTP 503)
    ├── LLMServerError         a local LLM server process failed to start or died
    └── ApiError               the server answered with an error this client does not know

The server maps each error to a JSON problem document (RFC 9457) whose ``type`` is the error's ``code``;
the HTTP client maps it back to the same class, so code behaves alike in-process and remote.
"""

from __future__ import annotations


class OtelLightningError(Exception):
    """Root of every otel-lightning error."""

    code = "error"
    """Stable identifier used as the problem document's ``type``."""

    http_status = 500
    """The HTTP status the server answers with."""


class ConfigError(OtelLightningError):
    """A setting has a value that cannot work."""

    code = "config"


class ValidationError(OtelLightningError):
    """A request or record is malformed."""

    code = "validation"
    http_status = 400


class DecodeError(ValidationError):
    """An OTLP request body cannot be decoded."""

    code = "decode"


class ResourceError(ValidationError):
    """A resource is invalid, or a prompt template cannot be rendered with the given values."""

    code = "resource"


class PayloadTooLargeError(OtelLightningError):
    """A request body is larger than the cap, measured after decompression."""

    code = "payload-too-large"
    http_status = 413


class UnsupportedMediaError(OtelLightningError):
    """A content type or content encoding the server does not accept."""

    code = "unsupported-media-type"
    http_status = 415


class NotFoundError(OtelLightningError):
    """No rollout, attempt or resource version with that identity."""

    code = "not-found"
    http_status = 404


class ConflictError(OtelLightningError):
    """A compare-and-swap failed: the current version is not the expected one."""

    code = "conflict"
    http_status = 409


class StaleAttemptError(OtelLightningError):
    """A heartbeat or completion from an attempt that has ended or been superseded (fencing)."""

    code = "stale-attempt"
    http_status = 409


class OverloadedError(OtelLightningError):
    """The server cannot take more work right now; the caller should retry after a delay."""

    code = "overloaded"
    http_status = 503


class LLMServerError(OtelLightningError):
    """A local LLM server process (otel_lightning.llm) failed to start or died."""

    code = "llm-server"


class ApiError(OtelLightningError):
    """An error answer from the server that maps to no more specific class."""

    code = "api"

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


ERRORS_BY_CODE: dict[str, type[OtelLightningError]] = {
    cls.code: cls
    for cls in (
        ConfigError,
        ValidationError,
        DecodeError,
        ResourceError,
        PayloadTooLargeError,
        UnsupportedMediaError,
        NotFoundError,
        ConflictError,
        StaleAttemptError,
        OverloadedError,
    )
}
"""Problem-document ``type`` -> error class, used by the HTTP client to raise the server's error."""
