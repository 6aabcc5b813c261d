"""Assemble one :class:`~.llm.LLMCall` from a span in any layout (used by :mod:`.llm`).

Messages are tried in this order (readers in :mod:`.llm_messages`):

1. GenAI semconv: ``gen_ai.input.messages`` / ``gen_ai.output.messages`` as JSON strings (Traceloop 0.62,
   openai-v2 ``span_only``) or as structured values on a ``gen_ai.client.inference.operation.details`` log
   record (openai-v2 ``event_only``); ``gen_ai.system_instructions`` becomes a leading system message.
2. Older OpenLLMetry: flattened ``gen_ai.prompt.N.role/content/tool_calls.M.*``, ``gen_ai.completion.N.*``.
3. OpenInference: flattened ``llm.input_messages.N.message.*``, ``llm.output_messages.N.message.*``.
4. GenAI semconv 1.30 events: one ``gen_ai.{role}.message`` log record per prompt message and one
   ``gen_ai.choice`` per choice (openai-v2 before 2.4, OpenLLMetry in events mode).

Scalars (model, usage, sampling parameters, finish reasons, streaming, tool definitions) fall back across the
same layouts. Every reader is tolerant: values of the wrong type are skipped, bad JSON is ignored.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

from otel_lightning import semconv
from otel_lightning.spans.llm import LLMCall, Message, Usage
from otel_lightning.spans.llm_messages import (
    MessageCache,
    as_str,
    content_text,
    flattened_messages,
    indexed,
    json_value,
    log_event_name,
    normalise_finish_reason,
    semconv_messages,
    stringify,
    v130_event_messages,
)
from otel_lightning.spans.records import LogRecord, SpanRecord

logger = logging.getLogger(__name__)

# Keys read here that semconv.py does not (yet) name.
GEN_AI_IS_STREAMING = "gen_ai.is_streaming"
LEGACY_IS_STREAMING = "llm.is_streaming"
LEGACY_REQUEST_TYPE = "llm.request.type"
LEGACY_FUNCTIONS_PREFIX = "llm.request.functions."
OI_PROVIDER = "llm.provider"
OI_SYSTEM = "llm.system"
OI_FINISH_REASON = "llm.finish_reason"
OI_TOOLS_PREFIX = "llm.tools."

_FLOAT_PARAMS = {"temperature": semconv.GEN_AI_REQUEST_TEMPERATURE, "top_p": semconv.GEN_AI_REQUEST_TOP_P}
_INT_PARAMS = {"max_tokens": semconv.GEN_AI_REQUEST_MAX_TOKENS, "seed": semconv.GEN_AI_REQUEST_SEED}


def extract_call(span: SpanRecord, logs: Sequence[LogRecord], cache: MessageCache | None = None) -> LLMCall:
    """Read one LLM call from a span and the log records that belong to it (already matched by span id).

    ``cache`` reuses messages decoded from earlier calls of the same trace (see :class:`MessageCache`).
    """
    attrs: Mapping[str, Any] = span.attributes
    for log in logs:
        if log_event_name(log) == semconv.GEN_AI_INFERENCE_DETAILS_EVENT and log.attributes:
            # event_only mode: the record repeats the span's attributes and adds the messages.
            attrs = {**log.attributes, **attrs}

    finish: list[str] = []
    raw_inputs = attrs.get(semconv.GEN_AI_INPUT_MESSAGES)
    if cache is not None and isinstance(raw_inputs, str):
        inputs = cache.input_messages(raw_inputs)
    else:
        inputs = semconv_messages(raw_inputs, "user", [])
    outputs = semconv_messages(attrs.get(semconv.GEN_AI_OUTPUT_MESSAGES), "assistant", finish, cache)
    oi_params = json_value(attrs.get(semconv.OI_INVOCATION_PARAMETERS, {}))
    if not isinstance(oi_params, Mapping):
        oi_params = {}
    if inputs is None and outputs is None:
        inputs, outputs = flattened_messages(attrs, finish)
    if inputs is None and outputs is None:
        inputs, outputs = v130_event_messages(logs, finish)
    system = _text_of(attrs.get(semconv.GEN_AI_SYSTEM_INSTRUCTIONS, ""))
    if system and not (inputs and inputs[0].role == "system" and inputs[0].content == system):
        inputs = [Message("system", system), *(inputs or ())]

    raw_tools = attrs.get(semconv.GEN_AI_TOOL_DEFINITIONS)
    if cache is not None and isinstance(raw_tools, str):
        # Every call of an agent usually offers the same tools: decode the JSON once per trace.
        tools = cache.memo(raw_tools, lambda: _tool_definitions(attrs))
    else:
        tools = _tool_definitions(attrs)

    return LLMCall(
        span_id=span.span_id,
        trace_id=span.trace_id,
        operation=_operation(attrs, inputs),
        provider=_lower(
            _first_str(attrs, semconv.GEN_AI_PROVIDER_NAME, semconv.GEN_AI_SYSTEM, OI_PROVIDER, OI_SYSTEM)
        ),
        request_model=_first_str(attrs, semconv.GEN_AI_REQUEST_MODEL)
        or as_str(oi_params.get("model"))
        or _first_str(attrs, semconv.OI_MODEL_NAME),
        response_model=_first_str(attrs, semconv.GEN_AI_RESPONSE_MODEL, semconv.OI_MODEL_NAME),
        response_id=_first_str(attrs, semconv.GEN_AI_RESPONSE_ID),
        input_messages=tuple(inputs or ()),
        output_messages=tuple(outputs or ()),
        params=_params(attrs, oi_params),
        usage=Usage(
            _first_int(
                attrs,
                semconv.GEN_AI_USAGE_INPUT_TOKENS,
                semconv.GEN_AI_USAGE_PROMPT_TOKENS,
                semconv.OI_TOKEN_COUNT_PROMPT,
            ),
            _first_int(
                attrs,
                semconv.GEN_AI_USAGE_OUTPUT_TOKENS,
                semconv.GEN_AI_USAGE_COMPLETION_TOKENS,
                semconv.OI_TOKEN_COUNT_COMPLETION,
            ),
        ),
        finish_reasons=_finish_reasons(attrs, finish),
        start_ns=span.start_ns,
        end_ns=span.end_ns,
        streaming=_streaming(attrs, oi_params),
        prompt_token_ids=_numbers(attrs, semconv.PROMPT_TOKEN_IDS, int),
        completion_token_ids=_numbers(attrs, semconv.COMPLETION_TOKEN_IDS, int),
        completion_logprobs=_numbers(attrs, semconv.COMPLETION_LOGPROBS, float),
        tool_definitions=tools,
    )


# --- scalars ----------------------------------------------------------------------------------------------


def _operation(attrs: Mapping[str, Any], inputs: list[Message] | None) -> str:
    operation = as_str(attrs.get(semconv.GEN_AI_OPERATION_NAME))
    if operation:
        return operation
    request_type = as_str(attrs.get(LEGACY_REQUEST_TYPE))
    if request_type == "completion":
        return "text_completion"
    return request_type or "chat"


def _params(attrs: Mapping[str, Any], oi_params: Mapping[str, Any]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for name, key in _FLOAT_PARAMS.items():
        value = _float(attrs.get(key))
        if value is None and oi_params:
            value = _float(oi_params.get(name))
        if value is not None:
            params[name] = value
    for name, key in _INT_PARAMS.items():
        value = _int(attrs.get(key))
        if value is None and oi_params:
            value = _int(oi_params.get(name))
            if value is None and name == "max_tokens":
                value = _int(oi_params.get("max_completion_tokens"))
        if value is not None:
            params[name] = value
    return params


def _finish_reasons(attrs: Mapping[str, Any], from_messages: list[str]) -> tuple[str, ...]:
    value = attrs.get(semconv.GEN_AI_RESPONSE_FINISH_REASONS)
    if isinstance(value, str):
        value = json_value(value) if value.startswith("[") else [value]
    if isinstance(value, list | tuple) and value:
        return tuple(normalise_finish_reason(r) for r in value if isinstance(r, str))
    if from_messages:
        return tuple(from_messages)
    oi = attrs.get(OI_FINISH_REASON)
    return (normalise_finish_reason(oi),) if isinstance(oi, str) and oi else ()


def _streaming(attrs: Mapping[str, Any], oi_params: Mapping[str, Any]) -> bool | None:
    for value in (attrs.get(GEN_AI_IS_STREAMING), attrs.get(LEGACY_IS_STREAMING)):
        if isinstance(value, bool):
            return value
    if oi_params:
        # OpenInference records every request parameter: no "stream" means the API default, not streamed.
        return oi_params.get("stream") is True
    return None


def _tool_definitions(attrs: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    raw = json_value(attrs.get(semconv.GEN_AI_TOOL_DEFINITIONS))
    if not isinstance(raw, list | tuple):
        raw = [json_value(g.get("tool.json_schema")) for g in indexed(attrs, OI_TOOLS_PREFIX)]
    if not raw:
        raw = [{"type": "function", **g} for g in indexed(attrs, LEGACY_FUNCTIONS_PREFIX)]
    tools = []
    for item in raw:
        if not isinstance(item, Mapping):
            continue
        function = item.get("function")
        source = function if isinstance(function, Mapping) else item
        tool: dict[str, Any] = {
            "type": as_str(item.get("type")) or "function",
            "name": as_str(source.get("name")),
        }
        if source.get("description") is not None:
            tool["description"] = source["description"]
        parameters = json_value(source.get("parameters"))
        if parameters is not None:
            tool["parameters"] = parameters
        tools.append(tool)
    return tools or None


def _text_of(value: Any) -> str:
    """Text of a system-instructions value: plain text, or a (JSON) list of text parts."""
    if isinstance(value, str) and not value.startswith(("[", "{")):
        return value
    parsed = json_value(value)
    if isinstance(parsed, Mapping):
        parsed = [parsed]
    return content_text(parsed) if isinstance(parsed, list | tuple) else stringify(parsed)


# --- values -------------------------------------------------------------------------------------------------


def _lower(value: str | None) -> str | None:
    # Older OpenLLMetry wrote "OpenAI"; the semconv values are lowercase.
    return value.lower() if value else None


def _first_str(attrs: Mapping[str, Any], *keys: str) -> str | None:
    for key in keys:
        value = attrs.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def _int(value: Any) -> int | None:
    if type(value) is int:
        return value
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return None
    return None


def _first_int(attrs: Mapping[str, Any], *keys: str) -> int | None:
    for key in keys:
        value = _int(attrs.get(key))
        if value is not None:
            return value
    return None


def _float(value: Any) -> float | None:
    if type(value) is float:
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _numbers(attrs: Mapping[str, Any], key: str, kind: type[int] | type[float]) -> tuple[Any, ...] | None:
    if key not in attrs:
        return None
    value = json_value(attrs[key])
    if not isinstance(value, list | tuple):
        return None
    if all(type(v) is kind for v in value):  # the usual case, thousands of tokens: no conversion
        return tuple(value) if kind is int or all(map(math.isfinite, value)) else None
    convert = _int if kind is int else _float
    numbers = [convert(v) for v in value]
    if any(n is None for n in numbers):
        logger.debug("token list holds a value that is not a number; ignored")
        return None
    return tuple(numbers)
