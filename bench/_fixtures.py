"""Realistic OTLP trace requests for benchmarks: LLM chat spans of ~3.4 KiB each.

Import from a benchmark run as ``python bench/NAME.py`` from the repository root::

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from bench._fixtures import llm_span_request, llm_span_request_json

The spans look like what the Traceloop openai instrumentation emits (``gen_ai.*`` attributes, JSON input and
output messages, tool definitions, usage tokens) plus the rollout identity our client stamps on every span.
Ids are drawn from ``random.Random(seed)``: the same seed gives the same bytes, different seeds give unique
trace and span ids.
"""

from __future__ import annotations

import base64
import json
import random
from typing import Any

from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, InstrumentationScope, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

SPANS_PER_TRACE = 8
"""LLM calls per rollout (one trace each); their parent, the rollout's root span, is not in the request."""

_VOCABULARY = (
    "the agent should read the task carefully then call a tool when it needs data it does not have "
    "and answer with a short summary that cites the numbers it used in the final reply to the user"
)
_WORDS = _VOCABULARY.split()

_TOOLS = json.dumps(
    [
        {
            "type": "function",
            "name": name,
            "description": f"Look up {name.replace('_', ' ')} for a city and a date range.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "start": {"type": "string"}},
                "required": ["city"],
            },
        }
        for name in ("get_weather", "get_flights", "get_hotels")
    ]
)


def _text(rng: random.Random, n_words: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(n_words))


def _kv(key: str, value: str | int | float | bool | list[str]) -> KeyValue:
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    if isinstance(value, float):
        return KeyValue(key=key, value=AnyValue(double_value=value))
    if isinstance(value, list):
        items = [AnyValue(string_value=v) for v in value]
        return KeyValue(key=key, value=AnyValue(array_value=ArrayValue(values=items)))
    return KeyValue(key=key, value=AnyValue(string_value=value))


def _llm_span(rng: random.Random, trace_id: bytes, parent_id: bytes, rollout: str, attempt: str) -> Span:
    start = 1_760_000_000_000_000_000 + rng.randrange(10**12)
    input_messages = json.dumps(
        [
            {"role": "system", "parts": [{"type": "text", "content": _text(rng, 40)}]},
            {"role": "user", "parts": [{"type": "text", "content": _text(rng, 110)}]},
            {
                "role": "assistant",
                "parts": [
                    {
                        "type": "tool_call",
                        "id": f"call_{rng.getrandbits(48):012x}",
                        "name": "get_weather",
                        "arguments": {"city": "Paris", "start": "2025-06-01"},
                    }
                ],
            },
            {
                "role": "tool",
                "parts": [{"type": "tool_call_response", "id": "call_1", "response": _text(rng, 30)}],
            },
        ]
    )
    output_messages = json.dumps(
        [
            {
                "role": "assistant",
                "parts": [{"type": "text", "content": _text(rng, 90)}],
                "finish_reason": "stop",
            }
        ]
    )
    input_tokens, output_tokens = rng.randrange(200, 2000), rng.randrange(20, 400)
    attributes = [
        _kv("gen_ai.operation.name", "chat"),
        _kv("gen_ai.system", "openai"),
        _kv("gen_ai.provider.name", "openai"),
        _kv("gen_ai.request.model", "gpt-4o-mini"),
        _kv("gen_ai.request.max_tokens", 512),
        _kv("gen_ai.request.temperature", round(rng.random(), 3)),
        _kv("gen_ai.request.top_p", 1.0),
        _kv("gen_ai.response.id", f"chatcmpl-{rng.getrandbits(96):024x}"),
        _kv("gen_ai.response.model", "gpt-4o-mini-2024-07-18"),
        _kv("gen_ai.response.finish_reasons", ["stop"]),
        _kv("gen_ai.usage.input_tokens", input_tokens),
        _kv("gen_ai.usage.output_tokens", output_tokens),
        _kv("llm.usage.total_tokens", input_tokens + output_tokens),
        _kv("llm.is_streaming", False),
        _kv("server.address", "api.openai.com"),
        _kv("server.port", 443),
        _kv("gen_ai.input.messages", input_messages),
        _kv("gen_ai.output.messages", output_messages),
        _kv("gen_ai.tool.definitions", _TOOLS),
        _kv("otel_lightning.rollout.id", rollout),
        _kv("otel_lightning.attempt.id", attempt),
        _kv("otel_lightning.experiment", "bench"),
    ]
    return Span(
        trace_id=trace_id,
        span_id=rng.getrandbits(64).to_bytes(8, "big"),
        parent_span_id=parent_id,
        name="openai.chat",
        kind=Span.SPAN_KIND_CLIENT,
        start_time_unix_nano=start,
        end_time_unix_nano=start + rng.randrange(200_000_000, 5_000_000_000),
        attributes=attributes,
        status=Status(code=Status.STATUS_CODE_OK),
    )


def llm_span_message(n_spans: int, *, seed: int = 0) -> ExportTraceServiceRequest:
    """The request of :func:`llm_span_request` as a protobuf message."""
    rng = random.Random(seed)
    spans: list[Span] = []
    while len(spans) < n_spans:
        trace_id = rng.getrandbits(128).to_bytes(16, "big")
        root_id = rng.getrandbits(64).to_bytes(8, "big")
        rollout, attempt = f"ro-{rng.getrandbits(64):016x}", f"at-{rng.getrandbits(64):016x}"
        for _ in range(min(SPANS_PER_TRACE, n_spans - len(spans))):
            spans.append(_llm_span(rng, trace_id, root_id, rollout, attempt))
    resource = Resource(
        attributes=[
            _kv("service.name", "support-agent"),
            _kv("service.version", "1.4.2"),
            _kv("telemetry.sdk.language", "python"),
            _kv("telemetry.sdk.name", "opentelemetry"),
            _kv("telemetry.sdk.version", "1.45.2"),
            _kv("host.name", "worker-3"),
            _kv("process.pid", 4242),
        ]
    )
    scope = InstrumentationScope(name="opentelemetry.instrumentation.openai.v1", version="0.62.4")
    return ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(resource=resource, scope_spans=[ScopeSpans(scope=scope, spans=spans)])]
    )


def llm_span_request(n_spans: int, *, seed: int = 0) -> bytes:
    """A serialized protobuf ``ExportTraceServiceRequest`` of ``n_spans`` LLM spans of ~3.4 KiB each."""
    return llm_span_message(n_spans, seed=seed).SerializeToString()


def _hex_ids(node: Any) -> Any:
    # proto3 JSON writes bytes as base64; OTLP JSON wants the three id fields as hex.
    if isinstance(node, dict):
        return {
            k: base64.b64decode(v).hex() if k in ("traceId", "spanId", "parentSpanId") else _hex_ids(v)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_hex_ids(v) for v in node]
    return node


def llm_span_request_json(n_spans: int, *, seed: int = 0) -> bytes:
    """The request of :func:`llm_span_request` in OTLP JSON (hex ids, integer enums, int64 as strings)."""
    message = json_format.MessageToDict(llm_span_message(n_spans, seed=seed), use_integers_for_enums=True)
    return json.dumps(_hex_ids(message), separators=(",", ":")).encode()
