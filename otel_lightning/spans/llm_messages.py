"""Chat messages in every layout the instrumentations use, read into :class:`~.llm.Message` (used by
:mod:`.llm_conventions`).

- GenAI semconv: ``[{"role", "parts": [...]}]`` as a JSON string or a structured value, with ``text``,
  ``tool_call`` and ``tool_call_response`` parts (other parts: reasoning, blobs, carry no conversation text).
- OpenAI request format ``{"role", "content", "tool_calls", "tool_call_id"}`` (also the body of the GenAI
  1.30 ``gen_ai.{role}.message`` / ``gen_ai.choice`` events).
- Flattened attributes: older OpenLLMetry ``gen_ai.prompt.N.*`` / ``gen_ai.completion.N.*`` and OpenInference
  ``llm.input_messages.N.message.*`` / ``llm.output_messages.N.message.*``.

Tool-call arguments are canonical JSON text (``json.dumps`` of the decoded value) so that an instrumentation
that records them as an object and one that records the raw string give equal records.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from otel_lightning import semconv
from otel_lightning.spans.llm import Message, ToolCall
from otel_lightning.spans.records import LogRecord

logger = logging.getLogger(__name__)

EVENT_NAME_ATTRIBUTE = "event.name"
"""Where SDKs before the LogRecord ``event_name`` field put a log record's event name."""
V130_MESSAGE_EVENTS = {
    "gen_ai.system.message": "system",
    "gen_ai.user.message": "user",
    "gen_ai.assistant.message": "assistant",
    "gen_ai.tool.message": "tool",
}
V130_CHOICE_EVENT = "gen_ai.choice"
_TOOL_FINISH = frozenset({"tool_call", "tool_calls", "function_call"})


class MessageCache:
    """Reuses what was already decoded from earlier calls of the same trace.

    An agent's conversation grows call by call, so the ``gen_ai.input.messages`` JSON of one call usually
    starts with the previous call's list: ``[m1, ..., mk`` then ``, mk+1, ...]``. Only the new tail is
    decoded. Tokenising JSON is deterministic left to right, so a shared prefix that ends after a complete
    top-level element means the same leading elements: the result equals a full decode.
    """

    __slots__ = ("_memo", "_recent", "_tool_calls")
    SIZE = 8
    """How many recent inputs are tried as prefixes (interleaved conversations of a multi-agent run)."""

    def __init__(self) -> None:
        self._recent: list[tuple[str, tuple[Message, ...]]] = []
        self._memo: dict[str, Any] = {}
        self._tool_calls: dict[tuple[str, str], tuple[Any, ToolCall]] = {}

    def memo(self, raw: str, make: Callable[[], Any]) -> Any:
        """``make()``, computed once per distinct ``raw`` value (tool definitions repeat on every call)."""
        if raw not in self._memo:
            self._memo[raw] = make()
        return self._memo[raw]

    def tool_call(self, call_id: Any, name: Any, arguments: Any) -> ToolCall:
        """:func:`tool_call`, reusing the result for a call seen before (one output, the next input)."""
        if not isinstance(call_id, str) or not isinstance(name, str):
            return tool_call(call_id, name, arguments)
        seen = self._tool_calls.get((call_id, name))
        if seen is not None and type(seen[0]) is type(arguments) and seen[0] == arguments:
            return seen[1]
        call = tool_call(call_id, name, arguments)
        self._tool_calls[call_id, name] = (arguments, call)
        return call

    def input_messages(self, raw: str) -> list[Message] | None:
        result: list[Message] | None = None
        for previous, messages in reversed(self._recent):
            if raw == previous:
                return list(messages)
            n = len(previous)
            if (
                n > 2
                and len(raw) > n
                and raw[n - 1] == ","
                and previous[-1] == "]"
                and raw.startswith(previous[:-1])
            ):
                tail = semconv_messages("[" + raw[n:], "user", [], self)
                if tail is not None:
                    result = [*messages, *tail]
                    break
        if result is None:
            result = semconv_messages(raw, "user", [], self)
        if result is not None:
            self._recent.append((raw, tuple(result)))
            del self._recent[: -self.SIZE]
        return result


def semconv_messages(
    value: Any, default_role: str, finish: list[str], cache: MessageCache | None = None
) -> list[Message] | None:
    """Messages from a ``gen_ai.*.messages`` value (JSON string or list); appends finish reasons found."""
    items = json_value(value)
    if not isinstance(items, list | tuple):
        return None
    messages = []
    for item in items:
        if not isinstance(item, dict | Mapping):
            continue
        if "parts" in item:
            messages.append(_parts_message(item, default_role, cache))
        else:
            messages.append(openai_message(item, default_role))
        reason = item.get("finish_reason")
        if isinstance(reason, str) and reason:
            finish.append(normalise_finish_reason(reason))
    return messages


