"""One normalised record per LLM call, whichever instrumentation recorded it.

An LLM span is recognised by its attributes, never by its name: ``gen_ai.operation.name`` in
:data:`~otel_lightning.semconv.LLM_OPERATIONS`, ``openinference.span.kind == "LLM"``, or the older flattened
``gen_ai.prompt.N.*`` keys. :func:`llm_call_from_span` reads every layout the common instrumentations emit
(see :mod:`otel_lightning.spans.llm_conventions`) into the same :class:`LLMCall`, so that one conversation
gives equal records whether Traceloop, the official openai-v2 instrumentation or OpenInference recorded it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from otel_lightning import semconv
from otel_lightning.resources import JSON
from otel_lightning.spans.records import LogRecord, SpanRecord

if TYPE_CHECKING:
    from otel_lightning.spans.llm_messages import MessageCache

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A tool call the model asked for."""

    id: str
    """The call id the tool result refers back to ("" when the instrumentation did not record one)."""
    name: str
    """The tool's name."""
    arguments: str
    """Arguments as JSON text, re-encoded with ``json.dumps`` when valid, so that layouts compare equal."""

    def to_json(self) -> dict[str, JSON]:
        return {"id": self.id, "name": self.name, "arguments": self.arguments}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ToolCall:
        return cls(str(data.get("id") or ""), str(data.get("name") or ""), str(data.get("arguments") or ""))


