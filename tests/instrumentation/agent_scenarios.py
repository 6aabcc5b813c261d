"""Agents that the instrument() tests run in a fresh interpreter: ``python agent_scenarios.py NAME URL``.

``instrument()`` sets process-wide state (the global TracerProvider, openai patches), so each scenario gets
its own process. The scripted LLM runs in the same process; spans go to the test's OTLP receiver. The last
line of stdout is a JSON report.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import sys
import time
from typing import Any

import openai
from opentelemetry import trace
from opentelemetry._logs import get_logger

from otel_lightning.instrumentation import (
    RolloutContext,
    emit_event,
    emit_reward,
    instrument,
    rollout_scope,
)
from otel_lightning.testing import ScriptedLLM, ScriptedReply

PROMPT_IDS = (101, 7, 2024, 3)
COMPLETION_IDS = (11, 12, 13, 14)
LOGPROBS = (-0.25, -1.5, -0.125, -3.0625)
BURST = 20_000
REJECT_SPAN = "reject-me"  # instrumentation_support.REJECT_SPAN: the receiver refuses it


class Recorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(f"{record.name}: {record.getMessage()}")


def reply(request: dict[str, Any]) -> ScriptedReply:
    return ScriptedReply(
        content="the answer is four",
        prompt_token_ids=PROMPT_IDS,
        completion_token_ids=COMPLETION_IDS,
        logprobs=LOGPROBS,
    )


def end_to_end(receiver_url: str) -> dict[str, Any]:
    report: dict[str, Any] = {}
    # Before instrument(): the global provider is a proxy; none of this may raise.
    emit_reward(math.nan)
    emit_reward("high")  # type: ignore[arg-type]
    emit_reward(0.5, "before-instrument")
    emit_event("nothing-recording")
    handle = instrument(receiver_url, service_name="agent-under-test", capture_token_ids=True)
    report["global_is_ours"] = trace.get_tracer_provider() is handle.tracer_provider
    tracer = handle.tracer("agent")
    with ScriptedLLM(reply) as llm:
        client = openai.OpenAI(base_url=llm.base_url, api_key="unused", max_retries=0)
        with (
            rollout_scope(RolloutContext("ro-1", "at-1", "exp-a", resource_version=3)),
            tracer.start_as_current_span("agent-step"),
        ):
            client.chat.completions.create(
                model="scripted-model", messages=[{"role": "user", "content": "2+2?"}], logprobs=True
            )
            emit_reward(0.75, "accuracy", attributes={"judge": "exact"})
            # As the official openai-v2 instrumentation does in event_only mode.
            get_logger("agent").emit(event_name="gen_ai.client.inference.operation.details", body="messages")

        async def async_rollout() -> None:
            async_client = openai.AsyncOpenAI(base_url=llm.base_url, api_key="unused", max_retries=0)
            with rollout_scope(RolloutContext("ro-2", "at-2", "exp-a")):
                await async_client.chat.completions.create(
                    model="scripted-model", messages=[{"role": "user", "content": "3+1?"}], logprobs=True
                )
            await async_client.close()

        asyncio.run(async_rollout())
    started = time.perf_counter()
    with rollout_scope(RolloutContext("ro-burst", "at-burst")):
        for _ in range(BURST):
            tracer.start_span("burst").end()
    report["burst_s"] = time.perf_counter() - started
    report["ended"] = {a: handle.rollout_processor.ended_spans(a) for a in ("at-1", "at-2", "at-burst")}
    report["flushed"] = handle.force_flush(60)
    report["burst_and_flush_s"] = time.perf_counter() - started
    tracer.start_span(REJECT_SPAN).end()
    report["flushed_after_rejection"] = handle.force_flush(30)
    tracer.start_span("after-rejection").end()
    report["flushed_again"] = handle.force_flush(30)
    report["same_handle"] = (
        instrument(receiver_url, service_name="agent-under-test", capture_token_ids=True) is handle
    )
    handle.shutdown()
    return report


def existing_provider(receiver_url: str) -> dict[str, Any]:
    from opentelemetry.instrumentation.openai import OpenAIInstrumentor
    from opentelemetry.instrumentation.openai.shared.config import Config
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    recorder = Recorder()
    logging.getLogger("otel_lightning").addHandler(recorder)
    # The user's own setup: their provider and exporter, openai instrumented with their options.
    user_provider = TracerProvider()
    user_exporter = InMemorySpanExporter()
    user_provider.add_span_processor(SimpleSpanProcessor(user_exporter))
    trace.set_tracer_provider(user_provider)
    OpenAIInstrumentor(enable_trace_context_propagation=False).instrument()

    handle = instrument(receiver_url, capture_token_ids=True, export_logs=False, schedule_delay_ms=0)
    again = instrument("http://127.0.0.1:9/other", capture_token_ids=True, export_logs=False)
    with ScriptedLLM(reply) as llm:
        client = openai.OpenAI(base_url=llm.base_url, api_key="unused", max_retries=0)
        with (
            rollout_scope(RolloutContext("ro-u", "at-u")),
            handle.tracer("agent").start_as_current_span("user-root"),
        ):
            client.chat.completions.create(
                model="scripted-model", messages=[{"role": "user", "content": "hi"}], logprobs=True
            )
    flushed = handle.force_flush(30)
    return {
        "provider_is_user": handle.tracer_provider is user_provider,
        "global_is_user": trace.get_tracer_provider() is user_provider,
        "same_handle": again is handle,
        "user_options_kept": Config.enable_trace_context_propagation is False,
        "flushed": flushed,
        "warnings": recorder.messages,
        "user_spans": [
            {"name": s.name, "attributes": {k: _plain(v) for k, v in (s.attributes or {}).items()}}
            for s in user_exporter.get_finished_spans()
        ],
    }


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


SCENARIOS = {"end_to_end": end_to_end, "existing_provider": existing_provider}

if __name__ == "__main__":
    print(json.dumps(SCENARIOS[sys.argv[1]](sys.argv[2])))