def _parts_message(item: Mapping[str, Any], default_role: str, cache: MessageCache | None) -> Message:
    texts: list[str] = []
    calls: list[ToolCall] = []
    tool_call_id = None
    parts = item.get("parts")
    for part in parts if isinstance(parts, list | tuple) else ():
        if type(part) is not dict:  # JSON gives dicts; anything else is rare
            if isinstance(part, str):
                texts.append(part)
                continue
            if not isinstance(part, Mapping):
                continue
        kind = part.get("type")
        if kind == "text" or (kind is None and "content" in part):
            content = part.get("content", part.get("text"))
            texts.append(content if type(content) is str else stringify(content))
        elif kind == "tool_call":
            make = tool_call if cache is None else cache.tool_call
            calls.append(make(part.get("id"), part.get("name"), part.get("arguments")))
        elif kind == "tool_call_response":
            tool_call_id = as_str(part.get("id")) or tool_call_id
            texts.append(stringify(part.get("response", part.get("result"))))
    content = texts[0] if len(texts) == 1 else "\n".join(texts)
    return Message(role(item.get("role"), default_role), content, tuple(calls), tool_call_id)


def openai_message(item: Mapping[str, Any], default_role: str) -> Message:
    """A message in the OpenAI request format (also the body of the 1.30 events)."""
    calls = []
    raw_calls = item.get("tool_calls")
    for raw in raw_calls if isinstance(raw_calls, list | tuple) else ():
        if isinstance(raw, Mapping):
            function = raw.get("function")
            source = function if isinstance(function, Mapping) else raw
            calls.append(tool_call(raw.get("id"), source.get("name"), source.get("arguments")))
    function_call = item.get("function_call")
    if isinstance(function_call, Mapping):
        calls.append(tool_call(None, function_call.get("name"), function_call.get("arguments")))
    return Message(
        role(item.get("role"), default_role),
        content_text(item.get("content")),
        tuple(calls),
        as_str(item.get("tool_call_id")),
    )


def tool_call(call_id: Any, name: Any, arguments: Any) -> ToolCall:
    """A tool call with its arguments as canonical JSON text (so every layout gives the same string)."""
    if isinstance(arguments, str):
        try:
            parsed = json.loads(arguments)
        except ValueError:
            parsed = None
        text = json.dumps(parsed) if isinstance(parsed, dict | list) else arguments
    elif arguments is None:
        text = ""
    else:
        text = dumps(arguments)
    return ToolCall(as_str(call_id) or "", as_str(name) or "", text)


def normalise_finish_reason(reason: str) -> str:
    reason = reason.lower()
    return "tool_calls" if reason in _TOOL_FINISH else reason


# --- flattened layouts (older OpenLLMetry, OpenInference) ------------------------------------------------


def flattened_messages(
    attrs: Mapping[str, Any], finish: list[str]
) -> tuple[list[Message] | None, list[Message] | None]:
    """Input and output messages from flattened attributes; appends the completions' finish reasons."""
    prompt = indexed(attrs, semconv.LEGACY_PROMPT_PREFIX)
    completion = indexed(attrs, semconv.LEGACY_COMPLETION_PREFIX)
    if prompt or completion:
        inputs = [_legacy_message(g, "user", None) for g in prompt]
        outputs = [_legacy_message(g, "assistant", finish) for g in completion]
        return inputs or None, outputs or None
    oi_in = indexed(attrs, semconv.OI_INPUT_MESSAGES_PREFIX)
    oi_out = indexed(attrs, semconv.OI_OUTPUT_MESSAGES_PREFIX)
    if oi_in or oi_out:
        outputs = [_oi_message(g, "assistant") for g in oi_out]
        return [_oi_message(g, "user") for g in oi_in] or None, outputs or None
    return None, None


def _legacy_message(group: Mapping[str, Any], default_role: str, finish: list[str] | None) -> Message:
    calls = [tool_call(c.get("id"), c.get("name"), c.get("arguments")) for c in indexed(group, "tool_calls.")]
    if "function_call.name" in group:
        calls.append(tool_call(None, group.get("function_call.name"), group.get("function_call.arguments")))
    content = group.get("content")
    if content is None:
        content = group.get("refusal")
    if finish is not None and isinstance(group.get("finish_reason"), str):
        finish.append(normalise_finish_reason(group["finish_reason"]))
    return Message(
        role(group.get("role"), default_role),
        content_text(content, parse_json_list=True),
        tuple(calls),
        as_str(group.get("tool_call_id")),
    )