@dataclass(frozen=True, slots=True)
class Message:
    """One chat message sent to or returned by a model."""

    role: str
    """``system``, ``user``, ``assistant`` or ``tool`` (lowercase, as the instrumentation recorded it)."""
    content: str = ""
    """The text parts, joined with newlines; "" for a message that only calls tools."""
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    """For a tool result: the id of the call it answers."""

    def to_json(self) -> dict[str, JSON]:
        data: dict[str, JSON] = {"role": self.role, "content": self.content}
        if self.tool_calls:
            data["tool_calls"] = [call.to_json() for call in self.tool_calls]
        if self.tool_call_id is not None:
            data["tool_call_id"] = self.tool_call_id
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Message:
        return cls(
            role=str(data.get("role") or ""),
            content=str(data.get("content") or ""),
            tool_calls=tuple(ToolCall.from_json(c) for c in data.get("tool_calls") or ()),
            tool_call_id=data.get("tool_call_id"),
        )

    def to_openai(self) -> dict[str, JSON]:
        """The message in the OpenAI chat-completions request format (for replay, few-shot demos, SFT)."""
        data: dict[str, JSON] = {"role": self.role, "content": self.content}
        if self.tool_calls:
            data["tool_calls"] = [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                for c in self.tool_calls
            ]
            if not self.content:
                data["content"] = None
        if self.tool_call_id is not None:
            data["tool_call_id"] = self.tool_call_id
        return data


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts the provider reported (``None`` when it did not, e.g. a stream without usage)."""

    input_tokens: int | None = None
    output_tokens: int | None = None

    @property
    def total_tokens(self) -> int | None:
        if self.input_tokens is None and self.output_tokens is None:
            return None
        return (self.input_tokens or 0) + (self.output_tokens or 0)


@dataclass(frozen=True, slots=True)
class LLMCall:
    """One LLM call, normalised from whichever convention the span used."""

    span_id: str
    trace_id: str
    operation: str
    """``chat``, ``text_completion``, ``generate_content``."""
    provider: str | None
    """``gen_ai.provider.name`` (or ``gen_ai.system`` / ``llm.system``), e.g. ``openai``."""
    request_model: str | None
    response_model: str | None
    input_messages: tuple[Message, ...]
    """The prompt: system instructions first, then the conversation as sent."""
    output_messages: tuple[Message, ...]
    """One message per choice."""
    params: Mapping[str, JSON] = field(default_factory=dict)
    """Sampling parameters that were recorded: ``temperature``, ``top_p``, ``max_tokens``, ``seed``."""
    usage: Usage = field(default_factory=Usage)
    finish_reasons: tuple[str, ...] = ()
    """Per choice; ``tool_call`` and ``function_call`` are normalised to ``tool_calls``."""
    start_ns: int = 0
    end_ns: int = 0
    streaming: bool | None = None
    """Whether the response was streamed; ``None`` when the instrumentation does not say."""
    prompt_token_ids: tuple[int, ...] | None = None
    completion_token_ids: tuple[int, ...] | None = None
    completion_logprobs: tuple[float, ...] | None = None
    tool_definitions: JSON | None = None
    """Tools offered to the model: a list of ``{"type": "function", "name", "description", "parameters"}``."""
    response_id: str | None = None
    """The provider's response id (``chatcmpl-...``) when recorded."""

    @property
    def duration_ns(self) -> int:
        return self.end_ns - self.start_ns

    @property
    def completion(self) -> str:
        """Text of the first output message ("" when there is none)."""
        return self.output_messages[0].content if self.output_messages else ""

    @property
    def tool_calls(self) -> tuple[ToolCall, ...]:
        """Tool calls of the first output message."""
        return self.output_messages[0].tool_calls if self.output_messages else ()

    @property
    def prompt_messages(self) -> list[dict[str, JSON]]:
        """The input messages in the OpenAI request format, ready to send again."""
        return [m.to_openai() for m in self.input_messages]

    @property
    def system_prompt(self) -> str | None:
        """The content of the leading system message, if any."""
        if self.input_messages and self.input_messages[0].role in ("system", "developer"):
            return self.input_messages[0].content
        return None

    def to_json(self) -> dict[str, JSON]:
        return {
            "span_id": self.span_id,
            "trace_id": self.trace_id,
            "operation": self.operation,
            "provider": self.provider,
            "request_model": self.request_model,
            "response_model": self.response_model,
            "response_id": self.response_id,
            "input_messages": [m.to_json() for m in self.input_messages],
            "output_messages": [m.to_json() for m in self.output_messages],
            "params": dict(self.params),
            "usage": {"input_tokens": self.usage.input_tokens, "output_tokens": self.usage.output_tokens},
            "finish_reasons": list(self.finish_reasons),
            "start_ns": self.start_ns,
            "end_ns": self.end_ns,
            "streaming": self.streaming,
            "prompt_token_ids": _list_or_none(self.prompt_token_ids),
            "completion_token_ids": _list_or_none(self.completion_token_ids),
            "completion_logprobs": _list_or_none(self.completion_logprobs),
            "tool_definitions": self.tool_definitions,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LLMCall:
        usage = data.get("usage") or {}
        return cls(
            span_id=data["span_id"],
            trace_id=data["trace_id"],
            operation=data.get("operation") or "chat",
            provider=data.get("provider"),
            request_model=data.get("request_model"),
            response_model=data.get("response_model"),
            response_id=data.get("response_id"),
            input_messages=tuple(Message.from_json(m) for m in data.get("input_messages") or ()),
            output_messages=tuple(Message.from_json(m) for m in data.get("output_messages") or ()),
            params=dict(data.get("params") or {}),
            usage=Usage(usage.get("input_tokens"), usage.get("output_tokens")),
            finish_reasons=tuple(data.get("finish_reasons") or ()),
            start_ns=data.get("start_ns", 0),
            end_ns=data.get("end_ns", 0),
            streaming=data.get("streaming"),
            prompt_token_ids=_tuple_or_none(data.get("prompt_token_ids")),
            completion_token_ids=_tuple_or_none(data.get("completion_token_ids")),
            completion_logprobs=_tuple_or_none(data.get("completion_logprobs")),
            tool_definitions=data.get("tool_definitions"),
        )


def _list_or_none(values: tuple[Any, ...] | None) -> list[Any] | None:
    return None if values is None else list(values)


def _tuple_or_none(values: Any) -> tuple[Any, ...] | None:
    return None if values is None else tuple(values)


def is_llm_span(span: SpanRecord) -> bool:
    """Whether the span records an LLM call (by its attributes, never by its name)."""
    attrs = span.attributes
    if attrs.get(semconv.GEN_AI_OPERATION_NAME) in semconv.LLM_OPERATIONS:
        return True
    if attrs.get(semconv.OPENINFERENCE_SPAN_KIND) == semconv.OPENINFERENCE_LLM_KIND:
        return True
    if semconv.GEN_AI_OPERATION_NAME in attrs:
        # A span that names another GenAI operation (execute_tool, invoke_agent, embeddings) is not a call.
        return False
    return any(_is_legacy_message_key(key) for key in attrs)


def _is_legacy_message_key(key: str) -> bool:
    for prefix in (semconv.LEGACY_PROMPT_PREFIX, semconv.LEGACY_COMPLETION_PREFIX):
        if key.startswith(prefix) and key[len(prefix) : len(prefix) + 1].isdigit():
            return True
    return False


def llm_call_from_span(
    span: SpanRecord, logs: Sequence[LogRecord] = (), *, cache: MessageCache | None = None
) -> LLMCall | None:
    """Normalise an LLM span into an :class:`LLMCall`; ``None`` when the span is not an LLM call.

    Args:
        span: The span.
        logs: Log records that may belong to it; those whose ``span_id`` matches are joined (the openai-v2
            instrumentation's ``event_only`` mode puts the messages in a log record, older instrumentations
            emit one ``gen_ai.{role}.message`` / ``gen_ai.choice`` event per message).
        cache: Shared across the calls of one trace (as :meth:`SpanTree.llm_calls` does), it decodes only
            the new tail of each growing conversation; the result is the same without it.

    Never raises on malformed attributes: what cannot be read is left empty and logged at debug level.
    """
    # Imported here: the conventions module imports this one for the record classes.
    from otel_lightning.spans.llm_conventions import extract_call

    if not is_llm_span(span):
        return None
    own_logs = [log for log in logs if log.span_id == span.span_id and log.trace_id in (None, span.trace_id)]
    try:
        return extract_call(span, own_logs, cache)
    except Exception:  # never let one odd span break a whole trajectory
        logger.debug("could not read LLM span %s", span.span_id, exc_info=True)
        return LLMCall(
            span_id=span.span_id,
            trace_id=span.trace_id,
            operation=str(span.attributes.get(semconv.GEN_AI_OPERATION_NAME) or "chat"),
            provider=None,
            request_model=None,
            response_model=None,
            input_messages=(),
            output_messages=(),
            start_ns=span.start_ns,
            end_ns=span.end_ns,
        )
