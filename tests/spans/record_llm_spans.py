"""Record one agent conversation with a REAL openai instrumentation package, as span/log records in JSON.

Usage: ``python tests/spans/record_llm_spans.py CONVENTION OUT.json`` where CONVENTION is one of
``traceloop``, ``openai_v2_span``, ``openai_v2_event``, ``openinference`` (this recorded the fixtures under
fixtures/), or ``python tests/spans/record_llm_spans.py all OUT_DIR`` (conftest.live_recordings).
Instrumentors patch openai globally and cannot coexist: ``all`` imports the heavy common modules once
(openai alone takes ~1 s) and forks one child process per package.

The rollout: a root ``otel_lightning.rollout`` span, then with the real openai client against the scripted
LLM: a plain call, a streamed call (usage included), a two-turn tool call with an ``execute_tool`` span
between the turns, then an ``otel_lightning.reward`` span. A small processor stamps the rollout identity on
every span, as instrumentation/context.py will.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

CONVENTIONS = ("traceloop", "openai_v2_span", "openai_v2_event", "openinference")
"""Instrumentation packages this script can run."""
PRELOAD = (
    "conftest",
    "openai.resources.beta",
    "openai.types.beta",
    "openinference.instrumentation.openai",
    "opentelemetry.instrumentation.openai",
    "opentelemetry.instrumentation.openai.v1",
    "opentelemetry.instrumentation.openai_v2",
    "opentelemetry.sdk.trace",
    "otel_lightning.testing.scripted_llm",
)
"""The slow imports (openai alone takes ~1 s) that ``all`` does once before forking."""

SYSTEM = "You are a terse assistant. Answer in as few words as possible."
QUESTION = "hi there, please greet me back"
ANSWER = "hello world, nice to meet you"
TOOL_QUESTION = "What is the weather in Paris?"
TOOL_ARGUMENTS = '{"city": "Paris", "unit": "celsius"}'
TOOL_RESULT = "sunny, 21 C"
FINAL_ANSWER = "It is sunny and 21 C in Paris."
TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather of a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "unit": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]
IDENTITY = {
    "otel_lightning.rollout.id": "ro-1",
    "otel_lightning.attempt.id": "at-1",
    "otel_lightning.experiment": "exp",
}


def instrument(convention: str, tracer_provider: Any, logger_provider: Any) -> None:
    if convention == "traceloop":
        from opentelemetry.instrumentation.openai import OpenAIInstrumentor

        OpenAIInstrumentor().instrument(tracer_provider=tracer_provider)
    elif convention in ("openai_v2_span", "openai_v2_event"):
        os.environ["OTEL_SEMCONV_STABILITY_OPT_IN"] = "gen_ai_latest_experimental"
        os.environ["OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"] = (
            convention.rsplit("_", 1)[1] + "_only"
        )
        from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor as V2Instrumentor

        V2Instrumentor().instrument(tracer_provider=tracer_provider, logger_provider=logger_provider)
    elif convention == "openinference":
        from openinference.instrumentation.openai import OpenAIInstrumentor as OIInstrumentor

        OIInstrumentor().instrument(tracer_provider=tracer_provider)
    else:
        raise SystemExit(f"unknown convention {convention!r}")


def handler(body: dict[str, Any]) -> Any:
    from otel_lightning.testing.scripted_llm import ScriptedReply, ToolCall

    last = body["messages"][-1]
    if body.get("tools") and last["role"] == "user":
        return ScriptedReply(tool_calls=(ToolCall("call_1", "get_weather", TOOL_ARGUMENTS),))
    if last["role"] == "tool":
        return FINAL_ANSWER
    return ANSWER


def main(convention: str, out: Path) -> None:
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    class StampIdentity(SpanProcessor):
        def on_start(self, span: Any, parent_context: Any = None) -> None:
            span.set_attributes(IDENTITY)

    span_exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(StampIdentity())
    tracer_provider.add_span_processor(SimpleSpanProcessor(span_exporter))
    log_exporter = InMemoryLogRecordExporter()
    logger_provider = LoggerProvider()
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(log_exporter))
    instrument(convention, tracer_provider, logger_provider)

    import openai

    from otel_lightning.testing.scripted_llm import ScriptedLLM

    tracer = tracer_provider.get_tracer("record_llm_spans")
    with ScriptedLLM(handler, model="scripted-model") as llm:
        client: Any = openai.OpenAI(base_url=llm.base_url, api_key="unused", max_retries=0)
        with tracer.start_as_current_span(
            "otel_lightning.rollout", attributes={"otel_lightning.resource.version": 3}
        ) as root:
            chat = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTION}]
            client.chat.completions.create(
                model="scripted-model", messages=chat, temperature=0.5, top_p=0.9, max_tokens=64
            )
            stream = client.chat.completions.create(
                model="scripted-model",
                messages=chat,
                temperature=0.5,
                stream=True,
                stream_options={"include_usage": True},
            )
            for _ in stream:
                pass
            conversation: list[dict[str, Any]] = [{"role": "user", "content": TOOL_QUESTION}]
            first = client.chat.completions.create(model="scripted-model", messages=conversation, tools=TOOLS)
            call = first.choices[0].message.tool_calls[0]
            conversation.append(
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": call.id,
                            "type": "function",
                            "function": {"name": call.function.name, "arguments": call.function.arguments},
                        }
                    ],
                }
            )
            with tracer.start_as_current_span(
                "execute_tool get_weather",
                attributes={
                    "gen_ai.operation.name": "execute_tool",
                    "gen_ai.tool.name": "get_weather",
                    "gen_ai.tool.call.id": call.id,
                    "gen_ai.tool.call.arguments": call.function.arguments,
                    "gen_ai.tool.call.result": TOOL_RESULT,
                },
            ):
                pass
            conversation.append({"role": "tool", "tool_call_id": call.id, "content": TOOL_RESULT})
            client.chat.completions.create(model="scripted-model", messages=conversation, tools=TOOLS)
            with tracer.start_as_current_span(
                "otel_lightning.reward", attributes={"otel_lightning.reward.value": 1.0}
            ):
                pass
            root.set_attribute("otel_lightning.rollout.reward", 1.0)

    tracer_provider.force_flush()
    logger_provider.force_flush()
    from conftest import log_record_from_readable, span_record_from_readable

    spans = [span_record_from_readable(s).to_json() for s in span_exporter.get_finished_spans()]
    logs = [log_record_from_readable(r).to_json() for r in log_exporter.get_finished_logs()]
    out.write_text(json.dumps({"convention": convention, "spans": spans, "logs": logs}, indent=1))


def main_all(out_dir: Path) -> int:
    import importlib
    import traceback

    # Imported once, before forking, for every child. Importing an instrumentation does not patch anything.
    for module in PRELOAD:
        importlib.import_module(module)

    children = {}
    for convention in CONVENTIONS:
        pid = os.fork()
        if pid == 0:  # child: record, then leave without running the parent's cleanup
            code = 0
            try:
                main(convention, out_dir / f"{convention}.json")
            except BaseException:
                traceback.print_exc()
                code = 1
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        children[pid] = convention
    failed = []
    for pid, convention in children.items():
        _, status = os.waitpid(pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            failed.append(convention)
    if failed:
        print(f"recording failed for: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    if sys.argv[1] == "all":
        sys.exit(main_all(Path(sys.argv[2])))
    main(sys.argv[1], Path(sys.argv[2]))