def _oi_message(group: Mapping[str, Any], default_role: str) -> Message:
    calls = [
        tool_call(
            c.get("tool_call.id"), c.get("tool_call.function.name"), c.get("tool_call.function.arguments")
        )
        for c in indexed(group, "message.tool_calls.")
    ]
    content = group.get("message.content")
    if content is None:
        texts = [stringify(c.get("message_content.text")) for c in indexed(group, "message.contents.")]
        content = "\n".join(t for t in texts if t)
    return Message(
        role(group.get("message.role"), default_role),
        stringify(content),
        tuple(calls),
        as_str(group.get("message.tool_call_id")),
    )


def indexed(attrs: Mapping[str, Any], prefix: str) -> list[dict[str, Any]]:
    """Groups ``{prefix}{N}.{rest}`` keys by N (in index order) into ``{rest: value}`` dicts."""
    groups: dict[int, dict[str, Any]] = {}
    n = len(prefix)
    for key, value in attrs.items():
        if key.startswith(prefix):
            index, _, rest = key[n:].partition(".")
            if rest and index.isdigit():
                groups.setdefault(int(index), {})[rest] = value
    return [groups[i] for i in sorted(groups)]


# --- GenAI semconv 1.30 events ----------------------------------------------------------------------------


def log_event_name(log: LogRecord) -> str:
    """A log record's event name, from the field or (older SDKs) the ``event.name`` attribute."""
    return log.event_name or as_str(log.attributes.get(EVENT_NAME_ATTRIBUTE)) or ""


def v130_event_messages(
    logs: Sequence[LogRecord], finish: list[str]
) -> tuple[list[Message] | None, list[Message] | None]:
    """Messages from ``gen_ai.{role}.message`` records (one per prompt message) and ``gen_ai.choice`` ones."""
    inputs: list[Message] = []
    choices: list[tuple[int, Message]] = []
    for log in sorted(logs, key=lambda lg: lg.time_ns):
        name = log_event_name(log)
        body = log.body if isinstance(log.body, Mapping) else {}
        if name in V130_MESSAGE_EVENTS:
            message = openai_message(body, V130_MESSAGE_EVENTS[name])
            if message.role == "tool" and message.tool_call_id is None:
                message = Message("tool", message.content, message.tool_calls, as_str(body.get("id")))
            inputs.append(message)
        elif name == V130_CHOICE_EVENT:
            raw = body.get("message")
            message = openai_message(raw if isinstance(raw, Mapping) else {}, "assistant")
            if not message.tool_calls and isinstance(body.get("tool_calls"), list):
                message = Message(message.role, message.content, openai_message(body, "").tool_calls)
            index = body.get("index")
            choices.append((index if isinstance(index, int) else len(choices), message))
            if isinstance(body.get("finish_reason"), str):
                finish.append(normalise_finish_reason(body["finish_reason"]))
    outputs = [m for _, m in sorted(choices, key=lambda c: c[0])]
    return inputs or None, outputs or None


# --- values -----------------------------------------------------------------------------------------------


def json_value(value: Any) -> Any:
    """A JSON string decoded (``None`` when it is not valid JSON); other values unchanged."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            logger.debug("attribute value is not valid JSON: %.80s", value)
            return None
    return value


def content_text(content: Any, parse_json_list: bool = False) -> str:
    """Text of an OpenAI-style ``content``: a string, or a list of ``{"type": "text", "text"}`` parts."""
    if parse_json_list and isinstance(content, str) and content.startswith("[{"):
        # Older OpenLLMetry stores list contents as json.dumps(list).
        parsed = json_value(content)
        if isinstance(parsed, list) and all(isinstance(p, Mapping) and "type" in p for p in parsed):
            content = parsed
    if isinstance(content, list | tuple):
        texts = []
        for part in content:
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, Mapping) and part.get("type", "text") == "text":
                texts.append(stringify(part.get("text", part.get("content"))))
        return "\n".join(texts)
    return stringify(content)


def stringify(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else dumps(value)


def dumps(value: Any) -> str:
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return str(value)


def role(value: Any, default: str) -> str:
    return value.lower() if isinstance(value, str) and value else default


def as_str(value: Any) -> str | None:
    if value is None or isinstance(value, bool):
        return None
    return value if isinstance(value, str) else str(value)
