"""Token ids and logprobs onto the current LLM span, against the scripted OpenAI-compatible server.

Here a local span with ``gen_ai.operation.name=chat`` stands in for the instrumentor's span; that the
wrapper really runs inside Traceloop's ``openai.chat`` span is checked end to end in test_instrument_setup.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from openai.resources.chat.completions import AsyncCompletions, Completions
from openai.types import Completion

from otel_lightning import semconv
from otel_lightning.instrumentation import openai_extras
from otel_lightning.testing import ScriptedLLM, ScriptedReply

PROMPT_IDS = (5, 6, 7)
COMPLETION_IDS = (900, 901, 902)
LOGPROBS = (-0.5, -0.25, -2.0)
LLM_SPAN = {semconv.GEN_AI_OPERATION_NAME: "chat"}
MESSAGES = [{"role": "user", "content": "hello"}]


def _reply(request: dict[str, Any]) -> ScriptedReply:
    return ScriptedReply(
        content="one two three",
        prompt_token_ids=PROMPT_IDS,
        completion_token_ids=COMPLETION_IDS,
        logprobs=LOGPROBS,
    )


@pytest.fixture(scope="module")
def llm() -> Iterator[ScriptedLLM]:
    with ScriptedLLM(_reply) as server:
        yield server


@pytest.fixture
def capture() -> Iterator[None]:
    assert openai_extras.install()
    yield
    openai_extras.uninstall()


def _client(llm: ScriptedLLM) -> openai.OpenAI:
    return openai.OpenAI(base_url=llm.base_url, api_key="unused", max_retries=0)


def test_sync_chat_records_ids_and_logprobs_exactly(tracing: Any, llm: ScriptedLLM, capture: None) -> None:
    with tracing.tracer().start_as_current_span("openai.chat", attributes=LLM_SPAN):
        response = _client(llm).chat.completions.create(model="m", messages=MESSAGES, logprobs=True)  # type: ignore[arg-type]
    assert response.choices[0].message.content == "one two three"
    (span,) = tracing.exporter.get_finished_spans()
    assert list(span.attributes[semconv.PROMPT_TOKEN_IDS]) == list(PROMPT_IDS)
    assert list(span.attributes[semconv.COMPLETION_TOKEN_IDS]) == list(COMPLETION_IDS)
    assert list(span.attributes[semconv.COMPLETION_LOGPROBS]) == list(LOGPROBS)


def test_logprobs_only_when_requested(tracing: Any, llm: ScriptedLLM, capture: None) -> None:
    with tracing.tracer().start_as_current_span("openai.chat", attributes=LLM_SPAN):
        _client(llm).chat.completions.create(model="m", messages=MESSAGES)  # type: ignore[arg-type]
    (span,) = tracing.exporter.get_finished_spans()
    assert list(span.attributes[semconv.COMPLETION_TOKEN_IDS]) == list(COMPLETION_IDS)
    assert semconv.COMPLETION_LOGPROBS not in span.attributes


def test_async_chat_records_ids(tracing: Any, llm: ScriptedLLM, capture: None) -> None:
    async def call() -> None:
        client = openai.AsyncOpenAI(base_url=llm.base_url, api_key="unused", max_retries=0)
        with tracing.tracer().start_as_current_span("openai.chat", attributes=LLM_SPAN):
            await client.chat.completions.create(model="m", messages=MESSAGES, logprobs=True)  # type: ignore[arg-type]
        await client.close()

    asyncio.run(call())
    (span,) = tracing.exporter.get_finished_spans()
    assert list(span.attributes[semconv.PROMPT_TOKEN_IDS]) == list(PROMPT_IDS)
    assert list(span.attributes[semconv.COMPLETION_LOGPROBS]) == list(LOGPROBS)


def test_nothing_is_written_to_a_span_that_is_not_an_llm_call(
    tracing: Any, llm: ScriptedLLM, capture: None
) -> None:
    with tracing.tracer().start_as_current_span("rollout-root"):
        _client(llm).chat.completions.create(model="m", messages=MESSAGES, logprobs=True)  # type: ignore[arg-type]
    (span,) = tracing.exporter.get_finished_spans()
    assert semconv.COMPLETION_TOKEN_IDS not in span.attributes


def test_streaming_responses_are_skipped(tracing: Any, llm: ScriptedLLM, capture: None) -> None:
    with tracing.tracer().start_as_current_span("openai.chat", attributes=LLM_SPAN):
        stream = _client(llm).chat.completions.create(model="m", messages=MESSAGES, stream=True)  # type: ignore[arg-type]
        text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text == "one two three"
    (span,) = tracing.exporter.get_finished_spans()
    assert semconv.COMPLETION_TOKEN_IDS not in span.attributes


def test_install_is_idempotent_and_uninstall_restores_the_methods() -> None:
    originals = (Completions.__dict__["create"], AsyncCompletions.__dict__["create"])
    assert openai_extras.install() and openai_extras.install()
    assert openai_extras.is_installed()
    for cls, original in zip((Completions, AsyncCompletions), originals, strict=True):
        assert cls.__dict__["create"] is not original
        assert cls.__dict__["create"].__wrapped__ is original  # one layer of ours, not two
    openai_extras.uninstall()
    assert not openai_extras.is_installed()
    assert (Completions.__dict__["create"], AsyncCompletions.__dict__["create"]) == originals


def test_text_completion_in_vllm_layout() -> None:
    response = Completion.model_validate(
        {
            "id": "cmpl-1",
            "object": "text_completion",
            "created": 0,
            "model": "m",
            "choices": [
                {
                    "index": 0,
                    "text": " world",
                    "finish_reason": "stop",
                    "logprobs": {
                        "tokens": [" wor", "ld"],
                        "token_logprobs": [-0.5, -0.125],
                        "text_offset": [0, 4],
                        "top_logprobs": None,
                    },
                    "prompt_token_ids": [1, 2],
                    "token_ids": [3, 4],
                }
            ],
        }
    )
    assert openai_extras.extract_token_details(response) == {
        semconv.PROMPT_TOKEN_IDS: [1, 2],
        semconv.COMPLETION_TOKEN_IDS: [3, 4],
        semconv.COMPLETION_LOGPROBS: [-0.5, -0.125],
    }


def test_malformed_values_are_ignored_and_never_raise(tracing: Any) -> None:
    response = Completion.model_validate(
        {
            "id": "cmpl-1",
            "object": "text_completion",
            "created": 0,
            "model": "m",
            "choices": [{"index": 0, "text": "", "finish_reason": "stop", "token_ids": ["a", 2]}],
            "prompt_token_ids": "not a list",
        }
    )
    assert openai_extras.extract_token_details(response) == {}
    assert openai_extras.extract_token_details(object()) == {}
    with tracing.tracer().start_as_current_span("openai.chat", attributes=LLM_SPAN) as span:
        openai_extras.record_token_details(span, object())
        openai_extras.record_token_details(span, response)
