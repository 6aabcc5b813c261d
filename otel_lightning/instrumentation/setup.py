"""``instrument()``: one call that makes an agent's spans reach the otel-lightning server.

It adds to the process's OpenTelemetry setup, never replaces it: when the global TracerProvider is already
the SDK's (the user's own), our processors are added to it; otherwise a new provider is created and made
global. Spans go through :class:`~otel_lightning.instrumentation.context.RolloutSpanProcessor` (rollout ids)
and then a BatchSpanProcessor to an OTLP/HTTP protobuf exporter configured through its constructor only.
The queue is sized for bursts (65,536 spans by default; the SDK's 2,048 loses about half of a 20k burst),
and delivery failures are counted so that :meth:`Instrumentation.force_flush` can tell whether everything
left. LLM calls are captured by Traceloop's openai instrumentation, optionally with token ids and logprobs.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from otel_lightning import semconv
from otel_lightning.config import ClientSettings
from otel_lightning.instrumentation import openai_extras
from otel_lightning.instrumentation.context import RolloutSpanProcessor

logger = logging.getLogger(__name__)

EXPORT_TIMEOUT_S = 10.0
"""Deadline of one OTLP export request (the exporter retries within it)."""
EXPORT_PATIENCE_S = 120.0
"""How long a failed batch is sent again before it is given up (a server restart takes seconds; the
exporter alone gives up after EXPORT_TIMEOUT_S). The server deduplicates, so a repeat is harmless."""
MAX_EXPORT_BATCH_SIZE = 512
DEFAULT_MAX_QUEUE_SIZE = 65_536
DEFAULT_SCHEDULE_DELAY_MS = 200


@dataclass(frozen=True, slots=True)
class _Options:
    """The arguments of one instrument() call, compared when it is called again."""

    server_url: str | None
    service_name: str | None
    api_token: str | None
    capture_token_ids: bool
    instrument_openai: bool
    export_logs: bool
    max_queue_size: int
    schedule_delay_ms: int


_RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})


class _ResponseLog:
    """A ``requests`` response hook remembering the status of the exporter's last answer: ``None`` when no
    answer came (connection refused, timed out), which is as transient as a 503."""

    def __init__(self) -> None:
        self.last_status: int | None = None

    def hook(self, response: Any, *args: Any, **kwargs: Any) -> Any:
        self.last_status = response.status_code
        return response

    def transient(self) -> bool:
        return self.last_status is None or self.last_status in _RETRYABLE_STATUSES


class _CountingExporter(SpanExporter):
    """Wraps the OTLP exporter: sends a batch that failed for a transient reason (no answer, 429/502/503/504)
    again with backoff for up to ``patience_s``, so spans survive a server restart; a refusal (400, 413) is
    final. Counts the spans handed to it and those whose batch failed for good."""

    def __init__(
        self,
        inner: SpanExporter,
        patience_s: float = EXPORT_PATIENCE_S,
        responses: _ResponseLog | None = None,
    ) -> None:
        self._inner = inner
        self._patience_s = patience_s
        self._responses = responses
        self._closing = threading.Event()
        self._lock = threading.Lock()
        self.exported = 0
        self.failed = 0

    def _export_once(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._responses is not None:
            self._responses.last_status = None
        try:
            return self._inner.export(spans)
        except Exception:
            logger.exception("exporting %d spans failed", len(spans))
            return SpanExportResult.FAILURE

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        deadline = time.monotonic() + self._patience_s
        delay = 0.5
        result = self._export_once(spans)
        while result is not SpanExportResult.SUCCESS and not self._closing.is_set() and self._transient():
            if time.monotonic() + delay > deadline:
                logger.error(
                    "giving up on %d spans after %.0f s of failed exports", len(spans), self._patience_s
                )
                break
            logger.warning("exporting %d spans failed; sending them again in %.1f s", len(spans), delay)
            self._closing.wait(delay)
            delay = min(delay * 2, 8.0)
            result = self._export_once(spans)
        with self._lock:
            self.exported += len(spans)
            if result is not SpanExportResult.SUCCESS:
                self.failed += len(spans)
        return result

    def snapshot(self) -> tuple[int, int]:
        with self._lock:
            return self.exported, self.failed

    def _transient(self) -> bool:
        return self._responses is None or self._responses.transient()

    def shutdown(self) -> None:
        self._closing.set()
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)


class _ExportingProcessor(SpanProcessor):
    """Our BatchSpanProcessor, with delivery accounting and a gate that closes on shutdown.

    The SDK's ``force_flush`` returns ``True`` even when the export failed and waits without a deadline;
    this one reports failed batches and dropped spans since the previous flush, and honours the timeout.
    """

    def __init__(
        self,
        exporter: SpanExporter,
        max_queue_size: int,
        schedule_delay_ms: int,
        patience_s: float = EXPORT_PATIENCE_S,
        responses: _ResponseLog | None = None,
    ) -> None:
        self._exporter = _CountingExporter(exporter, patience_s, responses)
        self._batch = BatchSpanProcessor(
            self._exporter,
            max_queue_size=max_queue_size,
            max_export_batch_size=min(MAX_EXPORT_BATCH_SIZE, max_queue_size),
            schedule_delay_millis=schedule_delay_ms,
        )
        self._lock = threading.Lock()
        self._submitted = 0
        self._closed = False
        self._seen_failed = 0
        self._seen_lost = 0

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        """Nothing to do when a span starts."""

    def on_end(self, span: ReadableSpan) -> None:
        if self._closed:
            return
        try:
            self._batch.on_end(span)
            # Counted after the hand-over, so a flush never expects a span that is not queued yet.
            if span.context is not None and span.context.trace_flags.sampled:
                with self._lock:
                    self._submitted += 1
        except Exception:  # the agent must never see our failure
            logger.exception("could not queue span %r for export", span.name)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Export everything queued; ``True`` if it was all delivered since the previous flush."""
        if self._closed:
            return False
        with self._lock:
            submitted_before = self._submitted
        if not _run_with_deadline(self._batch.force_flush, timeout_millis / 1000):
            logger.warning("span flush did not finish within %.1f s", timeout_millis / 1000)
            return False
        exported, failed = self._exporter.snapshot()
        with self._lock:
            submitted_after = self._submitted
            ok = failed == self._seen_failed
            self._seen_failed = failed
            # Exact only when no span ended during the flush: the queue is then empty, and every span
            # handed over was either exported or dropped by the full queue.
            if submitted_after == submitted_before:
                lost = submitted_after - exported
                ok = ok and lost <= self._seen_lost
                self._seen_lost = max(lost, self._seen_lost)
        if not ok:
            logger.warning("some spans were not delivered to the server since the previous flush")
        return ok

    def shutdown(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._batch.shutdown()


def _run_with_deadline(flush: Any, timeout_s: float) -> bool:
    """Run ``flush()`` in a helper thread and wait at most ``timeout_s``; its result, or False if late."""
    result: list[bool] = []
    thread = threading.Thread(
        target=lambda: result.append(bool(flush())), name="otel-lightning-flush", daemon=True
    )
    thread.start()
    thread.join(max(timeout_s, 0.0))
    return bool(result) and result[0]


class Instrumentation:
    """Handle returned by :func:`instrument`: the provider in use and our processors on it."""

    def __init__(
        self,
        tracer_provider: TracerProvider,
        rollout_processor: RolloutSpanProcessor,
        settings: ClientSettings,
        exporting: _ExportingProcessor,
        log_processor: Any | None,
        options: _Options,
    ) -> None:
        self.tracer_provider = tracer_provider
        """The SDK TracerProvider our processors were added to (the user's, or ours if there was none)."""
        self.rollout_processor = rollout_processor
        """Stamps rollout ids and counts ended spans per attempt."""
        self.settings = settings
        """The resolved client settings."""
        self._exporting = exporting
        self._log_processor = log_processor
        self._options = options

    def tracer(self, name: str = "otel_lightning") -> trace.Tracer:
        """A tracer of the provider in use."""
        return self.tracer_provider.get_tracer(name)

    def force_flush(self, timeout_s: float = 30.0) -> bool:
        """Export every span (and log record) ended so far through our processors.

        Returns:
            ``True`` if all of them were delivered within ``timeout_s``; ``False`` if the deadline passed,
            a batch failed, or the queue dropped spans since the previous flush.
        """
        deadline = time.monotonic() + timeout_s
        ok = self._exporting.force_flush(int(timeout_s * 1000))
        if self._log_processor is not None:
            remaining = max(deadline - time.monotonic(), 0.0)
            ok = _run_with_deadline(self._log_processor.force_flush, remaining) and ok
        return ok

    def shutdown(self) -> None:
        """Flush and stop our processors; a later :func:`instrument` call sets up new ones."""
        global _current
        self._exporting.shutdown()
        if self._log_processor is not None:
            try:
                self._log_processor.shutdown()
            except Exception:
                logger.exception("could not shut down the log processor")
        with _lock:
            if _current is self:
                _current = None


_lock = threading.Lock()
_current: Instrumentation | None = None


def instrument(
    server_url: str | None = None,
    *,
    service_name: str | None = None,
    api_token: str | None = None,
    capture_token_ids: bool = False,
    instrument_openai: bool = True,
    export_logs: bool = True,
    max_queue_size: int = DEFAULT_MAX_QUEUE_SIZE,
    schedule_delay_ms: int = DEFAULT_SCHEDULE_DELAY_MS,
) -> Instrumentation:
    """Send this process's spans (and GenAI log events) to the otel-lightning server over OTLP/HTTP.

    Calling it again returns the same handle (with a warning if the arguments differ). Network problems
    never reach the caller (the exporter retries and logs); invalid settings are logged and defaulted.

    Args:
        server_url: the server's base URL; else ``OTEL_LIGHTNING_SERVER``, ``OTEL_EXPORTER_OTLP_ENDPOINT``,
            then ``http://127.0.0.1:8318``. ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` overrides the traces URL.
        service_name: the ``service.name`` resource attribute; else ``OTEL_SERVICE_NAME``.
        api_token: bearer token for the server; else ``OTEL_LIGHTNING_API_TOKEN``.
        capture_token_ids: record prompt/completion token ids and logprobs on openai LLM spans.
        instrument_openai: install Traceloop's openai instrumentation (unless openai is instrumented).
        export_logs: also export OpenTelemetry log records (GenAI events) to ``/v1/logs``.
        max_queue_size: spans buffered for export before the oldest are dropped.
        schedule_delay_ms: longest wait before a partial batch is exported.
    """
    global _current
    options = _Options(
        server_url,
        service_name,
        api_token,
        capture_token_ids,
        instrument_openai,
        export_logs,
        _positive("max_queue_size", max_queue_size, DEFAULT_MAX_QUEUE_SIZE),
        _positive("schedule_delay_ms", schedule_delay_ms, DEFAULT_SCHEDULE_DELAY_MS),
    )
    with _lock:
        if _current is not None:
            if options != _current._options:
                logger.warning(
                    "instrument() was already called with other arguments; keeping the first setup"
                )
            return _current
        _current = _setup(options)
        return _current


def _positive(name: str, value: Any, default: int) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    logger.warning("ignoring invalid %s=%r; using %d", name, value, default)
    return default


def _setup(options: _Options) -> Instrumentation:
    settings = ClientSettings.resolve(options.server_url, options.service_name, options.api_token)
    provider = _tracer_provider(settings)
    rollout = RolloutSpanProcessor()
    provider.add_span_processor(rollout)
    # Imported here: the exporter pulls in requests and protobuf, which the server side does not need.
    import requests
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    # Our own session, given to the exporter's constructor, so that a response hook tells transient failures
    # (sent again) from refusals (final) without touching the exporter's internals.
    responses = _ResponseLog()
    session = requests.Session()
    session.hooks["response"].append(responses.hook)
    exporter = OTLPSpanExporter(
        endpoint=settings.traces_endpoint,
        headers=dict(settings.headers),
        timeout=EXPORT_TIMEOUT_S,
        session=session,
    )
    exporting = _ExportingProcessor(
        exporter, options.max_queue_size, options.schedule_delay_ms, responses=responses
    )
    provider.add_span_processor(exporting)
    log_processor = _log_processor(settings) if options.export_logs else None
    _check_propagators()
    if options.capture_token_ids:
        # Before the instrumentor, so that our wrapper runs inside its span.
        openai_extras.install()
    if options.instrument_openai:
        _instrument_openai(provider)
    logger.info("otel-lightning exports spans to %s", settings.traces_endpoint)
    return Instrumentation(provider, rollout, settings, exporting, log_processor, options)


def _tracer_provider(settings: ClientSettings) -> TracerProvider:
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        return current
    provider = TracerProvider(resource=Resource.create({semconv.SERVICE_NAME: settings.service_name}))
    if isinstance(current, trace.ProxyTracerProvider):
        trace.set_tracer_provider(provider)
    if trace.get_tracer_provider() is not provider:
        logger.warning(
            "the global tracer provider is a %s, not the OpenTelemetry SDK's: only the instrumentations "
            "installed by otel-lightning use its exporting provider",
            type(current).__name__,
        )
    return provider


def _log_processor(settings: ClientSettings) -> Any | None:
    try:
        from opentelemetry._logs import get_logger_provider, set_logger_provider
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
        from opentelemetry.sdk._logs import LoggerProvider
        from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
    except ImportError as exc:
        logger.warning("log export disabled (%s): pip install 'otel-lightning[client]'", exc)
        return None
    processor = BatchLogRecordProcessor(
        OTLPLogExporter(
            endpoint=settings.logs_endpoint, headers=dict(settings.headers), timeout=EXPORT_TIMEOUT_S
        )
    )
    current = get_logger_provider()
    if isinstance(current, LoggerProvider):
        current.add_log_record_processor(processor)
        return processor
    provider = LoggerProvider(resource=Resource.create({semconv.SERVICE_NAME: settings.service_name}))
    provider.add_log_record_processor(processor)
    set_logger_provider(provider)
    if get_logger_provider() is not provider:
        logger.warning("the global logger provider is not the SDK's: GenAI log events are not exported")
    return processor


def _check_propagators() -> None:
    fields = propagate.get_global_textmap().fields
    if "baggage" not in fields:
        logger.warning(
            "the global propagator does not carry W3C baggage (OTEL_PROPAGATORS?): tool servers and "
            "sub-processes will not know which rollout their spans belong to; add 'baggage'"
        )


_OPENAI_INSTRUMENTORS = (
    ("opentelemetry.instrumentation.openai", "OpenAIInstrumentor"),
    ("opentelemetry.instrumentation.openai_v2", "OpenAIInstrumentor"),
    ("openinference.instrumentation.openai", "OpenAIInstrumentor"),
)


def _openai_already_instrumented() -> bool:
    """Whether an openai instrumentation is active, checked without constructing any instrumentor.

    BaseInstrumentor is a singleton whose ``__init__`` runs on every construction: Traceloop's resets the
    options the user instrumented with. So the singleton is read (never written) from the class.
    """
    for module_name, class_name in _OPENAI_INSTRUMENTORS:
        module = sys.modules.get(module_name)
        instance = getattr(getattr(module, class_name, None), "_instance", None)
        if instance is not None and getattr(instance, "is_instrumented_by_opentelemetry", False):
            return True
    return False


def _instrument_openai(provider: TracerProvider) -> None:
    if _openai_already_instrumented():
        logger.info("openai is already instrumented; not installing another instrumentation")
        return
    try:
        from opentelemetry.instrumentation.openai import OpenAIInstrumentor
    except ImportError:
        logger.warning(
            "LLM calls are not traced: opentelemetry-instrumentation-openai is missing; "
            "pip install 'otel-lightning[client]'"
        )
        return
    try:
        OpenAIInstrumentor().instrument(tracer_provider=provider)
    except Exception:
        logger.exception("could not instrument openai")
