"""LLM calls from every instrumentation convention normalise to the same LLMCall."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
import record_llm_spans as conversation
from conftest import CONVENTIONS, load_fixture, make_span
from hypothesis import given, settings
from hypothesis import strategies as st

from otel_lightning import semconv
from otel_lightning.spans.llm import LLMCall, Message, ToolCall, Usage, is_llm_span, llm_call_from_span
from otel_lightning.spans.llm_messages import MessageCache
from otel_lightning.spans.records import LogRecord, SpanRecord
from otel_lightning.spans.tree import SpanTree

FIXTURES = (
    "traceloop.json",
    "openai_v2_event.json",
    "openinference.json",
    "legacy_openllmetry.json",
    "openai_v2_v130_events.json",
)


def calls_of(spans: list[SpanRecord], logs: list[LogRecord]) -> list[LLMCall]:
    return SpanTree.from_spans(spans, logs).llm_calls()


def content(call: LLMCall) -> LLMCall:
    """The conversation content of a call: what every convention records the same way."""
    return replace(
        call,
        span_id="",
        trace_id="",
        start_ns=0,
        end_ns=0,
        response_id=None,
        streaming=None,  # the openai-v2 instrumentation does not record it
        tool_definitions=None,  # nor the tool definitions
    )


WEATHER_CALL = ToolCall("call_1", "get_weather", conversation.TOOL_ARGUMENTS)
GREETING_PROMPT = (Message("system", conversation.SYSTEM), Message("user", conversation.QUESTION))
EXPECTED_TOOL_DEFINITIONS = [
    {
        "type": "function",
        "name": "get_weather",
        "description": "Current weather of a city",
        "parameters": conversation.TOOLS[0]["function"]["parameters"],
    }
]


def check_conversation(calls: list[LLMCall]) -> None:
    """The four calls of record_llm_spans.py, field by field."""
    assert len(calls) == 4
    plain, streamed, ask_tool, answer = calls
    for call in calls:
        assert call.operation == "chat"
        assert call.provider == "openai"
        assert call.request_model == call.response_model == "scripted-model"
    assert plain.input_messages == GREETING_PROMPT
    assert plain.output_messages == (Message("assistant", conversation.ANSWER),)
    assert plain.completion == conversation.ANSWER
    assert plain.system_prompt == conversation.SYSTEM
    assert plain.params == {"temperature": 0.5, "top_p": 0.9, "max_tokens": 64}
    assert plain.usage == Usage(18, 6)
    assert plain.finish_reasons == ("stop",)
    assert streamed.input_messages == GREETING_PROMPT
    assert streamed.completion == conversation.ANSWER
    assert streamed.params == {"temperature": 0.5}
    assert streamed.usage == Usage(18, 6)  # include_usage: the server sent it
    assert streamed.finish_reasons == ("stop",)
    assert ask_tool.input_messages == (Message("user", conversation.TOOL_QUESTION),)
    assert ask_tool.output_messages == (Message("assistant", "", (WEATHER_CALL,)),)
    assert ask_tool.tool_calls == (WEATHER_CALL,)
    assert ask_tool.finish_reasons == ("tool_calls",)
    assert ask_tool.usage == Usage(6, 0)
    assert answer.input_messages == (
        Message("user", conversation.TOOL_QUESTION),
        Message("assistant", "", (WEATHER_CALL,)),
        Message("tool", conversation.TOOL_RESULT, tool_call_id="call_1"),
    )
    assert answer.completion == conversation.FINAL_ANSWER
    assert answer.finish_reasons == ("stop",)
    assert answer.usage == Usage(9, 8)


def test_real_instrumentations_record_the_same_calls(live_recordings: dict[str, Any]) -> None:
    by_convention = {name: calls_of(*live_recordings[name]) for name in CONVENTIONS}
    for calls in by_convention.values():
        check_conversation(calls)
    reference = [content(c) for c in by_convention["traceloop"]]
    for name in CONVENTIONS:
        assert [content(c) for c in by_convention[name]] == reference, name


def test_real_instrumentations_streaming_and_tool_definitions(live_recordings: dict[str, Any]) -> None:
    traceloop = calls_of(*live_recordings["traceloop"])
    openinference = calls_of(*live_recordings["openinference"])
    v2 = calls_of(*live_recordings["openai_v2_span"])
    assert [c.streaming for c in traceloop] == [False, True, False, False]
    assert [c.streaming for c in openinference] == [False, True, False, False]
    assert [c.streaming for c in v2] == [None] * 4
    assert traceloop[2].tool_definitions == EXPECTED_TOOL_DEFINITIONS
    assert openinference[2].tool_definitions == EXPECTED_TOOL_DEFINITIONS
    assert traceloop[0].tool_definitions is None


def test_openai_v2_event_only_joins_the_log_record(live_recordings: dict[str, Any]) -> None:
    spans, logs = live_recordings["openai_v2_event"]
    assert {log.event_name for log in logs} == {semconv.GEN_AI_INFERENCE_DETAILS_EVENT}
    llm_spans = sorted((s for s in spans if is_llm_span(s)), key=lambda s: s.start_ns)
    # Without its log record the span only has the scalars.
    bare = llm_call_from_span(llm_spans[0])
    assert bare is not None and bare.input_messages == () and bare.usage == Usage(18, 6)
    # Records of other spans are not joined; the span's own record is.
    others = [log for log in logs if log.span_id != llm_spans[0].span_id]
    assert llm_call_from_span(llm_spans[0], others).input_messages == ()  # type: ignore[union-attr]
    joined = llm_call_from_span(llm_spans[0], logs)
    assert joined is not None and joined.input_messages == GREETING_PROMPT


@pytest.mark.parametrize("fixture", FIXTURES)
def test_recorded_fixtures_give_the_same_calls(fixture: str) -> None:
    calls = calls_of(*load_fixture(fixture))
    check_conversation(calls)
    reference = [content(c) for c in calls_of(*load_fixture("traceloop.json"))]
    assert [content(c) for c in calls] == reference


def test_legacy_and_openinference_fixtures_keep_tool_definitions() -> None:
    for fixture in ("legacy_openllmetry.json", "openinference.json"):
        calls = calls_of(*load_fixture(fixture))
        assert calls[3].tool_definitions == EXPECTED_TOOL_DEFINITIONS, fixture


def test_is_llm_span_reads_attributes_never_the_name() -> None:
    assert not is_llm_span(make_span("a", name="openai.chat"))
    assert is_llm_span(make_span("a", name="anything", attributes={"gen_ai.operation.name": "chat"}))
    assert is_llm_span(make_span("a", attributes={"gen_ai.operation.name": "text_completion"}))
    assert not is_llm_span(
        make_span("a", name="chat x", attributes={"gen_ai.operation.name": "execute_tool"})
    )
    assert is_llm_span(make_span("a", attributes={"openinference.span.kind": "LLM"}))
    assert not is_llm_span(make_span("a", attributes={"openinference.span.kind": "TOOL"}))
    assert is_llm_span(make_span("a", attributes={"gen_ai.prompt.0.content": "hi"}))
    assert is_llm_span(make_span("a", attributes={"gen_ai.completion.0.content": "hi"}))
    assert not is_llm_span(make_span("a", attributes={"gen_ai.prompt.filter": "x"}))
    assert llm_call_from_span(make_span("a", name="openai.chat")) is None


def semconv_span(**attributes: Any) -> SpanRecord:
    return make_span("s", attributes={"gen_ai.operation.name": "chat", **attributes})


def test_tool_call_arguments_as_object_or_any_json_spacing_are_equal() -> None:
    def output(arguments: Any) -> SpanRecord:
        part = {"type": "tool_call", "id": "c", "name": "f", "arguments": arguments}
        return semconv_span(
            **{semconv.GEN_AI_OUTPUT_MESSAGES: json.dumps([{"role": "assistant", "parts": [part]}])}
        )

    expected = ToolCall("c", "f", '{"b": 1, "a": [1, 2]}')  # key order kept (sort_keys=False)
    for arguments in ({"b": 1, "a": [1, 2]}, '{"b":1,"a":[1,2]}', '{"b": 1, "a": [1, 2]}'):
        call = llm_call_from_span(output(arguments))
        assert call is not None and call.tool_calls == (expected,)
    not_json = llm_call_from_span(output("city=Paris"))
    assert not_json is not None and not_json.tool_calls == (ToolCall("c", "f", "city=Paris"),)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (["tool_call"], ("tool_calls",)),
        (["function_call", "STOP"], ("tool_calls", "stop")),
        ("length", ("length",)),
        ('["tool_calls"]', ("tool_calls",)),
    ],
)
def test_finish_reasons_are_normalised(value: Any, expected: tuple[str, ...]) -> None:
    call = llm_call_from_span(semconv_span(**{semconv.GEN_AI_RESPONSE_FINISH_REASONS: value}))
    assert call is not None and call.finish_reasons == expected


def test_finish_reasons_fall_back_to_the_output_messages() -> None:
    output = [{"role": "assistant", "parts": [], "finish_reason": "tool_call"}]
    call = llm_call_from_span(semconv_span(**{semconv.GEN_AI_OUTPUT_MESSAGES: json.dumps(output)}))
    assert call is not None and call.finish_reasons == ("tool_calls",)


def test_system_instructions_become_the_leading_system_message() -> None:
    user = [{"role": "user", "parts": [{"type": "text", "content": "hi"}]}]
    call = llm_call_from_span(
        semconv_span(
            **{
                semconv.GEN_AI_SYSTEM_INSTRUCTIONS: json.dumps([{"type": "text", "content": "Be brief."}]),
                semconv.GEN_AI_INPUT_MESSAGES: json.dumps(user),
            }
        )
    )
    assert call is not None
    assert call.input_messages == (Message("system", "Be brief."), Message("user", "hi"))
    assert call.system_prompt == "Be brief."


def test_token_ids_and_logprobs_are_read_from_our_attributes() -> None:
    call = llm_call_from_span(
        semconv_span(
            **{
                semconv.PROMPT_TOKEN_IDS: [1, 2, 3],
                semconv.COMPLETION_TOKEN_IDS: [7, 8],
                semconv.COMPLETION_LOGPROBS: [-0.5, -0.25],
            }
        )
    )
    assert call is not None
    assert call.prompt_token_ids == (1, 2, 3)
    assert call.completion_token_ids == (7, 8)
    assert call.completion_logprobs == (-0.5, -0.25)
    bad = llm_call_from_span(semconv_span(**{semconv.PROMPT_TOKEN_IDS: [1, "x"]}))
    assert bad is not None and bad.prompt_token_ids is None


def test_openai_style_content_parts_and_reasoning_are_handled() -> None:
    messages = [
        {"role": "USER", "content": [{"type": "text", "text": "a"}, {"type": "image_url", "image_url": {}}]},
        {
            "role": "assistant",
            "parts": [{"type": "reasoning", "content": "hmm"}, {"type": "text", "content": "b"}],
        },
    ]
    call = llm_call_from_span(semconv_span(**{semconv.GEN_AI_INPUT_MESSAGES: json.dumps(messages)}))
    assert call is not None
    assert call.input_messages == (Message("user", "a"), Message("assistant", "b"))


BAD_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(max_size=20),
    st.sampled_from(
        ["[", "{}", "[1, 2]", '[{"role": 1, "parts": 5}]', '[{"parts": [{"type": "tool_call"}]}]']
    ),
    st.lists(
        st.one_of(
            st.none(), st.integers(), st.text(max_size=5), st.dictionaries(st.text(max_size=5), st.none())
        ),
        max_size=3,
    ),
)
KEYS = st.sampled_from(
    [
        semconv.GEN_AI_INPUT_MESSAGES,
        semconv.GEN_AI_OUTPUT_MESSAGES,
        semconv.GEN_AI_SYSTEM_INSTRUCTIONS,
        semconv.GEN_AI_RESPONSE_FINISH_REASONS,
        semconv.GEN_AI_USAGE_INPUT_TOKENS,
        semconv.GEN_AI_REQUEST_TEMPERATURE,
        semconv.GEN_AI_REQUEST_MODEL,
        semconv.GEN_AI_TOOL_DEFINITIONS,
        semconv.PROMPT_TOKEN_IDS,
        semconv.OI_INVOCATION_PARAMETERS,
        "gen_ai.prompt.0.content",
        "gen_ai.prompt.0.tool_calls.0.arguments",
        "gen_ai.completion.1.role",
        "llm.input_messages.0.message.content",
        "llm.output_messages.x.message.role",
        "llm.tools.0.tool.json_schema",
    ]
)


@settings(max_examples=150, deadline=None)
@given(
    st.dictionaries(KEYS, BAD_VALUES, max_size=6),
    st.one_of(st.none(), st.dictionaries(st.text(max_size=5), BAD_VALUES, max_size=3), st.text(max_size=5)),
)
def test_malformed_attributes_never_raise(attributes: dict[str, Any], body: Any) -> None:
    span = semconv_span(**attributes)
    logs = [
        LogRecord(0, 0, span.trace_id, span.span_id, body=body, event_name="gen_ai.choice"),
        LogRecord(0, 0, span.trace_id, span.span_id, attributes=attributes, event_name="gen_ai.user.message"),
    ]
    call = llm_call_from_span(span, logs)
    assert isinstance(call, LLMCall)
    json.dumps(call.to_json())


def test_llm_call_json_round_trip() -> None:
    for call in calls_of(*load_fixture("traceloop.json")):
        with_ids = replace(
            call, prompt_token_ids=(1, 2), completion_token_ids=(3,), completion_logprobs=(-0.1,)
        )
        for original in (call, with_ids):
            assert LLMCall.from_json(json.loads(json.dumps(original.to_json()))) == original


def test_messages_convert_to_the_openai_request_format() -> None:
    calls = calls_of(*load_fixture("openinference.json"))
    assert calls[3].prompt_messages == [
        {"role": "user", "content": conversation.TOOL_QUESTION},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": conversation.TOOL_ARGUMENTS},
                }
            ],
        },
        {"role": "tool", "content": conversation.TOOL_RESULT, "tool_call_id": "call_1"},
    ]


def growing_conversation(name: str, turns: int, separators: tuple[str, str]) -> list[SpanRecord]:
    """LLM spans of one agent whose history grows by a tool call and its result per turn."""
    history: list[dict[str, Any]] = [{"role": "user", "parts": [{"type": "text", "content": f"task {name}"}]}]
    spans = []
    for turn in range(turns):
        call = {"type": "tool_call", "id": f"{name}{turn}", "name": "f", "arguments": {"n": turn, "s": "x y"}}
        output = {"role": "assistant", "parts": [{"type": "text", "content": f"t{turn}"}, call]}
        attributes = {
            semconv.GEN_AI_INPUT_MESSAGES: json.dumps(history, separators=separators),
            semconv.GEN_AI_OUTPUT_MESSAGES: json.dumps([{**output, "finish_reason": "tool_call"}]),
        }
        spans.append(semconv_span(**attributes))
        result = {"type": "tool_call_response", "id": f"{name}{turn}", "response": f"r{turn}"}
        history += [output, {"role": "tool", "parts": [result]}]
    return spans


def test_message_cache_gives_the_same_calls_as_a_full_decode() -> None:
    a = growing_conversation("a", 6, (", ", ": "))
    b = growing_conversation("b", 6, (",", ":"))
    edited = semconv_span(
        **{
            semconv.GEN_AI_INPUT_MESSAGES: a[3]
            .attributes[semconv.GEN_AI_INPUT_MESSAGES]
            .replace("task a", "task z")
        }
    )
    # Interleaved conversations, a repeated call, and a history edited in place (not a prefix any more).
    spans = [x for pair in zip(a, b, strict=True) for x in pair] + [a[5], edited]
    cache = MessageCache()
    for span in spans:
        assert llm_call_from_span(span, cache=cache) == llm_call_from_span(span)
    last = llm_call_from_span(a[5], cache=cache)
    assert last is not None and len(last.input_messages) == 11
    assert last.input_messages[1].tool_calls == (ToolCall("a0", "f", '{"n": 0, "s": "x y"}'),)


def test_message_cache_never_reuses_a_tool_call_with_other_arguments() -> None:
    cache = MessageCache()
    assert cache.tool_call("c", "f", {"n": 1}).arguments == '{"n": 1}'
    assert cache.tool_call("c", "f", {"n": 2}).arguments == '{"n": 2}'
    assert cache.tool_call("c", "f", '{"n":2}').arguments == '{"n": 2}'
    assert cache.tool_call("c", "g", {"n": 2}) == ToolCall("c", "g", '{"n": 2}')
